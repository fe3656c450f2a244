//! The one reading of an HTTP status for a request that carried records.
//!
//! | status | class | what the host does |
//! |---|---|---|
//! | 2xx | [`Success`](StatusClass::Success) | the records are delivered |
//! | 408, 425, 429, 5xx but 501 | [`Unavailable`](StatusClass::Unavailable) | resends with backoff, waiting at least `Retry-After` |
//! | 401, 403, 407 | [`Unauthorized`](StatusClass::Unauthorized) | retries slowly, pipeline unhealthy, nothing dead-lettered |
//! | 413 | [`TooLarge`](StatusClass::TooLarge) | splits the batch |
//! | any other 4xx | [`Rejected`](StatusClass::Rejected) | dead-letters the records |
//! | 1xx, 3xx, 501, anything else | [`Misdirected`](StatusClass::Misdirected) | fatal: the endpoint is not what the sink expects |
//!
//! 501 (Not Implemented) says the endpoint does not do this at all; retrying cannot help.
//! A connector matches on the class and handles only its protocol's own codes before it
//! (HEC's error codes, Elasticsearch's missing index).

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::{Rejection, SinkError, Verdict};

/// What an HTTP status means for the records of the request that got it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    Success,
    Unavailable,
    Unauthorized,
    TooLarge,
    Rejected,
    Misdirected,
}

impl StatusClass {
    pub fn of(status: u16) -> Self {
        match status {
            200..=299 => StatusClass::Success,
            401 | 403 | 407 => StatusClass::Unauthorized,
            413 => StatusClass::TooLarge,
            408 | 425 | 429 => StatusClass::Unavailable,
            400..=499 => StatusClass::Rejected,
            501 => StatusClass::Misdirected,
            500..=599 => StatusClass::Unavailable,
            _ => StatusClass::Misdirected,
        }
    }

    /// The whole-request error the class stands for, worded by the connector (`message`);
    /// `None` for [`Success`](StatusClass::Success) and [`Rejected`](StatusClass::Rejected),
    /// which are about the records, not the destination.
    pub fn sink_error(self, message: String, retry_after: Option<Duration>) -> Option<SinkError> {
        match self {
            StatusClass::Success | StatusClass::Rejected => None,
            StatusClass::Unavailable => Some(SinkError::Unavailable {
                message,
                retry_after,
            }),
            StatusClass::Unauthorized => Some(SinkError::Unauthorized(message)),
            StatusClass::TooLarge => Some(SinkError::TooLarge(message)),
            StatusClass::Misdirected => Some(SinkError::Fatal(message)),
        }
    }

    /// The verdict on a request with no protocol quirks: a rejection carries `kind`.
    pub fn verdict(
        self,
        message: String,
        retry_after: Option<Duration>,
        kind: impl FnOnce() -> String,
    ) -> Verdict {
        match self {
            StatusClass::Success => Verdict::Delivered(()),
            StatusClass::Rejected => Verdict::Rejected(Rejection {
                kind: kind(),
                message,
            }),
            class => match class.sink_error(message, retry_after) {
                Some(e) => Verdict::Failed(e),
                None => Verdict::Delivered(()),
            },
        }
    }
}

/// Parses a `Retry-After` value: delay-seconds (`120`) or an HTTP date
/// (`Wed, 21 Oct 2015 07:28:00 GMT`; a date in the past means no wait). Return it as
/// `SinkError::Unavailable::retry_after` and the host waits at least that long.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// The `Retry-After` header of an answer, if it has a readable one.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    parse_retry_after(headers.get(RETRY_AFTER)?.to_str().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table() {
        use StatusClass::*;
        for (status, class) in [
            (200, Success),
            (202, Success),
            (204, Success),
            (408, Unavailable),
            (425, Unavailable),
            (429, Unavailable),
            (500, Unavailable),
            (502, Unavailable),
            (503, Unavailable),
            (504, Unavailable),
            (599, Unavailable),
            (401, Unauthorized),
            (403, Unauthorized),
            (407, Unauthorized),
            (413, TooLarge),
            (400, Rejected),
            (404, Rejected),
            (409, Rejected),
            (422, Rejected),
            (501, Misdirected),
            (301, Misdirected),
            (100, Misdirected),
            (600, Misdirected),
        ] {
            assert_eq!(StatusClass::of(status), class, "{status}");
        }
    }

    #[test]
    fn errors_and_verdicts() {
        let e = StatusClass::Unavailable.sink_error("busy".into(), Some(Duration::from_secs(3)));
        assert!(matches!(
            e,
            Some(SinkError::Unavailable { retry_after: Some(d), .. }) if d == Duration::from_secs(3)
        ));
        assert!(StatusClass::Rejected.sink_error("x".into(), None).is_none());
        assert!(matches!(
            StatusClass::Misdirected.sink_error("x".into(), None),
            Some(SinkError::Fatal(_))
        ));
        match StatusClass::of(422).verdict("bad".into(), None, || "x.http.422".into()) {
            Verdict::Rejected(r) => {
                assert_eq!((r.kind.as_str(), r.message.as_str()), ("x.http.422", "bad"))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            StatusClass::of(202).verdict(String::new(), None, String::new),
            Verdict::Delivered(())
        ));
    }

    #[test]
    fn seconds_dates_and_garbage() {
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        let d = parse_retry_after(&later).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        assert_eq!(parse_retry_after("soon"), None);
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, reqwest::header::HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
    }
}
