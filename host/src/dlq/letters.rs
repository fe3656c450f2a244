//! Reading dead letters back: the file DLQ's JSON lines (`sluice_builtin`'s `file_dlq::encode`
//! writes them) into the original record plus the context the letter carries.

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;
use sluice_sdk::dead_letter::headers as h;
use sluice_sdk::{Header, ReplayContext};

/// A letter that cannot be read, or a DLQ that cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum LetterError {
    /// Names the line (and its byte position) so the operator can look at it; never quotes it.
    #[error("{file}:{line} (byte {position}): {message}")]
    Malformed {
        file: String,
        line: u64,
        position: i64,
        message: String,
    },
    #[error("kafka DLQ `{topic}` partition {partition} offset {offset}: {message}")]
    MalformedMessage {
        topic: String,
        partition: i32,
        offset: i64,
        message: String,
    },
    /// The Kafka DLQ cannot be read.
    #[error("{0}")]
    Kafka(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Why a letter was dead-lettered, as its context headers say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LetterContext {
    /// The source record's position (`__connect.errors.topic/partition/offset`).
    pub topic: String,
    pub partition: String,
    pub offset: String,
    pub stage: String,
    pub kind: String,
    pub message: String,
    pub attempts: Option<u32>,
    pub sink: Option<String>,
    /// Replays that failed again so far (`sluice.replay.count`).
    pub replay_count: u32,
    /// The first failure (kind, stage, message) of a letter that failed again after a replay.
    pub original: Option<(String, String, String)>,
    /// When the letter was written (file DLQ: `dead_lettered_at`; Kafka: the letter's
    /// timestamp), in milliseconds since the epoch, and as written.
    pub at: Option<i64>,
    pub at_text: Option<String>,
}

impl LetterContext {
    /// What the letter carries into its next failure if it fails again (moved, not copied:
    /// this is on a replay's path for every letter).
    pub fn into_replay(self) -> ReplayContext {
        let (original_kind, original_stage, original_message) =
            self.original
                .unwrap_or((self.kind, self.stage, self.message));
        ReplayContext {
            count: self.replay_count + 1,
            topic: self.topic,
            partition: self.partition,
            offset: self.offset,
            original_kind,
            original_stage,
            original_message,
        }
    }
}

/// One dead letter: the original record and its context, at `[position, end)` of its DLQ.
#[derive(Debug, Clone, PartialEq)]
pub struct Letter {
    pub partition: i32,
    pub position: i64,
    pub end: i64,
    pub key: Option<Bytes>,
    pub value: Bytes,
    /// The original record's headers (the context headers taken off).
    pub headers: Vec<Header>,
    pub timestamp: Option<i64>,
    pub context: LetterContext,
}

#[derive(Deserialize)]
struct LineHeader<'a> {
    #[serde(borrow)]
    key: Cow<'a, str>,
    #[serde(default, borrow)]
    value: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    value_base64: Option<Cow<'a, str>>,
}

/// A file DLQ line; unknown members are ignored (a later version may add some).
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(default, borrow)]
    key: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    key_base64: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    value: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    value_base64: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    headers: Vec<LineHeader<'a>>,
    #[serde(default)]
    timestamp: Option<i64>,
    #[serde(rename = "__connect.errors.topic", default, borrow)]
    topic: Option<Cow<'a, str>>,
    #[serde(rename = "__connect.errors.partition", default, borrow)]
    partition: Option<Cow<'a, str>>,
    #[serde(rename = "__connect.errors.offset", default, borrow)]
    offset: Option<Cow<'a, str>>,
    #[serde(rename = "__connect.errors.stage", default, borrow)]
    stage: Option<Cow<'a, str>>,
    #[serde(rename = "__connect.errors.exception.class.name", default, borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(rename = "__connect.errors.exception.message", default, borrow)]
    message: Option<Cow<'a, str>>,
    #[serde(rename = "sluice.errors.attempts", default, borrow)]
    attempts: Option<Cow<'a, str>>,
    #[serde(rename = "sluice.errors.sink", default, borrow)]
    sink: Option<Cow<'a, str>>,
    #[serde(rename = "sluice.replay.count", default, borrow)]
    replay_count: Option<Cow<'a, str>>,
    #[serde(
        rename = "sluice.errors.original.exception.class.name",
        default,
        borrow
    )]
    original_kind: Option<Cow<'a, str>>,
    #[serde(rename = "sluice.errors.original.stage", default, borrow)]
    original_stage: Option<Cow<'a, str>>,
    #[serde(rename = "sluice.errors.original.exception.message", default, borrow)]
    original_message: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    dead_lettered_at: Option<Cow<'a, str>>,
}

