use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use sluice_sdk::{
    async_trait, ConfigError, Health, Outcome, RecordRef, Sink, SinkContext, SinkError,
};

use crate::{encoder, retry, signature, WebhookConfig};

/// Posts each batch as one signed JSON request.
pub struct WebhookSink {
    url: reqwest::Url,
    secret: Vec<u8>,
    client: reqwest::Client,
    health: Health,
    /// `headers` hold something that looks like a credential (`Authorization`, `*token*`,
    /// `*key*`): worth a warning over plain http.
    credential_header: bool,
}

impl WebhookSink {
    /// Checks the configuration and builds the HTTP client; connects nothing.
    pub fn new(cfg: WebhookConfig) -> Result<Self, ConfigError> {
        let url = sluice_sdk::http::endpoint_url(&cfg.url, "send them in `headers`")
            .map_err(|e| ConfigError::at("url", e.to_string()))?;
        if cfg.secret.expose().is_empty() {
            return Err(ConfigError::at("secret", "must not be empty"));
        }
        let mut headers = HeaderMap::new();
        for (k, v) in &cfg.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| ConfigError::at(format!("headers.{k}"), "not a valid header name"))?;
            let value = HeaderValue::from_str(v)
                .map_err(|_| ConfigError::at(format!("headers.{k}"), "not a valid header value"))?;
            headers.insert(name, value);
        }
        let credential_header = cfg.headers.keys().any(|k| {
            let k = k.to_ascii_lowercase();
            k == "authorization" || k.contains("token") || k.contains("key")
        });
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let client = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .default_headers(headers)
            // A redirected POST would silently become a GET: a redirect is a wrong URL.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ConfigError::new(format!("cannot build the HTTP client: {e}")))?;
        Ok(WebhookSink {
            url,
            secret: cfg.secret.expose().as_bytes().to_vec(),
            client,
            health: Health::new(),
            credential_header,
        })
    }

    fn unhealthy(&self, e: SinkError) -> SinkError {
        if matches!(
            e,
            SinkError::Unavailable { .. } | SinkError::Unauthorized(_)
        ) {
            self.health.set_unhealthy(e.to_string());
        }
        e
    }
}

#[async_trait]
impl Sink for WebhookSink {
    async fn open(&mut self, ctx: SinkContext) -> Result<(), SinkError> {
        self.health = ctx.health;
        if self.credential_header {
            sluice_sdk::http::warn_if_cleartext("webhook", &self.url, "a credential header");
        }
        Ok(())
    }

    async fn send(&self, records: &[RecordRef<'_>]) -> Result<Vec<Outcome>, SinkError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let body = encoder::encode(records);
        let sig = signature::sign(&self.secret, &body);
        let resp = self
            .client
            .post(self.url.clone())
            .header(signature::HEADER, sig)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                self.unhealthy(SinkError::unavailable(format!("webhook {}: {e}", self.url)))
            })?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let answer = resp.bytes().await.map_err(|e| {
            self.unhealthy(SinkError::unavailable(format!("webhook {}: {e}", self.url)))
        })?;
        let outcomes = retry::classify(status, retry_after.as_deref(), &answer, records.len())
            .map_err(|e| self.unhealthy(e))?;
        self.health.set_healthy();
        Ok(outcomes)
    }
}
