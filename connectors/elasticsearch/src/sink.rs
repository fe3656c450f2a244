//! The sink: encode a batch, send it as `_bulk` requests, read the answer per item.

use elasticsearch::http::transport::Transport;
use sluice_sdk::{
    async_trait, ConfigError, Health, Outcome, RecordRef, Sink, SinkContext, SinkError, Verdict,
};

use crate::client::{build_transport, check_cluster, Target};
use crate::config::EsConfig;
use crate::encoder::{chunks, Encoder};
use crate::request::BulkRequest;
use crate::response::{apply_items, verdict};

/// Writes records to Elasticsearch with the bulk API.
pub struct EsSink {
    config: EsConfig,
    target: Target,
    encoder: Encoder,
    request: BulkRequest,
    transport: Option<Transport>,
    health: Health,
}

impl EsSink {
    /// Checks the configuration; connects only in `open`.
    pub fn new(config: EsConfig) -> Result<Self, ConfigError> {
        let target = Target::from_config(&config)?;
        let index = crate::index::parse(&config.index)?;
        if config.max_request_bytes == 0 {
            return Err(ConfigError::at(
                "max_request_bytes",
                "must be greater than 0",
            ));
        }
        config.tls.check()?;
        if config.id_field.as_deref().is_some_and(str::is_empty) {
            return Err(ConfigError::at("id_field", "must not be empty"));
        }
        if let Some(f) = &config.time_field {
            if f.trim().is_empty() {
                return Err(ConfigError::at("time_field", "must not be empty"));
            }
            if !index.needs_time() {
                return Err(ConfigError::at(
                    "time_field",
                    "only picks the date parts of `index` (%Y, %m, %d...), and it has none",
                ));
            }
        }
        let encoder = Encoder {
            index,
            op: config.op_type,
            id_field: config.id_field.clone(),
            time_field: config.time_field.clone(),
        };
        let request = BulkRequest::new(config.compression.encoder(), config.pipeline.clone());
        Ok(EsSink {
            config,
            target,
            encoder,
            request,
            transport: None,
            health: Health::new(),
        })
    }
}

#[async_trait]
impl Sink for EsSink {
    async fn open(&mut self, ctx: SinkContext) -> Result<(), SinkError> {
        self.health = ctx.health;
        let transport = build_transport(&self.config, &self.target)?;
        let where_ = self.target.describe();
        let info = match check_cluster(&transport, &where_).await {
            Ok(info) => info,
            Err(e) => {
                self.health.set_unhealthy(e.to_string());
                return Err(e);
            }
        };
        tracing::info!(
            pipeline = %ctx.pipeline,
            version = %info.version,
            cluster = info.cluster_name.as_deref().unwrap_or("?"),
            "connected to Elasticsearch at {where_}"
        );
        self.health.set_healthy();
        self.transport = Some(transport);
        Ok(())
    }

    /// Two batches in flight when ids come from the records' origins: the encoding of one
    /// overlaps the round trip of the other, and no two records share a document, so the
    /// order in which batches land does not matter. With `id_field` several records may
    /// write one document and the last must win: one batch at a time.
    fn default_concurrency(&self) -> usize {
        if self.config.id_field.is_some() {
            1
        } else {
            2
        }
    }

    async fn send(&self, records: &[RecordRef<'_>]) -> Result<Vec<Outcome>, SinkError> {
        let transport = self
            .transport
            .as_ref()
            .ok_or_else(|| SinkError::Fatal("elasticsearch sink used before open".into()))?;
        let encoded = self.encoder.encode(records);
        let mut outcomes = encoded.outcomes;
        let max = usize::try_from(self.config.max_request_bytes).unwrap_or(usize::MAX);
        let target = self.target.describe();
        for (n, group) in chunks(&encoded.spans, max).into_iter().enumerate() {
            let spans = &encoded.spans[group];
            let (Some(first), Some(last)) = (spans.first(), spans.last()) else {
                continue;
            };
            let body = encoded.body.slice(first.1.start..last.1.end);
            let positions = spans.iter().map(|(pos, _)| *pos);
            let answer = match self.request.send(transport, &target, body).await {
                Ok(resp) => verdict(resp),
                Err(e) => Verdict::Failed(e),
            };
            match answer {
                Verdict::Delivered(body) => {
                    apply_items(self.config.op_type, &body, positions, &mut outcomes)?;
                    self.health.set_healthy();
                }
                Verdict::Rejected(rejection) => {
                    outcomes.set_each(positions, &Outcome::Reject(rejection))
                }
                Verdict::Failed(e) => {
                    if let SinkError::Unauthorized(m) = &e {
                        self.health.set_unhealthy(m.clone());
                    }
                    return outcomes.stop_at(n, e);
                }
            }
        }
        Ok(outcomes.finish())
    }
}