/// Text or base64 (`<name>_base64`, for bytes that are not UTF-8) into bytes.
fn bytes_of(
    name: &str,
    text: Option<Cow<'_, str>>,
    b64: Option<Cow<'_, str>>,
) -> Result<Option<Bytes>, String> {
    match (text, b64) {
        (Some(t), _) => Ok(Some(Bytes::from(t.into_owned()))),
        (None, Some(b)) => base64::engine::general_purpose::STANDARD
            .decode(b.as_bytes())
            .map(|v| Some(Bytes::from(v)))
            .map_err(|e| format!("`{name}_base64` is not base64: {e}")),
        (None, None) => Ok(None),
    }
}

fn owned(c: Option<Cow<'_, str>>) -> String {
    c.map(Cow::into_owned).unwrap_or_default()
}

/// Milliseconds since the epoch of an RFC 3339 time.
pub fn parse_time(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// Reads one file DLQ line, at `[position, end)` of the file. The error says what is wrong,
/// never what the line holds.
pub fn parse_line(line: &[u8], position: i64, end: i64) -> Result<Letter, String> {
    let text = std::str::from_utf8(line).map_err(|e| format!("not UTF-8: {e}"))?;
    let l: Line<'_> = serde_json::from_str(text).map_err(|e| {
        // serde_json's messages name what was expected and where, not the text itself.
        format!("not a dead letter: {e}")
    })?;
    let value = bytes_of("value", l.value, l.value_base64)?
        .ok_or_else(|| "no `value` (or `value_base64`)".to_string())?;
    let key = bytes_of("key", l.key, l.key_base64)?;
    let mut headers = Vec::with_capacity(l.headers.len());
    for hd in l.headers {
        let value = bytes_of("headers[].value", hd.value, hd.value_base64)?;
        headers.push(Header {
            key: hd.key.into_owned(),
            value,
        });
    }
    let kind = l
        .kind
        .ok_or_else(|| format!("no `{}`", h::EXCEPTION_CLASS))?
        .into_owned();
    let replay_count = match l.replay_count {
        None => 0,
        Some(c) => c
            .parse()
            .map_err(|_| format!("`{}` is not a count", h::REPLAY_COUNT))?,
    };
    let original = l.original_kind.map(|k| {
        (
            k.into_owned(),
            owned(l.original_stage),
            owned(l.original_message),
        )
    });
    let at_text = l.dead_lettered_at.map(Cow::into_owned);
    let context = LetterContext {
        topic: owned(l.topic),
        partition: owned(l.partition),
        offset: owned(l.offset),
        stage: owned(l.stage),
        kind,
        message: owned(l.message),
        attempts: l.attempts.and_then(|a| a.parse().ok()),
        sink: l.sink.map(Cow::into_owned),
        replay_count,
        original,
        at: at_text.as_deref().and_then(parse_time),
        at_text,
    };
    Ok(Letter {
        partition: 0,
        position,
        end,
        key,
        value,
        headers,
        timestamp: l.timestamp,
        context,
    })
}

