//! Building and sending one intake request: the client with Datadog's headers, the body
//! compressed as configured.

use reqwest::header::{HeaderMap, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE};
use sluice_sdk::http::{BodyEncoder, ClientBuilder, Response};
use sluice_sdk::{Bytes, SinkError};

use crate::config::DdConfig;

/// Posts log arrays to one intake URL.
pub struct Intake {
    url: url::Url,
    client: reqwest::Client,
    bodies: BodyEncoder,
}

impl Intake {
    /// Builds the client (reads TLS files, so it runs in `open`).
    pub fn new(config: &DdConfig, url: url::Url) -> Result<Self, SinkError> {
        let mut key = HeaderValue::from_str(config.api_key.expose()).map_err(|_| {
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
        let client = ClientBuilder::new("datadog_logs", env!("CARGO_PKG_VERSION"))
            .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .request_timeout(config.request_timeout)
            .tls(config.tls.as_ref())
            .build()?;
        Ok(Intake {
            url,
            client,
            bodies: config.compression().encoder(),
        })
    }

    /// POSTs one JSON array of logs and reads the whole answer; `Err` when none came.
    pub async fn post(&self, json: Vec<u8>) -> Result<Response, SinkError> {
        let body: Bytes = self
            .bodies
            .encode(json.into())
            .map_err(|e| SinkError::Fatal(e.to_string()))?;
        let mut req = self.client.post(self.url.clone()).body(body);
        if let Some(encoding) = self.bodies.content_encoding() {
            req = req.header(CONTENT_ENCODING, encoding);
        }
        Response::fetch(req).await.map_err(|e| {
            SinkError::unavailable(format!(
                "POST {} failed: {}",
                self.url,
                sluice_sdk::http::with_causes(&e)
            ))
        })
    }
}
