//! What HEC's answers mean for delivery: the SDK's status table, extended with HEC's error
//! codes (which refuse events for good, which point at the configuration) and its
//! `invalid-event-number`.
//!
//! | answer | meaning here |
//! |---|---|
//! | 200 code 0 (`ackId`) | indexed (durable once the ackId is true) |
//! | 400 with `invalid-event-number: N` | events before N indexed, N refused (dead-lettered), the rest not indexed (resent) |
//! | 400 codes 6, 7, 12, 13, 15 without a position | every event of the request refused |
//! | 400 codes 5, 10, 11, 14, 16, other 4xx, 501, 3xx | a bug or a misconfiguration: fatal |
//! | 401 / 403 (codes 1-4) | token missing, invalid or disabled: unauthorized |
//! | 407 | a proxy wants credentials: unauthorized (retried, never dead-lettered) |
//! | 413 | request over the server's max content length: too large, the host splits |
//! | 408, 425, 429, 5xx (500 code 8, 503 code 9), 502/504 | unavailable, retried with backoff (Retry-After honoured) |

use std::time::Duration;

use serde::Deserialize;
use sluice_sdk::http::StatusClass;
use sluice_sdk::{Rejection, SinkError, Verdict};

/// HEC's JSON answer body.
#[derive(Debug, Default, Deserialize)]
pub struct Reply {
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub code: Option<i64>,
    #[serde(default, rename = "ackId")]
    pub ack_id: Option<u64>,
    #[serde(default, rename = "invalid-event-number")]
    pub invalid_event_number: Option<i64>,
}

impl Reply {
    fn parse(body: &[u8]) -> Option<Reply> {
        serde_json::from_slice(body).ok()
    }
}

/// What HEC indexed of a request it took.
#[derive(Debug)]
pub enum Indexed {
    /// Every event; with acknowledgements, durable once `ack_id` is reported true.
    All { ack_id: Option<u64> },
    /// Events `0..index` were indexed, event `index` is refused, later events were not indexed.
    UpTo { index: usize, rejection: Rejection },
}

/// What one HEC answer means for the events of its request: `Rejected` is a per-event error
/// HEC did not locate (no event of the request was indexed).
pub type HecVerdict = Verdict<Indexed>;

/// Rejection kind for a HEC error code: `splunk.hec.code=6`.
pub fn rejection_kind(code: i64) -> String {
    format!("splunk.hec.code={code}")
}

/// Splunk's own words for a code, used when an answer has no `text`.
fn code_text(code: i64) -> &'static str {
    match code {
        0 => "Success",
        1 => "Token disabled",
        2 => "Token is required",
        3 => "Invalid authorization",
        4 => "Invalid token",
        5 => "No data",
        6 => "Invalid data format",
        7 => "Incorrect index",
        8 => "Internal server error",
        9 => "Server is busy",
        10 => "Data channel is missing",
        11 => "Invalid data channel",
        12 => "Event field is required",
        13 => "Event field cannot be blank",
        14 => "ACK is disabled",
        15 => "Error in handling indexed fields",
        16 => "Query string authorization is not enabled",
        _ => "unknown HEC error",
    }
}

/// Classifies the answer of `endpoint` (base URL, for messages) to an event/raw request
/// carrying `events` events.
pub fn classify(
    endpoint: &str,
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
    events: usize,
) -> HecVerdict {
    let reply = Reply::parse(body);
    let code = reply.as_ref().and_then(|r| r.code);
    let text = reply
        .as_ref()
        .and_then(|r| r.text.clone())
        .or_else(|| code.map(|c| code_text(c).to_string()))
        .unwrap_or_else(|| snippet(body));
    let said = match code {
        Some(c) => format!("HEC at {endpoint} answered {status} code {c}: {text}"),
        None => format!("HEC at {endpoint} answered {status}: {text}"),
    };
    match StatusClass::of(status) {
        StatusClass::Success => Verdict::Delivered(Indexed::All {
            ack_id: reply.and_then(|r| r.ack_id),
        }),
        StatusClass::Unauthorized if status == 407 => Verdict::Failed(SinkError::Unauthorized(
            format!("{said}; a proxy between Sluice and HEC requires authentication"),
        )),
        StatusClass::Unauthorized => Verdict::Failed(SinkError::Unauthorized(format!(
            "{said}; check the sink's `token` (and that the HEC token is enabled)"
        ))),
        StatusClass::Rejected if status == 400 => match code {
            Some(c @ (6 | 7 | 12 | 13 | 15)) => {
                let rejection = Rejection {
                    kind: rejection_kind(c),
                    message: text,
                };
                let position = reply
                    .and_then(|r| r.invalid_event_number)
                    .and_then(|n| usize::try_from(n).ok())
                    .filter(|&n| n < events);
                match position {
                    Some(index) => Verdict::Delivered(Indexed::UpTo { index, rejection }),
                    None => Verdict::Rejected(rejection),
                }
            }
            _ => Verdict::Failed(SinkError::Fatal(format!(
                "{said} (a request the sink should never send: please report it)"
            ))),
        },
        StatusClass::Rejected if matches!(status, 404 | 405) => Verdict::Failed(SinkError::Fatal(
            format!("{said}; is `endpoint` the HEC base URL (e.g. https://splunk:8088)?"),
        )),
        // HEC refuses events only with a 400 and a code; another 4xx is about the request.
        StatusClass::Rejected => Verdict::Failed(SinkError::Fatal(said)),
        class => Verdict::Failed(
            class
                .sink_error(said.clone(), retry_after)
                .unwrap_or(SinkError::Fatal(said)),
        ),
    }
}

