//! HTTP side: the client (TLS), the endpoint rotation, request headers and compression.

use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
use sluice_sdk::gzip::Gzip;
use sluice_sdk::SinkError;
use url::Url;

use crate::config::{Compression, EndpointKind, HecConfig};

/// Header carrying the channel GUID; required by HEC when the token uses acknowledgement.
pub const CHANNEL_HEADER: &str = "X-Splunk-Request-Channel";

/// One HEC listener.
#[derive(Debug)]
struct Endpoint {
    base: String,
    send: Url,
    ack: Url,
}

/// What came back, read in full.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: Bytes,
}

/// Sends event and ack requests to the configured listeners.
#[derive(Debug)]
pub struct Requester {
    client: reqwest::Client,
    endpoints: Vec<Endpoint>,
    next: AtomicUsize,
    /// Set when the configuration asks for gzip.
    gzip: Option<Gzip>,
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
        let mut builder = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(std::time::Duration::from_secs(10)))
            .user_agent(concat!("sluice-splunk-hec/", env!("CARGO_PKG_VERSION")));
        if let Some(tls) = &config.tls {
            if let Some(path) = &tls.ca_file {
                let pem = read_file(path, "tls.ca_file")?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem)
                    .map_err(|e| fatal_file(path, "tls.ca_file", &e))?;
                if certs.is_empty() {
                    return Err(fatal_file(
                        path,
                        "tls.ca_file",
                        &"no PEM certificate in the file",
                    ));
                }
                for cert in certs {
                    builder = builder.add_root_certificate(cert);
                }
            }
            if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
                let mut pem = read_file(key, "tls.key_file")?;
                pem.push(b'\n');
                pem.extend_from_slice(&read_file(cert, "tls.cert_file")?);
                let identity = reqwest::Identity::from_pem(&pem)
                    .map_err(|e| fatal_file(cert, "tls.cert_file/tls.key_file", &e))?;
                builder = builder.identity(identity);
            }
            if tls.insecure_skip_verify {
                tracing::warn!("splunk_hec: tls.insecure_skip_verify is on: the HEC server certificate is not checked");
                builder = builder.danger_accept_invalid_certs(true);
            }
        }
        let client = builder
            .build()
            .map_err(|e| SinkError::Fatal(format!("cannot build the HTTP client: {e}")))?;

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
            // Level 1: JSON compresses well even at the fastest level, and CPU per record
            // matters more here than a few percent of bandwidth.
            gzip: (config.compression == Compression::Gzip).then(|| Gzip::new(1)),
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
        match &self.gzip {
            None => Ok(encoded.slice(range)),
            Some(gz) => gz
                .compress(&encoded[range])
                .map_err(|e| SinkError::Fatal(e.to_string())),
        }
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
        if self.gzip.is_some() {
            req = req.header(CONTENT_ENCODING, "gzip");
        }
        fetch(req.body(body)).await
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
        fetch(req).await
    }
}

async fn fetch(req: reqwest::RequestBuilder) -> Result<Response, reqwest::Error> {
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = resp.bytes().await?;
    Ok(Response {
        status,
        retry_after,
        body,
    })
}

fn read_file(path: &std::path::Path, key: &str) -> Result<Vec<u8>, SinkError> {
    std::fs::read(path).map_err(|e| fatal_file(path, key, &e))
}

fn fatal_file(path: &std::path::Path, key: &str, e: &dyn std::fmt::Display) -> SinkError {
    SinkError::Fatal(format!("{key} `{}`: {e}", path.display()))
}
