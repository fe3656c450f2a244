//! The sink: encode a batch into limit-sized requests, POST them, read each answer.

use reqwest::header::{HeaderMap, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE};
use sluice_sdk::gzip::Gzip;
use sluice_sdk::{
    async_trait, Bytes, ConfigError, Health, Outcome, RecordRef, Sink, SinkContext, SinkError,
};

use crate::config::{intake_url, Compression, DdConfig};
use crate::encoder::{Attributes, Encoder};
use crate::retry::{classify, Answer};

/// Sends records to the Datadog Logs intake (`POST /api/v2/logs`).
pub struct DdSink {
    url: url::Url,
    encoder: Encoder,
    config: DdConfig,
    client: Option<reqwest::Client>,
    health: Health,
    /// Set when the configuration asks for gzip.
    gzip: Option<Gzip>,
}

impl DdSink {
    /// Checks the configuration; the HTTP client is made in `open`.
    pub fn new(config: DdConfig) -> Result<Self, ConfigError> {
        let url = intake_url(config.site.as_deref(), config.endpoint.as_deref())
            .map_err(|(path, msg)| ConfigError::at(path, msg))?;
        if config.api_key.expose().trim().is_empty() {
            return Err(ConfigError::at("api_key", "must not be empty"));
        }
        if !(1..=9).contains(&config.compression_level) {
            return Err(ConfigError::at(
                "compression_level",
                "must be between 1 and 9",
            ));
        }
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
        let gzip =
            (config.compression == Compression::Gzip).then(|| Gzip::new(config.compression_level));
        Ok(DdSink {
            url,
            encoder,
            config,
            client: None,
            health: Health::new(),
            gzip,
        })
    }

    fn body(&self, json: Vec<u8>) -> Result<Bytes, SinkError> {
        match &self.gzip {
            None => Ok(json.into()),
            Some(gz) => gz
                .compress(&json)
                .map_err(|e| SinkError::Fatal(e.to_string())),
        }
    }

    async fn post(&self, client: &reqwest::Client, json: Vec<u8>) -> Answer {
        let body = match self.body(json) {
            Ok(b) => b,
            Err(e) => return Answer::Failed(e),
        };
        let mut req = client.post(self.url.clone()).body(body);
        if self.gzip.is_some() {
            req = req.header(CONTENT_ENCODING, "gzip");
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                return Answer::Failed(SinkError::unavailable(format!(
                    "POST {} failed: {e}",
                    self.url
                )))
            }
        };
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => {
                return Answer::Failed(SinkError::unavailable(format!(
                    "reading Datadog's answer: {e}"
                )))
            }
        };
        classify(status, &headers, &bytes)
    }
}

#[async_trait]
impl Sink for DdSink {
    async fn open(&mut self, ctx: SinkContext) -> Result<(), SinkError> {
        self.health = ctx.health;
        let mut key = HeaderValue::from_str(self.config.api_key.expose()).map_err(|_| {
            SinkError::Fatal("api_key contains characters not allowed in a header".into())
        })?;
        key.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert("dd-api-key", key);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert("dd-evp-origin", HeaderValue::from_static("sluice"));
        headers.insert(
            "dd-evp-origin-version",
            HeaderValue::from_static(env!("CARGO_PKG_VERSION")),
        );
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
            .timeout(self.config.request_timeout)
            .build()
            .map_err(|e| SinkError::Fatal(format!("cannot build the HTTP client: {e}")))?;
        self.client = Some(client);
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
        let client = self
            .client
            .as_ref()
            .ok_or_else(|| SinkError::Fatal("datadog_logs sink used before open".into()))?;
        let encoded = self.encoder.encode(records);
        let mut outcomes = encoded.outcomes;
        let mut chunks = encoded.chunks.into_iter().enumerate().peekable();
        while let Some((n, chunk)) = chunks.next() {
            match self.post(client, chunk.body).await {
                Answer::Accepted => self.health.set_healthy(),
                Answer::RejectAll(rejection) => {
                    for pos in chunk.positions {
                        outcomes[pos] = Outcome::Reject(rejection.clone());
                    }
                }
                Answer::Failed(e) => {
                    if let SinkError::Unauthorized(m) = &e {
                        self.health.set_unhealthy(m.clone());
                    }
                    if n == 0 || matches!(e, SinkError::Fatal(_)) {
                        return Err(e);
                    }
                    // Earlier requests were accepted: resending them would duplicate logs
                    // (Datadog has no ids), so only the rest goes back to the host, as met by
                    // an outage: resent without counting an attempt against the records.
                    let reason = e.to_string();
                    let rest = chunk
                        .positions
                        .into_iter()
                        .chain(chunks.by_ref().flat_map(|(_, c)| c.positions));
                    for pos in rest {
                        outcomes[pos] = Outcome::Unavailable(reason.clone());
                    }
                    break;
                }
            }
        }
        Ok(outcomes)
    }
}
