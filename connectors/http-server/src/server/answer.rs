//! What a request is answered.
//!
//! One event on the single-event path: its item, with the item's status as the HTTP status.
//! Otherwise (the bulk path, an array, NDJSON), in the manner of Elasticsearch's bulk API:
//!
//! ```json
//! {"errors": true, "accepted": 998, "rejected": 2,
//!  "items": [{"status": 200, "result": "accepted"},
//!            {"status": 400, "error": {"type": "schema_violation", "reason": "...", "pointer": "/data"}},
//!            {"status": 403, "error": {"type": "forbidden", "reason": "..."}}]}
//! ```
//!
//! with HTTP 200 when every item was accepted and 207 otherwise. A request refused as a whole
//! (401, 413, 415, 429, 503, or a body that is not JSON) gets `{"error": {"type", "reason"}}`
//! and none of its events is kept.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The answer for one event.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ItemError>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ItemError {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
}

impl Item {
    pub fn accepted() -> Self {
        Item {
            status: 200,
            result: Some("accepted"),
            error: None,
        }
    }

    pub fn rejected(
        status: u16,
        kind: &'static str,
        reason: String,
        pointer: Option<String>,
    ) -> Self {
        Item {
            status,
            result: None,
            error: Some(ItemError {
                kind,
                reason,
                pointer,
            }),
        }
    }

    pub fn is_accepted(&self) -> bool {
        self.error.is_none()
    }
}

#[derive(Serialize)]
struct Bulk<'a> {
    errors: bool,
    accepted: usize,
    rejected: usize,
    items: &'a [Item],
}

fn json(status: StatusCode, body: Vec<u8>) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// One event's answer as the whole response.
pub fn single(item: &Item) -> Response {
    let status = StatusCode::from_u16(item.status).unwrap_or(StatusCode::OK);
    json(status, serde_json::to_vec(item).unwrap_or_default())
}

/// Per-item answers: 200 when all were accepted, 207 otherwise.
pub fn bulk(items: &[Item]) -> Response {
    let accepted = items.iter().filter(|i| i.is_accepted()).count();
    let body = Bulk {
        errors: accepted < items.len(),
        accepted,
        rejected: items.len() - accepted,
        items,
    };
    let status = if accepted == items.len() {
        StatusCode::OK
    } else {
        StatusCode::MULTI_STATUS
    };
    json(status, serde_json::to_vec(&body).unwrap_or_default())
}

/// The whole request refused.
pub fn refused(
    status: StatusCode,
    kind: &'static str,
    reason: &str,
    retry_after: Option<Duration>,
) -> Response {
    let body = serde_json::json!({ "error": { "type": kind, "reason": reason } });
    let mut r = json(status, serde_json::to_vec(&body).unwrap_or_default());
    if let Some(d) = retry_after {
        let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    }
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    r
}
