//! Building and sending one `_bulk` request: NDJSON body, compressed as configured, with the
//! ingest pipeline in the query.

use bytes::Bytes;
use elasticsearch::http::headers::{HeaderMap, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE};
use elasticsearch::http::transport::Transport;
use elasticsearch::http::Method;
use sluice_sdk::http::{with_causes, BodyEncoder, Response};
use sluice_sdk::SinkError;

/// What every `_bulk` request of a sink shares.
#[derive(Debug)]
pub struct BulkRequest {
    encoder: BodyEncoder,
    pipeline: Option<String>,
}

impl BulkRequest {
    pub fn new(encoder: BodyEncoder, pipeline: Option<String>) -> Self {
        BulkRequest { encoder, pipeline }
    }

    /// POSTs `body` (NDJSON lines) to `_bulk` and reads the whole answer. `Err` when no
    /// answer came (`target` names the cluster in the message).
    pub async fn send(
        &self,
        transport: &Transport,
        target: &str,
        body: Bytes,
    ) -> Result<Response, SinkError> {
        let mut headers = HeaderMap::with_capacity(2);
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
        if let Some(encoding) = self.encoder.content_encoding() {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static(encoding));
        }
        let body = self
            .encoder
            .encode(body)
            .map_err(|e| SinkError::Fatal(e.to_string()))?;
        let query: Option<[(&str, &str); 1]> = self.pipeline.as_deref().map(|p| [("pipeline", p)]);
        let resp = transport
            .send(
                Method::Post,
                "_bulk",
                headers,
                query.as_ref().map(|q| q.as_slice()),
                Some(body),
                None,
            )
            .await
            .map_err(|e| {
                SinkError::unavailable(format!(
                    "bulk request to {target} failed: {}",
                    with_causes(&e)
                ))
            })?;
        let status = resp.status_code();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(|e| {
            SinkError::unavailable(format!("reading the bulk answer: {}", with_causes(&e)))
        })?;
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}