/// A Kafka DLQ message as a letter: the context headers become its context, the others are
/// the original record's.
#[cfg(feature = "kafka")]
pub fn from_kafka(m: sluice_kafka::DlqMessage) -> Result<Letter, String> {
    let mut context = LetterContext::default();
    let mut headers = Vec::with_capacity(m.headers.len());
    let mut original = (None, String::new(), String::new());
    for (key, value) in m.headers {
        if !h::is_context(&key) {
            headers.push(Header { key, value });
            continue;
        }
        let text = value
            .as_deref()
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        match key.as_str() {
            h::TOPIC => context.topic = text,
            h::PARTITION => context.partition = text,
            h::OFFSET => context.offset = text,
            h::STAGE => context.stage = text,
            h::EXCEPTION_CLASS => context.kind = text,
            h::EXCEPTION_MESSAGE => context.message = text,
            h::ATTEMPTS => context.attempts = text.parse().ok(),
            h::SINK => context.sink = Some(text),
            h::REPLAY_COUNT => {
                context.replay_count = text
                    .parse()
                    .map_err(|_| format!("`{}` is not a count", h::REPLAY_COUNT))?
            }
            h::ORIGINAL_EXCEPTION_CLASS => original.0 = Some(text),
            h::ORIGINAL_STAGE => original.1 = text,
            h::ORIGINAL_EXCEPTION_MESSAGE => original.2 = text,
            _ => {}
        }
    }
    if context.kind.is_empty() {
        return Err(format!("no `{}` header", h::EXCEPTION_CLASS));
    }
    context.original = original.0.map(|k| (k, original.1, original.2));
    context.at = m.timestamp;
    context.at_text = m.timestamp.and_then(|t| {
        chrono::DateTime::from_timestamp_millis(t)
            .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    });
    Ok(Letter {
        partition: m.partition,
        position: m.offset,
        end: m.offset + 1,
        key: m.key,
        value: m.value.ok_or("no value (a tombstone)")?,
        headers,
        timestamp: m.timestamp,
        context,
    })
}

/// The lines of a file DLQ, from the start up to its length when opened: letters written
/// meanwhile (those a replay sends back) are for the next reader.
pub struct FileLetters {
    path: PathBuf,
    reader: Option<BufReader<File>>,
    /// Where the next line starts.
    position: i64,
    /// The file's length at open.
    end: i64,
    line_no: u64,
    buf: Vec<u8>,
}

