//! What each Cosmos DB answer means for a reader: go on, wait, re-route, or stop.
//!
//! Cosmos's own codes first, the SDK's status table for the rest. Status and substatus
//! (`x-ms-substatus`) are always matched together: 1002 is a split under 410 but a lagging
//! replica under 404.

use std::time::Duration;

use sluice_sdk::http::{Response, StatusClass};
use sluice_sdk::SourceError;

/// What an answer that is neither a page nor a 304 means for the reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// 410/1002 PartitionKeyRangeGone: the range split (or merged); continue in its children.
    Split,
    /// 410/1007, 410/1008, 410/1000: the topology or name cache is moving; refresh, retry.
    Refresh(String),
    /// 429: wait as long as the service says.
    Throttled(Duration),
    /// 408, 425, 449, 5xx but 501, 404/1002, or no answer at all: retry with backoff.
    Transient(String),
    /// 401 or 403: the key, the signature or the clock is wrong (407: a proxy's).
    Unauthorized(String),
    /// 404 (database or container gone), 400 and any other client error.
    Fatal(String),
}

impl Verdict {
    /// The text an operator reads.
    pub fn message(&self) -> String {
        match self {
            Verdict::Unauthorized(m)
            | Verdict::Fatal(m)
            | Verdict::Refresh(m)
            | Verdict::Transient(m) => m.clone(),
            Verdict::Split => "partition key range is gone".into(),
            Verdict::Throttled(d) => format!("throttled (429), retry after {d:?}"),
        }
    }

    pub fn into_source_error(self) -> SourceError {
        match self {
            Verdict::Unauthorized(m) => SourceError::Unauthorized(m),
            Verdict::Fatal(m) => SourceError::Fatal(m),
            other => SourceError::Unavailable(other.message()),
        }
    }
}

/// Used when a 429 carries no `x-ms-retry-after-ms`.
const DEFAULT_THROTTLE_WAIT: Duration = Duration::from_secs(1);

/// The `x-ms-substatus` header, 0 when absent.
pub fn substatus(resp: &Response) -> u32 {
    resp.header("x-ms-substatus")
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// The service's error `message` without its trailing activity id and SDK version, on one
/// line (a 401 quotes the payload the server signed, newlines and all), or the raw body when
/// it is not Cosmos's `{"code","message"}`.
pub fn server_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let text = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(b) if !b.message.is_empty() => b.message,
        Ok(b) => b.code,
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    let text = text.split("ActivityId:").next().unwrap_or("");
    let one_line = text.trim().replace('\r', "").replace('\n', "\\n");
    let mut out: String = one_line.chars().take(600).collect();
    if out.len() < one_line.len() {
        out.push('…');
    }
    out
}

/// Classifies a non-success answer (anything but 200 and 304).
pub fn classify(resp: &Response, what: &str, endpoint: &str) -> Verdict {
    let sub = substatus(resp);
    let msg = server_message(&resp.body);
    let status = resp.status;
    let said = |m: &str| format!("{what}: HTTP {}/{sub}: {m}", status.as_u16());
    match (status.as_u16(), sub) {
        (410, 1002) => Verdict::Split,
        (410, _) => Verdict::Refresh(said(&msg)),
        (429, _) => Verdict::Throttled(
            resp.header("x-ms-retry-after-ms")
                .and_then(|s| s.trim().parse::<f64>().ok())
                .filter(|ms| ms.is_finite() && *ms >= 0.0)
                .map(|ms| Duration::from_micros((ms * 1000.0) as u64))
                .or_else(|| resp.retry_after())
                .unwrap_or(DEFAULT_THROTTLE_WAIT),
        ),
        // 449 Retry With, and a replica lagging behind a split.
        (449, _) | (404, 1002) => Verdict::Transient(said(&msg)),
        (401, _) => Verdict::Unauthorized(format!(
            "Cosmos DB at {endpoint} rejected the request signature (401 Unauthorized) for \
             {what}: check that `key` is the account's primary or secondary master key \
             (base64, read-write or read-only) for this account. Server said: {msg}"
        )),
        (403, _) if msg.contains("not valid at the current time") => {
            Verdict::Unauthorized(format!(
                "Cosmos DB at {endpoint} refused the authorization token as not valid at the \
                 current time (403 Forbidden): this machine's clock is more than 15 minutes \
                 away from the service's; fix the clock (NTP), the key itself was accepted. \
                 Server said: {msg}"
            ))
        }
        (403, _) => Verdict::Unauthorized(format!(
            "Cosmos DB at {endpoint} denied access (403 Forbidden) for {what}: the key was \
             accepted but is not allowed here (firewall, disabled key-based auth, or \
             permissions). Server said: {msg}"
        )),
        (404, _) => Verdict::Fatal(format!(
            "{what}: database or container not found (404) at {endpoint}: check `database` \
             and `container` (names are case-sensitive). Server said: {msg}"
        )),
        (code, _) => match StatusClass::of(code) {
            StatusClass::Unavailable => Verdict::Transient(said(&msg)),
            StatusClass::Unauthorized => Verdict::Unauthorized(said(&msg)),
            _ => Verdict::Fatal(said(&msg)),
        },
    }
}

