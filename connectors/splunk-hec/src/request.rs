//! Building and sending requests: the client, the endpoint rotation, request headers and
//! compression.

use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
use sluice_sdk::http::{BodyEncoder, ClientBuilder, Response};
use sluice_sdk::SinkError;
use url::Url;

use crate::config::{EndpointKind, HecConfig};

/// Header carrying the channel GUID; required by HEC when the token uses acknowledgement.
pub const CHANNEL_HEADER: &str = "X-Splunk-Request-Channel";

/// One HEC listener.
#[derive(Debug)]
struct Endpoint {
    base: String,
    send: Url,
    ack: Url,
}

/// Sends event and ack requests to the configured listeners.
#[derive(Debug)]
pub struct Requester {
    client: reqwest::Client,
    endpoints: Vec<Endpoint>,
    next: AtomicUsize,
    bodies: BodyEncoder,
    content_type: &'static str,
}

impl Requester {
    /// Builds the HTTP client. Reads the TLS files, so it runs in `open`, not in the factory.
    pub fn new(config: &HecConfig, bases: &[String], channel: &str) -> Result<Self, SinkError> {
        let mut headers = HeaderMap::new();
        let mut auth = HeaderValue::from_str(&format!("Splunk {}", config.token.expose()))
            .map_err(|_| SinkError::Fatal("the HEC token contains invalid characters".into()))?;
        auth.set_sensitive(true);
        headers.insert(AUTHORIZATION, auth);
        headers.insert(
            CHANNEL_HEADER,
            HeaderValue::from_str(channel)
                .map_err(|_| SinkError::Fatal("invalid channel id".into()))?,
        );
        let client = ClientBuilder::new("splunk_hec", env!("CARGO_PKG_VERSION"))
            .default_headers(headers)
            .request_timeout(config.request_timeout())
            .tls(config.tls.as_ref())
            .build()?;

        let (path, content_type) = match config.endpoint_kind {
            EndpointKind::Event => ("/services/collector/event", "application/json"),
            EndpointKind::Raw => ("/services/collector/raw", "text/plain"),
        };
        let mut endpoints = Vec::with_capacity(bases.len());
        for base in bases {
            let parse = |p: &str| {
                Url::parse(&format!("{base}{p}"))
                    .map_err(|e| SinkError::Fatal(format!("invalid endpoint `{base}`: {e}")))
            };
            let mut send = parse(path)?;
            if config.endpoint_kind == EndpointKind::Raw {
                // /raw takes its metadata and (for old Splunk versions) the channel here.
                let mut q = send.query_pairs_mut();
                q.append_pair("channel", channel);
                for (k, t) in [
                    ("index", &config.index),
                    ("source", &config.source),
                    ("sourcetype", &config.sourcetype),
                    ("host", &config.host),
                ] {
                    if let Some(v) = t.as_ref().and_then(|t| t.constant()) {
                        q.append_pair(k, v);
                    }
                }
            }
            endpoints.push(Endpoint {
                base: base.clone(),
                send,
                ack: parse("/services/collector/ack")?,
            });
        }
        Ok(Requester {
            client,
            endpoints,
            next: AtomicUsize::new(0),
            bodies: config.compression.encoder(),
            content_type,
        })
    }

    /// Endpoint indexes to try for one request: round-robin start, then the others in turn.
    pub fn order(&self) -> impl Iterator<Item = usize> + use<'_> {
        let n = self.endpoints.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        (0..n).map(move |i| (start + i) % n)
    }

    /// Number of endpoints.
    pub fn endpoint_count(&self) -> usize {
        self.endpoints.len()
    }

    /// Base URL of an endpoint, for messages.
    pub fn base(&self, endpoint: usize) -> &str {
        &self.endpoints[endpoint].base
    }

    /// The request body for `range` of an encoded batch, compressed if configured.
    pub fn body(&self, encoded: &Bytes, range: std::ops::Range<usize>) -> Result<Bytes, SinkError> {
        self.bodies
            .encode(encoded.slice(range))
            .map_err(|e| SinkError::Fatal(e.to_string()))
    }

    /// POSTs an event (or raw) body.
    pub async fn post_events(
        &self,
        endpoint: usize,
        body: Bytes,
    ) -> Result<Response, reqwest::Error> {
        let mut req = self
            .client
            .post(self.endpoints[endpoint].send.clone())
            .header(CONTENT_TYPE, self.content_type);
        if let Some(encoding) = self.bodies.content_encoding() {
            req = req.header(CONTENT_ENCODING, encoding);
        }
        Response::fetch(req.body(body)).await
    }

    /// POSTs an ack query `{"acks":[...]}`.
    pub async fn post_acks(
        &self,
        endpoint: usize,
        body: Vec<u8>,
    ) -> Result<Response, reqwest::Error> {
        let req = self
            .client
            .post(self.endpoints[endpoint].ack.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        Response::fetch(req).await
    }
}
