//! The sink: encode a batch ([`crate::encoder`]), sign and POST it, read the answer
//! ([`crate::response`]).

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use sluice_sdk::http::{ClientBuilder, Deprecations, Response, TlsConfig};
use sluice_sdk::{
    async_trait, ConfigError, Health, Outcome, RecordRef, Sink, SinkContext, SinkError, Verdict,
};

use crate::{encoder, response, signature, WebhookConfig};

/// Posts each batch as one signed JSON request.
pub struct WebhookSink {
    url: reqwest::Url,
    secret: Vec<u8>,
    headers: HeaderMap,
    timeout: std::time::Duration,
    tls: Option<TlsConfig>,
    deprecations: Deprecations,
    client: Option<reqwest::Client>,
    health: Health,
    /// `headers` hold something that looks like a credential (`Authorization`, `*token*`,
    /// `*key*`): worth a warning over plain http.
    credential_header: bool,
}

impl WebhookSink {
    /// Checks the configuration; the HTTP client is made in `open`.
    pub fn new(cfg: WebhookConfig) -> Result<Self, ConfigError> {
        let url = sluice_sdk::http::endpoint_url(&cfg.url, "send them in `headers`")
            .map_err(|e| ConfigError::at("url", e.to_string()))?;
        if cfg.secret.expose().is_empty() {
            return Err(ConfigError::at("secret", "must not be empty"));
        }
        let deprecations = cfg.check()?;
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
        Ok(WebhookSink {
            url,
            secret: cfg.secret.expose().as_bytes().to_vec(),
            headers,
            timeout: cfg.request_timeout(),
            tls: cfg.tls,
            deprecations,
            client: None,
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
        self.deprecations.warn("webhook");
        self.client = Some(
            ClientBuilder::new("webhook", env!("CARGO_PKG_VERSION"))
                .request_timeout(self.timeout)
                .default_headers(self.headers.clone())
                .tls(self.tls.as_ref())
                // A redirected POST would silently become a GET: a redirect is a wrong URL.
                .no_redirects()
                .build()?,
        );
        if self.credential_header {
            sluice_sdk::http::warn_if_cleartext("webhook", &self.url, "a credential header");
        }
        Ok(())
    }

    async fn send(&self, records: &[RecordRef<'_>]) -> Result<Vec<Outcome>, SinkError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let client = self
            .client
            .as_ref()
            .ok_or_else(|| SinkError::Fatal("webhook sink used before open".into()))?;
        let body = encoder::encode(records);
        let sig = signature::sign(&self.secret, &body);
        let request = client
            .post(self.url.clone())
            .header(signature::HEADER, sig)
            .body(body);
        let resp = Response::fetch(request).await.map_err(|e| {
            self.unhealthy(SinkError::unavailable(format!("webhook {}: {e}", self.url)))
        })?;
        let outcome = match response::classify(&resp) {
            Verdict::Delivered(()) => Outcome::Delivered,
            Verdict::Rejected(rejection) => Outcome::Reject(rejection),
            Verdict::Failed(e) => return Err(self.unhealthy(e)),
        };
        self.health.set_healthy();
        Ok(vec![outcome; records.len()])
    }
}