/// Turns a transport error into a retryable failure, with its causes (a refused
/// connection, a certificate the CA does not sign).
pub fn transport(e: reqwest::Error, what: &str) -> Verdict {
    Verdict::Transient(format!("{what}: {}", sluice_sdk::http::with_causes(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};
    use reqwest::StatusCode;

    fn resp(
        status: u16,
        sub: Option<&str>,
        extra: &[(&'static str, &str)],
        body: &str,
    ) -> Response {
        let mut headers = HeaderMap::new();
        if let Some(s) = sub {
            headers.insert("x-ms-substatus", HeaderValue::from_str(s).unwrap());
        }
        for (k, v) in extra {
            headers.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        Response {
            status: StatusCode::from_u16(status).unwrap(),
            headers,
            body: bytes::Bytes::copy_from_slice(body.as_bytes()),
        }
    }

    #[test]
    fn classification() {
        let c = |r: Response| classify(&r, "change feed", "http://x");
        assert_eq!(c(resp(410, Some("1002"), &[], "")), Verdict::Split);
        assert!(matches!(
            c(resp(410, Some("1007"), &[], "")),
            Verdict::Refresh(_)
        ));
        assert!(matches!(
            c(resp(404, Some("1002"), &[], "")),
            Verdict::Transient(_)
        ));
        assert!(matches!(c(resp(404, None, &[], "")), Verdict::Fatal(_)));
        assert!(matches!(c(resp(503, None, &[], "")), Verdict::Transient(_)));
        assert!(matches!(c(resp(449, None, &[], "")), Verdict::Transient(_)));
        assert!(matches!(c(resp(400, None, &[], "")), Verdict::Fatal(_)));
        assert_eq!(
            c(resp(
                429,
                Some("3200"),
                &[("x-ms-retry-after-ms", "250")],
                ""
            )),
            Verdict::Throttled(Duration::from_millis(250))
        );
    }

    #[test]
    fn auth_messages_tell_clock_from_key() {
        let skew = r#"{"code":"Forbidden","message":"The authorization token is not valid at the current time. Please create another token and retry (token start time: x).\r\nActivityId: 1"}"#;
        let Verdict::Unauthorized(m) = classify(&resp(403, None, &[], skew), "w", "e") else {
            panic!()
        };
        assert!(m.contains("clock"), "{m}");
        assert!(!m.contains("ActivityId"), "{m}");
        let bad = r#"{"code":"Unauthorized","message":"The input authorization token can't serve the request."}"#;
        let Verdict::Unauthorized(m) = classify(&resp(401, None, &[], bad), "w", "e") else {
            panic!()
        };
        assert!(m.contains("master key") && !m.contains("clock"), "{m}");
    }
}
