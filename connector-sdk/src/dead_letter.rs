//! The dead-letter contract: what a DLQ writer receives and the Kafka Connect header names it
//! writes, so every DLQ (file, Kafka, plugins) carries the same context.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::{DeadLetterError, Record};

/// Where in the pipeline a record failed. Displayed with Kafka Connect's stage names so
/// existing DLQ tooling reads them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    /// The source could not decode the bytes (not JSON, bad Avro): `VALUE_CONVERTER`.
    Conversion,
    /// A transform could not process the record (e.g. its value is not JSON): `TRANSFORMATION`.
    Transformation,
    /// The sink refused the record or retries were exhausted: `TASK_PUT`.
    Sink,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Conversion => "VALUE_CONVERTER",
            Stage::Transformation => "TRANSFORMATION",
            Stage::Sink => "TASK_PUT",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a record is dead-lettered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorContext {
    /// Pipeline name (`__connect.errors.connector.name`).
    pub pipeline: Arc<str>,
    pub stage: Stage,
    /// Stable error identifier (`__connect.errors.exception.class.name`).
    pub kind: String,
    /// Human-readable reason (`__connect.errors.exception.message`), kept whole in the DLQ.
    /// Only its first line ([`ErrorContext::summary`]) is logged: later lines may quote the
    /// record.
    pub message: String,
    /// Delivery attempts made before giving up (`sluice.errors.attempts`); 0 when the record
    /// never reached the sink.
    pub attempts: u32,
    /// The named sink that could not take the record (`sluice.errors.sink`), when the
    /// pipeline has several; `None` for a single sink and for stages before routing.
    pub sink: Option<Arc<str>>,
    /// Set when the record is a dead letter sent again (`sluice dlq replay`) and failed
    /// again: the letter keeps its source record's position and its first failure.
    pub replay: Option<Arc<ReplayContext>>,
}

/// What a replayed letter that fails again keeps from the letter it was: the source record's
/// position (`__connect.errors.topic/partition/offset`), its first failure and the number of
/// replays (`sluice.replay.count`, this one included).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayContext {
    pub count: u32,
    pub topic: String,
    pub partition: String,
    pub offset: String,
    /// The first failure's kind, stage and message.
    pub original_kind: String,
    pub original_stage: String,
    pub original_message: String,
}

/// Prefix of a record's `decode_error` for a record a source could not take whole (a line or
/// message over the source's size limit): the host dead-letters it with kind `too_large`.
pub const TOO_LARGE_PREFIX: &str = "too_large:";

/// The error kind (`__connect.errors.exception.class.name`) the host gives a record's
/// `decode_error`: `too_large` when it starts with [`TOO_LARGE_PREFIX`], else `decode_error`.
pub fn decode_error_kind(message: &str) -> &'static str {
    if message.starts_with(TOO_LARGE_PREFIX) {
        "too_large"
    } else {
        "decode_error"
    }
}

impl ErrorContext {
    /// The message without the part that may quote the record: what logs show.
    pub fn summary(&self) -> &str {
        message_summary(&self.message)
    }
}

/// A message's first line. Record contents stay out of logs: an error that quotes the record
/// puts that part on later lines ([`with_detail`]), which only the dead-letter queue keeps.
pub fn message_summary(message: &str) -> &str {
    message.lines().next().unwrap_or_default()
}

/// `summary` and a `detail` that may quote the record, as one message whose first line is
/// `summary` (line breaks in `summary` become spaces so none of it is hidden from logs).
pub fn with_detail(summary: &str, detail: &str) -> String {
    let mut message = summary.replace(['\r', '\n'], " ");
    if !detail.is_empty() {
        message.push('\n');
        message.push_str(detail);
    }
    message
}

/// Header names, as Kafka Connect's `DeadLetterQueueReporter` writes them.
pub mod headers {
    pub const TOPIC: &str = "__connect.errors.topic";
    pub const PARTITION: &str = "__connect.errors.partition";
    pub const OFFSET: &str = "__connect.errors.offset";
    pub const CONNECTOR_NAME: &str = "__connect.errors.connector.name";
    pub const STAGE: &str = "__connect.errors.stage";
    pub const EXCEPTION_CLASS: &str = "__connect.errors.exception.class.name";
    pub const EXCEPTION_MESSAGE: &str = "__connect.errors.exception.message";
    pub const ATTEMPTS: &str = "sluice.errors.attempts";
    pub const SINK: &str = "sluice.errors.sink";
    /// How many times the letter was replayed and failed again.
    pub const REPLAY_COUNT: &str = "sluice.replay.count";
    /// The first failure of a letter that failed again after a replay.
    pub const ORIGINAL_EXCEPTION_CLASS: &str = "sluice.errors.original.exception.class.name";
    pub const ORIGINAL_EXCEPTION_MESSAGE: &str = "sluice.errors.original.exception.message";
    pub const ORIGINAL_STAGE: &str = "sluice.errors.original.stage";
    /// Prefixes of the context headers: none of them is a header of the original record.
    pub const CONTEXT_PREFIXES: [&str; 2] = ["__connect.errors.", "sluice."];

