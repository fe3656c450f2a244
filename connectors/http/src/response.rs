//! What an API answer means for the record(s) of its call: the SDK's status table, after the
//! operator's per-status overrides (`responses:`).

use std::collections::BTreeMap;

use sluice_sdk::dead_letter::with_detail;
use sluice_sdk::http::{Response, StatusClass};
use sluice_sdk::{ConfigError, Rejection, SinkError, Verdict};

use crate::config::{Action, StatusKey};

/// How much of a refusing answer's body the dead-letter message keeps.
pub const BODY_EXCERPT_BYTES: usize = 1024;

/// What an answer means: the SDK's [`Verdict`], or a `retry` the operator asked for.
#[derive(Debug)]
pub enum Answer {
    Verdict(Verdict),
    /// Tried again with backoff, counted against `retry.max_attempts`.
    Retry(String),
}

/// The answer table of one sink.
#[derive(Debug, Clone, Default)]
pub struct Answers {
    overrides: BTreeMap<u16, Action>,
    /// One call per record: a 413 is about that record (dead-lettered), not a batch to split.
    per_record: bool,
}

impl Answers {
    /// Reads `responses:`; keys are status codes.
    pub fn new(
        responses: &BTreeMap<StatusKey, Action>,
        per_record: bool,
    ) -> Result<Self, ConfigError> {
        let mut overrides = BTreeMap::new();
        for (StatusKey(key), action) in responses {
            let status = key
                .trim()
                .parse::<u16>()
                .ok()
                .filter(|s| (100..=599).contains(s))
                .ok_or_else(|| {
                    ConfigError::at(
                        format!("responses.{key}"),
                        "not an HTTP status code (100 to 599)",
                    )
                })?;
            overrides.insert(status, *action);
        }
        Ok(Answers {
            overrides,
            per_record,
        })
    }

    /// Reads one answer. Messages name the status, never the call's URL or body (they may
    /// carry record values); a refusal's body excerpt goes on later lines, which only the
    /// dead-letter queue keeps.
    pub fn read(&self, resp: &Response) -> Answer {
        let status = resp.status.as_u16();
        let text = match resp.status.canonical_reason() {
            Some(reason) => format!("the API answered {status} {reason}"),
            None => format!("the API answered {status}"),
        };
        let reject = || Rejection {
            kind: format!("http.status={status}"),
            message: with_detail(&text, &excerpt(&resp.body)),
        };
        if let Some(action) = self.overrides.get(&status) {
            return match action {
                Action::Delivered => Answer::Verdict(Verdict::Delivered(())),
                Action::Reject => Answer::Verdict(Verdict::Rejected(reject())),
                Action::Retry => Answer::Retry(text),
                Action::Unavailable => Answer::Verdict(Verdict::Failed(SinkError::Unavailable {
                    message: text,
                    retry_after: resp.retry_after(),
                })),
            };
        }
        let verdict = match StatusClass::of(status) {
            StatusClass::Success => Verdict::Delivered(()),
            StatusClass::Rejected => Verdict::Rejected(reject()),
            StatusClass::TooLarge if self.per_record => Verdict::Rejected(reject()),
            StatusClass::Unauthorized => Verdict::Failed(SinkError::Unauthorized(format!(
                "{text}: the API refuses the credentials (check `auth` and `headers`)"
            ))),
            StatusClass::Misdirected => Verdict::Failed(SinkError::Fatal(format!(
                "{text}, which is not an answer to a call (check `url` and `method`; redirects \
                 are not followed)"
            ))),
            class => class.verdict(text, resp.retry_after(), String::new),
        };
        Answer::Verdict(verdict)
    }
}

/// The start of a body, as text, cut on a character boundary.
pub fn excerpt(body: &[u8]) -> String {
    if body.is_empty() {
        return String::new();
    }
    let cut = body.len() > BODY_EXCERPT_BYTES;
    let text = String::from_utf8_lossy(&body[..body.len().min(BODY_EXCERPT_BYTES)]);
    let text = text.trim_end_matches('\u{FFFD}');
    if cut {
        format!("response body (first {BODY_EXCERPT_BYTES} bytes): {text}…")
    } else {
        format!("response body: {text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
    use std::time::Duration;

    fn answer(a: &Answers, status: u16, headers: HeaderMap, body: &[u8]) -> Answer {
        a.read(&Response {
            status: reqwest::StatusCode::from_u16(status).unwrap(),
            headers,
            body: sluice_sdk::Bytes::copy_from_slice(body),
        })
    }

    #[test]
    fn the_table_with_overrides() {
        let overrides = [
            (StatusKey("409".into()), Action::Delivered),
            (StatusKey("500".into()), Action::Retry),
        ]
        .into_iter()
        .collect();
        let a = Answers::new(&overrides, true).unwrap();
        assert!(matches!(
            answer(&a, 201, HeaderMap::new(), b""),
            Answer::Verdict(Verdict::Delivered(()))
        ));
        assert!(matches!(
            answer(&a, 409, HeaderMap::new(), b"exists"),
            Answer::Verdict(Verdict::Delivered(()))
        ));
        assert!(matches!(
            answer(&a, 500, HeaderMap::new(), b""),
            Answer::Retry(_)
        ));
        match answer(
            &a,
            422,
            HeaderMap::new(),
            b"{\"status\":[\"not a valid choice\"]}",
        ) {
            Answer::Verdict(Verdict::Rejected(r)) => {
                assert_eq!(r.kind, "http.status=422");
                let mut lines = r.message.lines();
                assert_eq!(
                    lines.next(),
                    Some("the API answered 422 Unprocessable Entity")
                );
                assert_eq!(
                    lines.next(),
                    Some("response body: {\"status\":[\"not a valid choice\"]}")
                );
            }
            other => panic!("{other:?}"),
        }
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        for status in [408, 425, 429, 502, 503] {
            match answer(&a, status, h.clone(), b"") {
                Answer::Verdict(Verdict::Failed(SinkError::Unavailable {
                    retry_after, ..
                })) => {
                    assert_eq!(retry_after, Some(Duration::from_secs(2)))
                }
                other => panic!("{status}: {other:?}"),
            }
        }
        for status in [401, 403] {
            assert!(matches!(
                answer(&a, status, HeaderMap::new(), b""),
                Answer::Verdict(Verdict::Failed(SinkError::Unauthorized(_)))
            ));
        }
        assert!(matches!(
            answer(&a, 413, HeaderMap::new(), b""),
            Answer::Verdict(Verdict::Rejected(_))
        ));
        let batch = Answers::new(&BTreeMap::new(), false).unwrap();
        assert!(matches!(
            answer(&batch, 413, HeaderMap::new(), b""),
            Answer::Verdict(Verdict::Failed(SinkError::TooLarge(_)))
        ));
        assert!(matches!(
            answer(&batch, 302, HeaderMap::new(), b""),
            Answer::Verdict(Verdict::Failed(SinkError::Fatal(_)))
        ));
        let bad = [(StatusKey("4xx".into()), Action::Reject)]
            .into_iter()
            .collect();
        assert_eq!(
            Answers::new(&bad, true).unwrap_err().path.as_deref(),
            Some("responses.4xx")
        );
    }

    #[test]
    fn excerpts_are_bounded() {
        let long = "é".repeat(2000);
        let e = excerpt(long.as_bytes());
        assert!(e.len() < BODY_EXCERPT_BYTES + 64, "{}", e.len());
        assert!(e.ends_with('…') && !e.contains('\u{FFFD}'));
        assert_eq!(excerpt(b""), "");
    }
}
