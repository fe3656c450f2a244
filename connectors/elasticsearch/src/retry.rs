//! What is retryable: the classification of bulk items and of whole-request answers.

use std::time::Duration;

use elasticsearch::http::headers::{HeaderMap, RETRY_AFTER};
use sluice_sdk::{Outcome, Rejection, SinkError};

use crate::config::OpType;
use crate::response::{describe_error, Action, EsError};

/// The outcome of one bulk item.
///
/// * 2xx: delivered.
/// * 409 on `create`: the id exists; ids are always explicit here (a field, or the record's
///   origin with a digest of its key and value), so an earlier attempt wrote this record (or,
///   with `id_field`, a record the user declared the same): delivered.
/// * 404 on `delete` (`not_found`): nothing to delete, not a failure.
/// * 429 (`es_rejected_execution_exception`) and 5xx (`unavailable_shards_exception`...):
///   only these items are retried.
/// * anything else (`mapper_parsing_exception`, `document_parsing_exception`, 409 on `index`,
///   `index_not_found_exception`, ...): rejected with the server's type and reason.
pub fn item_outcome(op: OpType, action: Action, status: u16, error: Option<&EsError>) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered,
        409 if action == Action::Create && op == OpType::Create => Outcome::Delivered,
        404 if action == Action::Delete => Outcome::Delivered,
        429 | 500..=599 => Outcome::Retry(match error {
            Some(e) => format!("bulk item answered {status} {}: {}", e.kind, e.message()),
            None => format!("bulk item answered {status}"),
        }),
        _ => match error {
            Some(e) => Outcome::reject(format!("es.bulk.item.{}", e.kind), e.message()),
            None => Outcome::reject(
                format!("es.bulk.item.status={status}"),
                format!("bulk item answered {status} without an error"),
            ),
        },
    }
}

/// A whole `_bulk` request that was not answered 200.
pub enum RequestFailure {
    /// Nothing was taken; the host handles it.
    Sink(SinkError),
    /// The request itself was refused for good (400 malformed, 404 missing index with
    /// auto-create off): every record of it goes to the DLQ with this reason.
    RejectAll(Rejection),
}

/// Classifies a non-200 `_bulk` answer.
pub fn request_failure(status: u16, headers: &HeaderMap, body: &[u8]) -> RequestFailure {
    let (kind, message) = describe_error(body);
    let text = match &kind {
        Some(k) => format!("Elasticsearch answered {status} {k}: {message}"),
        None if message.is_empty() => format!("Elasticsearch answered {status}"),
        None => format!("Elasticsearch answered {status}: {message}"),
    };
    match status {
        // 407: a proxy wants credentials; like a bad key, never the records' fault.
        401 | 403 | 407 => RequestFailure::Sink(SinkError::Unauthorized(text)),
        413 => RequestFailure::Sink(SinkError::TooLarge(text)),
        429 | 500 | 502..=599 => RequestFailure::Sink(SinkError::Unavailable {
            message: text,
            retry_after: retry_after(headers),
        }),
        400 | 404 => RequestFailure::RejectAll(Rejection {
            kind: format!(
                "es.bulk.request.{}",
                kind.unwrap_or_else(|| format!("status={status}"))
            ),
            message: text,
        }),
        // 406 (content type), 501, 3xx and the rest are a bug or a misconfigured endpoint.
        _ => RequestFailure::Sink(SinkError::Fatal(text)),
    }
}

/// `Retry-After` in seconds or as an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    sluice_sdk::http::parse_retry_after(headers.get(RETRY_AFTER)?.to_str().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(kind: &str) -> EsError {
        EsError {
            kind: kind.into(),
            reason: Some("why".into()),
            caused_by: None,
        }
    }

    #[test]
    fn items() {
        use Action::*;
        assert_eq!(
            item_outcome(OpType::Index, Index, 201, None),
            Outcome::Delivered
        );
        assert_eq!(
            item_outcome(
                OpType::Create,
                Create,
                409,
                Some(&err("version_conflict_engine_exception"))
            ),
            Outcome::Delivered
        );
        assert!(matches!(
            item_outcome(
                OpType::Index,
                Index,
                409,
                Some(&err("version_conflict_engine_exception"))
            ),
            Outcome::Reject(_)
        ));
        assert_eq!(
            item_outcome(OpType::Index, Delete, 404, None),
            Outcome::Delivered
        );
        assert!(matches!(
            item_outcome(
                OpType::Index,
                Index,
                429,
                Some(&err("es_rejected_execution_exception"))
            ),
            Outcome::Retry(_)
        ));
        assert!(matches!(
            item_outcome(OpType::Index, Index, 503, None),
            Outcome::Retry(_)
        ));
        assert_eq!(
            item_outcome(
                OpType::Index,
                Index,
                400,
                Some(&err("mapper_parsing_exception"))
            ),
            Outcome::reject("es.bulk.item.mapper_parsing_exception", "why")
        );
    }

    #[test]
    fn requests() {
        let h = HeaderMap::new();
        let body =
            br#"{"error":{"type":"es_rejected_execution_exception","reason":"busy"},"status":429}"#;
        assert!(matches!(
            request_failure(429, &h, body),
            RequestFailure::Sink(SinkError::Unavailable { .. })
        ));
        assert!(matches!(
            request_failure(413, &h, b""),
            RequestFailure::Sink(SinkError::TooLarge(_))
        ));
        for status in [401, 403, 407] {
            assert!(matches!(
                request_failure(status, &h, b""),
                RequestFailure::Sink(SinkError::Unauthorized(_))
            ));
        }
        let body = br#"{"error":{"type":"illegal_argument_exception","reason":"The bulk request must be terminated by a newline [\\n]"},"status":400}"#;
        match request_failure(400, &h, body) {
            RequestFailure::RejectAll(r) => {
                assert_eq!(r.kind, "es.bulk.request.illegal_argument_exception");
                assert!(r.message.contains("terminated by a newline"));
            }
            _ => panic!("400 must reject"),
        }
    }
}
