//! What an intake answer means for the logs of its request (one answer covers a request).

use serde::Deserialize;
use sluice_sdk::http::{Response, StatusClass};
use sluice_sdk::{SinkError, Verdict};

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

/// Classifies an intake answer: the SDK's table (2xx, 202 from v2, accepted; a refused
/// payload dead-lettered as `datadog.http.<status>`), with hints for credentials and one
/// reading of Datadog's own: 404/405 mean the endpoint is not an intake (fatal).
pub fn classify(resp: &Response) -> Verdict {
    let status = resp.status.as_u16();
    let class = StatusClass::of(status);
    if class == StatusClass::Success {
        return Verdict::Delivered(());
    }
    let detail = describe(&resp.body);
    let text = if detail.is_empty() {
        format!("Datadog answered {status}")
    } else {
        format!("Datadog answered {status}: {detail}")
    };
    match class {
        StatusClass::Unauthorized if status == 407 => Verdict::Failed(SinkError::Unauthorized(
            format!("{text} (a proxy between Sluice and Datadog requires authentication)"),
        )),
        StatusClass::Unauthorized => Verdict::Failed(SinkError::Unauthorized(format!(
            "{text} (check `api_key` and that it belongs to this site)"
        ))),
        StatusClass::Rejected if matches!(status, 404 | 405) => Verdict::Failed(SinkError::Fatal(
            format!("{text}: the endpoint is not a Datadog logs intake (check `site`/`endpoint`)"),
        )),
        class => class.verdict(text, resp.retry_after(), || {
            format!("datadog.http.{status}")
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
    use std::time::Duration;

    fn classify(status: u16, headers: &HeaderMap, body: &[u8]) -> Verdict {
        super::classify(&Response {
            status: reqwest::StatusCode::from_u16(status).unwrap(),
            headers: headers.clone(),
            body: bytes::Bytes::copy_from_slice(body),
        })
    }

    #[test]
    fn statuses() {
        let mut h = HeaderMap::new();
        assert!(matches!(classify(202, &h, b"{}"), Verdict::Delivered(())));
        let body =
            br#"{"errors":[{"status":"400","title":"Bad Request","detail":"invalid JSON"}]}"#;
        match classify(400, &h, body) {
            Verdict::Rejected(r) => {
                assert_eq!(r.kind, "datadog.http.400");
                assert!(r.message.contains("Bad Request: invalid JSON"));
            }
            other => panic!("{other:?}"),
        }
        for status in [401, 403, 407] {
            assert!(matches!(
                classify(status, &h, b""),
                Verdict::Failed(SinkError::Unauthorized(_))
            ));
        }
        assert!(matches!(
            classify(413, &h, b""),
            Verdict::Failed(SinkError::TooLarge(_))
        ));
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        match classify(429, &h, b"") {
            Verdict::Failed(SinkError::Unavailable { retry_after, .. }) => {
                assert_eq!(retry_after, Some(Duration::from_secs(7)))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify(408, &h, b""),
            Verdict::Failed(SinkError::Unavailable { .. })
        ));
        assert!(matches!(
            classify(503, &h, b""),
            Verdict::Failed(SinkError::Unavailable { .. })
        ));
        assert!(matches!(
            classify(404, &h, b""),
            Verdict::Failed(SinkError::Fatal(_))
        ));
        assert!(matches!(
            classify(425, &h, b""),
            Verdict::Failed(SinkError::Unavailable { .. })
        ));
        assert!(matches!(
            classify(501, &h, b""),
            Verdict::Failed(SinkError::Fatal(_))
        ));
        assert!(matches!(classify(422, &h, b""), Verdict::Rejected(_)));
    }
}
