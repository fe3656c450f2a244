//! The sink: encode a batch, send it as `_bulk` requests, read the answer per item.

use bytes::Bytes;
use elasticsearch::http::headers::{HeaderMap, HeaderValue, CONTENT_TYPE};
use elasticsearch::http::transport::Transport;
use elasticsearch::http::Method;
use sluice_sdk::{
    async_trait, ConfigError, Health, Outcome, RecordRef, Sink, SinkContext, SinkError,
};

use crate::client::{build_transport, check_cluster, Target};
use crate::config::{EsConfig, OpType};
use crate::encoder::{chunks, Encoder};
use crate::index::IndexTemplate;
use crate::response::{BulkHead, ItemCount, ItemEntry};
use crate::retry::{item_outcome, request_failure, RequestFailure};

/// Writes records to Elasticsearch with the bulk API.
pub struct EsSink {
    config: EsConfig,
    target: Target,
    encoder: Encoder,
    transport: Option<Transport>,
    health: Health,
}

impl EsSink {
    /// Checks the configuration; connects only in `open`.
    pub fn new(config: EsConfig) -> Result<Self, ConfigError> {
        let target = Target::from_config(&config)?;
        let index = IndexTemplate::parse(&config.index)?;
        if config.max_request_bytes == 0 {
            return Err(ConfigError::at(
                "max_request_bytes",
                "must be greater than 0",
            ));
        }
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
        Ok(EsSink {
            config,
            target,
            encoder,
            transport: None,
            health: Health::new(),
        })
    }

    /// One `_bulk` request; `Ok` carries the 200 answer's body.
    async fn bulk(&self, transport: &Transport, body: Bytes) -> Result<Bytes, RequestFailure> {
        let mut headers = HeaderMap::with_capacity(1);
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
        let query: Vec<(&str, &str)> = match &self.config.pipeline {
            Some(p) => vec![("pipeline", p.as_str())],
            None => Vec::new(),
        };
        let query = (!query.is_empty()).then_some(query.as_slice());
        let resp = transport
            .send(Method::Post, "_bulk", headers, query, Some(body), None)
            .await
            .map_err(|e| {
                RequestFailure::Sink(SinkError::unavailable(format!(
                    "bulk request to {} failed: {e}",
                    self.target.describe()
                )))
            })?;
        let status = resp.status_code().as_u16();
        let resp_headers = (status != 200).then(|| resp.headers().clone());
        let bytes = resp.bytes().await.map_err(|e| {
            RequestFailure::Sink(SinkError::unavailable(format!(
                "reading the bulk answer: {e}"
            )))
        })?;
        match resp_headers {
            None => Ok(bytes),
            Some(h) => Err(request_failure(status, &h, &bytes)),
        }
    }
}

/// Fills `outcomes` for the records of one request from its 200 answer.
fn apply_answer(
    op: OpType,
    body: &[u8],
    positions: impl ExactSizeIterator<Item = usize>,
    outcomes: &mut [Outcome],
) -> Result<(), SinkError> {
    let sent = positions.len();
    let head: BulkHead = serde_json::from_slice(body)
        .map_err(|e| SinkError::Fatal(format!("unreadable bulk answer: {e}")))?;
    let mismatch = |got: usize| {
        SinkError::Fatal(format!(
            "bulk answer has {got} items for {sent} actions; nothing can be matched"
        ))
    };
    if !head.errors {
        let items: ItemCount = serde_json::from_str(head.items.get())
            .map_err(|e| SinkError::Fatal(format!("unreadable bulk items: {e}")))?;
        return if items.len() == sent {
            Ok(())
        } else {
            Err(mismatch(items.len()))
        };
    }
    let items: Vec<ItemEntry> = serde_json::from_str(head.items.get())
        .map_err(|e| SinkError::Fatal(format!("unreadable bulk items: {e}")))?;
    if items.len() != sent {
        return Err(mismatch(items.len()));
    }
    for (pos, item) in positions.zip(items) {
        let (action, result) = item
            .into_parts()
            .ok_or_else(|| SinkError::Fatal("bulk item without an action key".into()))?;
        outcomes[pos] = item_outcome(op, action, result.status, result.error.as_ref());
    }
    Ok(())
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
        let groups = chunks(&encoded.spans, max);
        for (n, group) in groups.iter().enumerate() {
            let spans = &encoded.spans[group.clone()];
            let (Some(first), Some(last)) = (spans.first(), spans.last()) else {
                continue;
            };
            let body = encoded.body.slice(first.1.start..last.1.end);
            let positions = spans.iter().map(|(pos, _)| *pos);
            match self.bulk(transport, body).await {
                Ok(answer) => {
                    apply_answer(self.config.op_type, &answer, positions, &mut outcomes)?;
                    self.health.set_healthy();
                }
                Err(RequestFailure::RejectAll(rejection)) => {
                    for pos in positions {
                        outcomes[pos] = Outcome::Reject(rejection.clone());
                    }
                }
                Err(RequestFailure::Sink(e)) => {
                    if let SinkError::Unauthorized(m) = &e {
                        self.health.set_unhealthy(m.clone());
                    }
                    if n == 0 || matches!(e, SinkError::Fatal(_)) {
                        return Err(e);
                    }
                    // Earlier requests of this batch were taken: keep their outcomes. The rest
                    // met an outage, not a refusal: the host resends it without counting an
                    // attempt against the records.
                    let reason = e.to_string();
                    for (pos, _) in &encoded.spans[group.start..] {
                        outcomes[*pos] = Outcome::Unavailable(reason.clone());
                    }
                    break;
                }
            }
        }
        Ok(outcomes)
    }
}