impl FileLetters {
    /// Opens the DLQ; a file that does not exist holds no letters.
    pub fn open(path: &Path) -> Result<Self, LetterError> {
        let io = |source| LetterError::Io {
            path: path.to_path_buf(),
            source,
        };
        let (reader, end) = match File::open(path) {
            Ok(mut f) => {
                let end = f.seek(SeekFrom::End(0)).map_err(io)?;
                f.seek(SeekFrom::Start(0)).map_err(io)?;
                (Some(BufReader::with_capacity(1 << 20, f)), end as i64)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (None, 0),
            Err(e) => return Err(io(e)),
        };
        Ok(FileLetters {
            path: path.to_path_buf(),
            reader,
            position: 0,
            end,
            line_no: 0,
            buf: Vec::new(),
        })
    }

    /// Where reading stops (the file's length at open).
    pub fn end(&self) -> i64 {
        self.end
    }

    /// Where the next line starts.
    pub fn position(&self) -> i64 {
        self.position
    }

    /// The next line not passed over by `skip` (which tells, by start position, the lines
    /// replayed already), left in `self.buf` without its newline: `(line number, start,
    /// end)`, `None` at the end.
    fn next_line(
        &mut self,
        skip: impl Fn(i64) -> bool,
    ) -> Result<Option<(u64, i64, i64)>, LetterError> {
        loop {
            let Some(reader) = self.reader.as_mut() else {
                return Ok(None);
            };
            if self.position >= self.end {
                return Ok(None);
            }
            self.buf.clear();
            let n = reader
                .read_until(b'\n', &mut self.buf)
                .map_err(|source| LetterError::Io {
                    path: self.path.clone(),
                    source,
                })?;
            let start = self.position;
            let next = start + n as i64;
            // A last line without its newline was cut short by a crash: the writer cuts it
            // off before its next letter; it is no letter.
            if n == 0 || next > self.end || self.buf.last() != Some(&b'\n') {
                self.position = self.end;
                return Ok(None);
            }
            self.position = next;
            self.line_no += 1;
            self.buf.truncate(n - 1);
            if self.buf.iter().all(u8::is_ascii_whitespace) || skip(start) {
                continue;
            }
            return Ok(Some((self.line_no, start, next)));
        }
    }

    /// The next letter not passed over by `skip`, `None` at the end.
    pub fn next_letter(
        &mut self,
        skip: impl Fn(i64) -> bool,
    ) -> Result<Option<Result<Letter, LetterError>>, LetterError> {
        let Some((line, start, next)) = self.next_line(skip)? else {
            return Ok(None);
        };
        Ok(Some(parse_line(&self.buf, start, next).map_err(
            |message| malformed(&self.path, line, start, message),
        )))
    }

    /// Up to `max` lines not passed over by `skip`, unparsed, into `out` (emptied first), so
    /// they can be parsed elsewhere; false once the end is reached.
    pub fn read_lines(
        &mut self,
        max: usize,
        skip: impl Fn(i64) -> bool,
        out: &mut RawLines,
    ) -> Result<bool, LetterError> {
        out.buf.clear();
        out.lines.clear();
        while out.lines.len() < max {
            let Some((line, start, next)) = self.next_line(&skip)? else {
                return Ok(false);
            };
            let from = out.buf.len();
            out.buf.extend_from_slice(&self.buf);
            out.lines.push(RawLine {
                line,
                start,
                next,
                text: from..out.buf.len(),
            });
        }
        Ok(true)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn malformed(path: &Path, line: u64, position: i64, message: String) -> LetterError {
    LetterError::Malformed {
        file: path.display().to_string(),
        line,
        position,
        message,
    }
}

/// Lines of a file DLQ read and not parsed yet, in one buffer.
#[derive(Default)]
pub struct RawLines {
    buf: Vec<u8>,
    lines: Vec<RawLine>,
}

struct RawLine {
    line: u64,
    start: i64,
    next: i64,
    text: std::ops::Range<usize>,
}

impl RawLines {
    /// The letters of these lines, in order, each given to `each`; stops at the first
    /// malformed line (read from `path`) and returns its error.
    pub fn parse(&self, path: &Path, mut each: impl FnMut(Letter)) -> Result<(), LetterError> {
        for l in &self.lines {
            let letter = parse_line(&self.buf[l.text.clone()], l.start, l.next)
                .map_err(|message| malformed(path, l.line, l.start, message))?;
            each(letter);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::{DeadLetter, ErrorContext, Origin, Record, Stage};

    fn encoded(record: &Record, replay: Option<ReplayContext>) -> Vec<u8> {
        let error = ErrorContext {
            pipeline: "p".into(),
            stage: Stage::Sink,
            kind: "constraint_violation".into(),
            message: "row refused\nDETAIL: x".into(),
            attempts: 1,
            sink: Some("db".into()),
            replay: replay.map(std::sync::Arc::new),
        };
        let v = sluice_builtin::file_dlq_line(&DeadLetter {
            record,
            error: &error,
        });
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn a_line_gives_back_the_record_and_its_context() {
        let mut r = Record::new(&br#"{"id":7}"#[..], Origin::new("events".into(), 3, 41));
        r.key = Some(Bytes::from_static(b"k7"));
        r.headers = vec![
            Header::new("trace", "abc"),
            Header::new("bin", Bytes::from_static(&[0xff, 0x00])),
            Header {
                key: "empty".into(),
                value: None,
            },
        ];
        r.timestamp = Some(1_700_000_000_000);
        let line = encoded(&r, None);
        let l = parse_line(&line, 100, 100 + line.len() as i64 + 1).unwrap();
        assert_eq!(l.value, r.value);
        assert_eq!(l.key, r.key);
        assert_eq!(
            l.headers, r.headers,
            "context headers are not record headers"
        );
        assert_eq!(l.timestamp, r.timestamp);
        assert_eq!((l.position, l.end), (100, 100 + line.len() as i64 + 1));
        let c = &l.context;
        assert_eq!(
            (c.topic.as_str(), c.partition.as_str(), c.offset.as_str()),
            ("events", "3", "41")
        );
        assert_eq!(c.kind, "constraint_violation");
        assert_eq!(c.stage, "TASK_PUT");
        assert_eq!(c.message, "row refused\nDETAIL: x");
        assert_eq!(c.sink.as_deref(), Some("db"));
        assert_eq!(c.attempts, Some(1));
        assert_eq!(c.replay_count, 0);
        assert!(c.at.is_some());
        let again = c.clone().into_replay();
        assert_eq!(again.count, 1);
        assert_eq!(again.original_kind, "constraint_violation");
        assert_eq!(
            (again.topic.as_str(), again.offset.as_str()),
            ("events", "41")
        );
    }

    #[test]
    fn binary_values_and_keys_come_back_from_base64() {
        let mut r = Record::new(
            Bytes::from_static(&[0xc3, 0x28]),
            Origin::new("t".into(), 0, 0),
        );
        r.key = Some(Bytes::from_static(&[0xfe]));
        let line = encoded(&r, None);
        let text = String::from_utf8(line.clone()).unwrap();
        assert!(text.contains("value_base64") && text.contains("key_base64"));
        let l = parse_line(&line, 0, 1).unwrap();
        assert_eq!(l.value, r.value);
        assert_eq!(l.key, r.key);
    }

    #[test]
    fn a_letter_that_failed_again_keeps_its_first_failure() {
        let r = Record::new(&b"{}"[..], Origin::new("dlq".into(), 0, 900));
        let first = ReplayContext {
            count: 1,
            topic: "events".into(),
            partition: "0".into(),
            offset: "12".into(),
            original_kind: "mapping".into(),
            original_stage: "TASK_PUT".into(),
            original_message: "no column".into(),
        };
        let line = encoded(&r, Some(first));
        let l = parse_line(&line, 0, 1).unwrap();
        assert_eq!(
            l.context.offset, "12",
            "the source record's position, not the letter's"
        );
        assert_eq!(l.context.replay_count, 1);
        let next = l.context.into_replay();
        assert_eq!(next.count, 2);
        assert_eq!(
            (next.original_kind.as_str(), next.original_message.as_str()),
            ("mapping", "no column")
        );
    }

    #[test]
    fn what_is_wrong_is_said_without_quoting_the_line() {
        for (line, says) in [
            (
                &br#"{"__connect.errors.exception.class.name":"x"}"#[..],
                "no `value`",
            ),
            (
                br#"{"value":"secret-42"}"#,
                "no `__connect.errors.exception.class.name`",
            ),
            (
                br#"{"value_base64":"%%%","__connect.errors.exception.class.name":"x"}"#,
                "`value_base64` is not base64",
            ),
            (br#"{"value":"secret-42""#, "not a dead letter"),
            (&[0xff, 0xfe], "not UTF-8"),
        ] {
            let e = parse_line(line, 0, 1).unwrap_err();
            assert!(e.contains(says), "{e}");
            assert!(!e.contains("secret-42"), "{e}");
        }
    }

    #[test]
    fn the_file_reader_names_the_bad_line_and_stops_at_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.jsonl");
        let good = encoded(
            &Record::new(&b"{}"[..], Origin::new("t".into(), 0, 0)),
            None,
        );
        let mut body = Vec::new();
        body.extend_from_slice(&good);
        body.push(b'\n');
        body.extend_from_slice(b"{\"value\":\"v\"}\n");
        body.extend_from_slice(&good);
        body.push(b'\n');
        body.extend_from_slice(b"{\"value\":\"torn");
        std::fs::write(&path, &body).unwrap();
        let mut f = FileLetters::open(&path).unwrap();
        let first = f.next_letter(|_| false).unwrap().unwrap().unwrap();
        assert_eq!((first.position, first.end), (0, good.len() as i64 + 1));
        match f.next_letter(|_| false).unwrap().unwrap() {
            Err(LetterError::Malformed {
                line,
                position,
                message,
                ..
            }) => {
                assert_eq!(line, 2);
                assert_eq!(position, good.len() as i64 + 1);
                assert!(message.contains("exception.class.name"), "{message}");
            }
            other => panic!("expected a malformed line, got {other:?}"),
        }
        // The third is skipped by position; the torn fourth is no letter.
        let third = good.len() as i64 + 1 + 14;
        assert!(f.next_letter(|p| p == third).unwrap().is_none());
        assert!(FileLetters::open(&dir.path().join("none.jsonl"))
            .unwrap()
            .next_letter(|_| false)
            .unwrap()
            .is_none());
    }
}