/// A transport failure (refused connection, timeout, TLS) as a whole-request error.
pub fn transport_error(endpoint: &str, error: &reqwest::Error) -> SinkError {
    sluice_sdk::http::unreachable(&format!("HEC at {endpoint}"), error)
}

/// The start of a non-JSON body (a proxy's HTML page), for messages.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    let text = text.trim();
    if text.is_empty() {
        "(empty body)".to_string()
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EP: &str = "https://splunk:8088";

    fn c(status: u16, body: &str) -> HecVerdict {
        classify(EP, status, None, body.as_bytes(), 10)
    }

    #[test]
    fn success_and_ack_id() {
        assert!(matches!(
            c(200, r#"{"text":"Success","code":0,"ackId":7}"#),
            Verdict::Delivered(Indexed::All { ack_id: Some(7) })
        ));
        assert!(matches!(
            c(200, r#"{"text":"Success","code":0}"#),
            Verdict::Delivered(Indexed::All { ack_id: None })
        ));
    }

    #[test]
    fn busy_and_internal_errors_are_unavailable() {
        for (status, body) in [
            (503, r#"{"text":"Server is busy","code":9}"#),
            (500, r#"{"text":"Internal server error","code":8}"#),
            (502, "<html>bad gateway</html>"),
            (429, ""),
            (408, ""),
            (425, ""),
        ] {
            match c(status, body) {
                Verdict::Failed(SinkError::Unavailable { message, .. }) => {
                    assert!(message.contains(&status.to_string()), "{message}")
                }
                other => panic!("{status}: {other:?}"),
            }
        }
        match classify(EP, 429, Some(Duration::from_secs(7)), b"", 1) {
            Verdict::Failed(SinkError::Unavailable { retry_after, .. }) => {
                assert_eq!(retry_after, Some(Duration::from_secs(7)))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn invalid_event_number_locates_the_bad_event() {
        match c(
            400,
            r#"{"text":"Invalid data format","code":6,"invalid-event-number":3}"#,
        ) {
            Verdict::Delivered(Indexed::UpTo { index, rejection }) => {
                assert_eq!(index, 3);
                assert_eq!(rejection.kind, "splunk.hec.code=6");
                assert_eq!(rejection.message, "Invalid data format");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            c(400, r#"{"text":"Event field cannot be blank","code":13}"#),
            Verdict::Rejected(r) if r.kind == "splunk.hec.code=13"
        ));
        // A position past the request cannot be trusted.
        assert!(matches!(
            c(
                400,
                r#"{"text":"Incorrect index","code":7,"invalid-event-number":10}"#
            ),
            Verdict::Rejected(_)
        ));
    }

    #[test]
    fn auth_failures_name_the_cause() {
        for (status, body, code) in [
            (
                403,
                r#"{"text":"Invalid token","code":4}"#,
                "code 4: Invalid token",
            ),
            (
                403,
                r#"{"text":"Token disabled","code":1}"#,
                "code 1: Token disabled",
            ),
            (401, r#"{"text":"Token is required","code":2}"#, "code 2"),
            (
                401,
                r#"{"text":"Invalid authorization","code":3}"#,
                "code 3",
            ),
        ] {
            match c(status, body) {
                Verdict::Failed(SinkError::Unauthorized(m)) => {
                    assert!(m.contains(code) && m.contains(EP), "{m}")
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn size_and_client_bugs() {
        assert!(matches!(
            c(413, "too large"),
            Verdict::Failed(SinkError::TooLarge(_))
        ));
        for body in [
            r#"{"text":"Data channel is missing","code":10}"#,
            r#"{"text":"Invalid data channel","code":11}"#,
            r#"{"text":"No data","code":5}"#,
        ] {
            assert!(
                matches!(c(400, body), Verdict::Failed(SinkError::Fatal(_))),
                "{body}"
            );
        }
        assert!(
            matches!(c(404, "{}"), Verdict::Failed(SinkError::Fatal(m)) if m.contains("base URL"))
        );
        assert!(matches!(c(415, ""), Verdict::Failed(SinkError::Fatal(_))));
        assert!(matches!(c(501, ""), Verdict::Failed(SinkError::Fatal(_))));
        assert!(matches!(c(302, ""), Verdict::Failed(SinkError::Fatal(_))));
        assert!(matches!(
            c(407, "proxy"),
            Verdict::Failed(SinkError::Unauthorized(_))
        ));
    }
}