    /// Whether `name` is a context header rather than one of the original record's.
    pub fn is_context(name: &str) -> bool {
        CONTEXT_PREFIXES.iter().any(|p| name.starts_with(p))
    }
}

/// One record on its way to the dead-letter queue.
#[derive(Clone, Copy, Debug)]
pub struct DeadLetter<'a> {
    pub record: &'a Record,
    pub error: &'a ErrorContext,
}

impl DeadLetter<'_> {
    /// The context headers to add to the original record, in Kafka Connect's order.
    /// `sluice.errors.sink` follows when the letter names a sink, then the replay headers of a
    /// replayed letter that failed again (whose topic, partition and offset stay those of the
    /// source record, not of the letter it was).
    pub fn context_headers(&self) -> Vec<(&'static str, String)> {
        let o = &self.record.origin;
        let (topic, partition, offset) = match &self.error.replay {
            Some(r) => (r.topic.clone(), r.partition.clone(), r.offset.clone()),
            None => (
                o.stream.to_string(),
                o.partition.to_string(),
                o.offset.to_string(),
            ),
        };
        let mut out = vec![
            (headers::TOPIC, topic),
            (headers::PARTITION, partition),
            (headers::OFFSET, offset),
            (headers::CONNECTOR_NAME, self.error.pipeline.to_string()),
            (headers::STAGE, self.error.stage.as_str().to_string()),
            (headers::EXCEPTION_CLASS, self.error.kind.clone()),
            (headers::EXCEPTION_MESSAGE, self.error.message.clone()),
            (headers::ATTEMPTS, self.error.attempts.to_string()),
        ];
        if let Some(sink) = &self.error.sink {
            out.push((headers::SINK, sink.to_string()));
        }
        if let Some(r) = &self.error.replay {
            out.push((headers::REPLAY_COUNT, r.count.to_string()));
            out.push((headers::ORIGINAL_EXCEPTION_CLASS, r.original_kind.clone()));
            out.push((
                headers::ORIGINAL_EXCEPTION_MESSAGE,
                r.original_message.clone(),
            ));
            out.push((headers::ORIGINAL_STAGE, r.original_stage.clone()));
        }
        out
    }
}

/// A dead-letter queue. `write` returns only once every letter is durably stored; on error the
/// host assumes none was.
#[async_trait]
pub trait DeadLetterWriter: Send + Sync {
    async fn write(&self, letters: &[DeadLetter<'_>]) -> Result<(), DeadLetterError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replayed_letter_keeps_its_source_position_and_first_failure() {
        let record = Record::new(&b"{}"[..], crate::Origin::new("dlq".into(), 0, 4096));
        let mut error = ErrorContext {
            pipeline: "p".into(),
            stage: Stage::Sink,
            kind: "postgres.sqlstate=23514".into(),
            message: "again".into(),
            attempts: 1,
            sink: Some("db".into()),
            replay: None,
        };
        let plain = DeadLetter {
            record: &record,
            error: &error,
        }
        .context_headers();
        assert_eq!(plain.len(), 9);
        assert_eq!(plain[2], (headers::OFFSET, "4096".to_string()));
        error.replay = Some(Arc::new(ReplayContext {
            count: 2,
            topic: "events".into(),
            partition: "3".into(),
            offset: "17".into(),
            original_kind: "postgres.missing_key".into(),
            original_stage: "TASK_PUT".into(),
            original_message: "first".into(),
        }));
        let h = DeadLetter {
            record: &record,
            error: &error,
        }
        .context_headers();
        let get = |k: &str| h.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
        assert_eq!(get(headers::TOPIC), Some("events"));
        assert_eq!(get(headers::PARTITION), Some("3"));
        assert_eq!(get(headers::OFFSET), Some("17"));
        assert_eq!(
            get(headers::EXCEPTION_CLASS),
            Some("postgres.sqlstate=23514")
        );
        assert_eq!(get(headers::REPLAY_COUNT), Some("2"));
        assert_eq!(
            get(headers::ORIGINAL_EXCEPTION_CLASS),
            Some("postgres.missing_key")
        );
        assert_eq!(get(headers::ORIGINAL_STAGE), Some("TASK_PUT"));
        assert_eq!(get(headers::ORIGINAL_EXCEPTION_MESSAGE), Some("first"));
        assert!(h.iter().all(|(n, _)| headers::is_context(n)));
        assert!(!headers::is_context("trace-id"));
    }

    #[test]
    fn the_summary_is_the_first_line_and_the_detail_stays_in_the_message() {
        let m = with_detail(
            "row refused\nby the check",
            "DETAIL: Failing row contains (42, x)",
        );
        assert_eq!(
            m,
            "row refused by the check\nDETAIL: Failing row contains (42, x)"
        );
        assert_eq!(message_summary(&m), "row refused by the check");
        assert_eq!(with_detail("plain", ""), "plain");
        assert_eq!(message_summary(""), "");
    }
}
