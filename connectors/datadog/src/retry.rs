//! What is retryable: the classification of intake answers (one answer covers a request).

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::Deserialize;
use sluice_sdk::{Rejection, SinkError};

/// What happened to the logs of one request.
#[derive(Debug)]
pub enum Answer {
    /// 2xx (202 from v2): accepted for processing.
    Accepted,
    /// Refused for good (400 bad payload): every log of the request goes to the DLQ.
    RejectAll(Rejection),
    /// Nothing was taken; the host handles it.
    Failed(SinkError),
}

/// `{"errors":[{"status","title","detail"}]}`
#[derive(Deserialize)]
struct ErrorBody {
    errors: Vec<ErrorItem>,
}

#[derive(Deserialize)]
struct ErrorItem {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    detail: Option<String>,
}

fn describe(body: &[u8]) -> String {
    if let Ok(e) = serde_json::from_slice::<ErrorBody>(body) {
        let parts: Vec<String> = e
            .errors
            .into_iter()
            .filter_map(|i| match (i.title, i.detail) {
                (Some(t), Some(d)) if t != d => Some(format!("{t}: {d}")),
                (Some(t), _) => Some(t),
                (None, d) => d,
            })
            .collect();
        if !parts.is_empty() {
            return parts.join("; ");
        }
    }
    String::from_utf8_lossy(body).chars().take(300).collect()
}

/// Classifies an intake answer.
///
/// 400 → DLQ; 401/403, and 407 from a proxy → unauthorized (the host retries slowly; the
/// pipeline is unhealthy; never dead-lettered);
/// 408/429/5xx → unavailable, honouring `Retry-After`; 413 → too large (the host splits);
/// 404/405 → the endpoint is wrong (fatal); any other 4xx → DLQ.
pub fn classify(status: u16, headers: &HeaderMap, body: &[u8]) -> Answer {
    if (200..300).contains(&status) {
        return Answer::Accepted;
    }
    let detail = describe(body);
    let text = if detail.is_empty() {
        format!("Datadog answered {status}")
    } else {
        format!("Datadog answered {status}: {detail}")
    };
    match status {
        401 | 403 => Answer::Failed(SinkError::Unauthorized(format!(
            "{text} (check `api_key` and that it belongs to this site)"
        ))),
        407 => Answer::Failed(SinkError::Unauthorized(format!(
            "{text} (a proxy between Sluice and Datadog requires authentication)"
        ))),
        408 | 429 | 500..=599 => Answer::Failed(SinkError::Unavailable {
            message: text,
            retry_after: retry_after(headers),
        }),
        413 => Answer::Failed(SinkError::TooLarge(text)),
        404 | 405 => Answer::Failed(SinkError::Fatal(format!(
            "{text}: the endpoint is not a Datadog logs intake (check `site`/`endpoint`)"
        ))),
        400..=499 => Answer::RejectAll(Rejection {
            kind: format!("datadog.http.{status}"),
            message: text,
        }),
        _ => Answer::Failed(SinkError::Fatal(text)),
    }
}

/// `Retry-After` in seconds or as an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    sluice_sdk::http::parse_retry_after(headers.get(RETRY_AFTER)?.to_str().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn statuses() {
        let mut h = HeaderMap::new();
        assert!(matches!(classify(202, &h, b"{}"), Answer::Accepted));
        let body =
            br#"{"errors":[{"status":"400","title":"Bad Request","detail":"invalid JSON"}]}"#;
        match classify(400, &h, body) {
            Answer::RejectAll(r) => {
                assert_eq!(r.kind, "datadog.http.400");
                assert!(r.message.contains("Bad Request: invalid JSON"));
            }
            other => panic!("{other:?}"),
        }
        for status in [401, 403, 407] {
            assert!(matches!(
                classify(status, &h, b""),
                Answer::Failed(SinkError::Unauthorized(_))
            ));
        }
        assert!(matches!(
            classify(413, &h, b""),
            Answer::Failed(SinkError::TooLarge(_))
        ));
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        match classify(429, &h, b"") {
            Answer::Failed(SinkError::Unavailable { retry_after, .. }) => {
                assert_eq!(retry_after, Some(Duration::from_secs(7)))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify(408, &h, b""),
            Answer::Failed(SinkError::Unavailable { .. })
        ));
        assert!(matches!(
            classify(503, &h, b""),
            Answer::Failed(SinkError::Unavailable { .. })
        ));
        assert!(matches!(
            classify(404, &h, b""),
            Answer::Failed(SinkError::Fatal(_))
        ));
    }
}
