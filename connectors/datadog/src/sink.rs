//! The sink: encode a batch into limit-sized requests, POST them, read each answer.

use sluice_sdk::http::Deprecations;
use sluice_sdk::{
    async_trait, ConfigError, Health, Outcome, RecordRef, Sink, SinkContext, SinkError, Verdict,
};

use crate::config::{intake_url, DdConfig};
use crate::encoder::{Attributes, Encoder};
use crate::request::Intake;
use crate::response::classify;

/// Sends records to the Datadog Logs intake (`POST /api/v2/logs`).
pub struct DdSink {
    url: url::Url,
    encoder: Encoder,
    config: DdConfig,
    deprecations: Deprecations,
    intake: Option<Intake>,
    health: Health,
}

impl DdSink {
    /// Checks the configuration; the HTTP client is made in `open`.
    pub fn new(config: DdConfig) -> Result<Self, ConfigError> {
        let url = intake_url(config.site.as_deref(), config.endpoint.as_deref())
            .map_err(|(path, msg)| ConfigError::at(path, msg))?;
        if config.api_key.expose().trim().is_empty() {
            return Err(ConfigError::at("api_key", "must not be empty"));
        }
        let deprecations = config.check()?;
        if config.message_field.as_deref().is_some_and(str::is_empty) {
            return Err(ConfigError::at("message_field", "must not be empty"));
        }
        let encoder = Encoder {
            attributes: Attributes {
                service: config.service.clone(),
                ddsource: config.ddsource.clone(),
                ddtags: config.ddtags.clone(),
                hostname: config.hostname.clone(),
                status: config.status.clone(),
            },
            message_field: config.message_field.clone(),
        };
        Ok(DdSink {
            url,
            encoder,
            config,
            deprecations,
            intake: None,
            health: Health::new(),
        })
    }
}

#[async_trait]
impl Sink for DdSink {
    async fn open(&mut self, ctx: SinkContext) -> Result<(), SinkError> {
        self.health = ctx.health;
        self.deprecations.warn("datadog_logs");
        self.intake = Some(Intake::new(&self.config, self.url.clone())?);
        sluice_sdk::http::warn_if_cleartext("datadog_logs", &self.url, "the API key");
        tracing::info!(pipeline = %ctx.pipeline, "sending logs to {}", self.url);
        Ok(())
    }

    /// Two batches in flight: encoding and gzip of one overlap the round trip of the other.
    /// Logs carry their own timestamps, so Datadog does not need batches in order.
    fn default_concurrency(&self) -> usize {
        2
    }

    async fn send(&self, records: &[RecordRef<'_>]) -> Result<Vec<Outcome>, SinkError> {
        let intake = self
            .intake
            .as_ref()
            .ok_or_else(|| SinkError::Fatal("datadog_logs sink used before open".into()))?;
        let encoded = self.encoder.encode(records);
        let mut outcomes = encoded.outcomes;
        for (n, chunk) in encoded.chunks.into_iter().enumerate() {
            let answer = match intake.post(chunk.body).await {
                Ok(resp) => classify(&resp),
                Err(e) => Verdict::Failed(e),
            };
            match answer {
                Verdict::Delivered(()) => {
                    outcomes.set_each(chunk.positions, &Outcome::Delivered);
                    self.health.set_healthy();
                }
                Verdict::Rejected(rejection) => {
                    outcomes.set_each(chunk.positions, &Outcome::Reject(rejection))
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
