//! Writes a batch as one `_bulk` NDJSON body: an action line and a source line per record,
//! each ending in `\n` (Elasticsearch refuses a body whose last line is not terminated).

use std::ops::Range;

use bytes::Bytes;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sluice_sdk::{json, Outcome, Outcomes, RecordRef};

use crate::config::OpType;
use crate::index::IndexTemplate;

/// Turns records into bulk lines.
#[derive(Debug)]
pub struct Encoder {
    pub index: IndexTemplate,
    pub op: OpType,
    pub id_field: Option<String>,
    /// Field holding the event time that picks the index's date parts.
    pub time_field: Option<String>,
}

/// One encoded batch.
#[derive(Debug)]
pub struct Encoded {
    /// Every encoded record's two lines, back to back.
    pub body: Bytes,
    /// `(record position in the batch, its bytes in body)`, in body order.
    pub spans: Vec<(usize, Range<usize>)>,
    /// `Reject` for the records that cannot become a bulk item; the others are answered by
    /// the bulk requests.
    pub outcomes: Outcomes,
}

/// Average action line plus slack, to size the buffer once.
const ACTION_LINE_ESTIMATE: usize = 96;
const MS_PER_HOUR: i64 = 3_600_000;

impl Encoder {
    /// True when records must be parsed (a field in the index template, `id_field`, or a
    /// `time_field` that picks the index).
    fn needs_fields(&self) -> bool {
        self.index.needs_fields() || self.id_field.is_some() || self.reads_time_field()
    }

    fn reads_time_field(&self) -> bool {
        self.time_field.is_some() && self.index.needs_time()
    }

    pub fn encode(&self, records: &[RecordRef<'_>]) -> Encoded {
        let capacity = records
            .iter()
            .map(|r| r.value().len() + ACTION_LINE_ESTIMATE)
            .sum();
        let mut buf = Vec::with_capacity(capacity);
        let mut spans = Vec::with_capacity(records.len());
        let mut outcomes = Outcomes::new(records.len());
        let now_ms = now_ms();
        let needs_fields = self.needs_fields();
        // Rendered names are reused while the hour (the finest date part) stays the same.
        let mut cached: Option<(i64, String)> = None;
        let mut scratch = String::new();

        for (i, record) in records.iter().enumerate() {
            let start = buf.len();
            match self.encode_one(
                record,
                now_ms,
                needs_fields,
                &mut cached,
                &mut scratch,
                &mut buf,
            ) {
                Ok(()) => spans.push((i, start..buf.len())),
                Err(rejection) => {
                    buf.truncate(start);
                    outcomes.set(i, rejection);
                }
            }
        }
        Encoded {
            body: Bytes::from(buf),
            spans,
            outcomes,
        }
    }

    fn encode_one(
        &self,
        record: &RecordRef<'_>,
        now_ms: i64,
        needs_fields: bool,
        cached: &mut Option<(i64, String)>,
        scratch: &mut String,
        buf: &mut Vec<u8>,
    ) -> Result<(), Outcome> {
        // The source line must be a JSON object; anything else would break the NDJSON framing
        // or fail the whole request rather than one item.
        if first_non_space(record.value()) != Some(b'{') {
            return Err(Outcome::reject(
                "es.document.not_an_object",
                "record value is not a JSON object",
            ));
        }
        let doc: Option<Value> = if needs_fields {
            match serde_json::from_slice(record.value()) {
                Ok(v) => Some(v),
                Err(e) => {
                    return Err(Outcome::reject(
                        "es.document.invalid_json",
                        format!("record value is not valid JSON: {e}"),
                    ))
                }
            }
        } else {
            None
        };

        // The event's own time when `time_field` holds one; otherwise (or when the field is
        // missing or not a time, as in `splunk_hec`) the record's time, then the current time.
        let time_ms = self
            .time_field
            .as_deref()
            .filter(|_| self.index.needs_time())
            .zip(doc.as_ref())
            .and_then(|(path, d)| json::get(d, path))
            .and_then(sluice_sdk::time::parse_millis)
            .or(record.timestamp())
            .unwrap_or(now_ms);
        let index: &str = if self.index.needs_fields() {
            scratch.clear();
            self.index
                .render(time_ms, doc.as_ref(), scratch)
                .map_err(|e| Outcome::reject("es.index.missing_field", e.to_string()))?;
            scratch
        } else {
            let bucket = if self.index.needs_time() {
                time_ms.div_euclid(MS_PER_HOUR)
            } else {
                0
            };
            match cached {
                Some((b, name)) if *b == bucket => name,
                _ => {
                    let mut name = String::new();
                    self.index
                        .render(time_ms, None, &mut name)
                        .map_err(|e| Outcome::reject("es.index.missing_field", e.to_string()))?;
                    &cached.insert((bucket, name)).1
                }
            }
        };

        buf.extend_from_slice(b"{\"");
        buf.extend_from_slice(self.op.as_str().as_bytes());
        buf.extend_from_slice(b"\":{\"_index\":");
        json::write_str(buf, index);
        buf.extend_from_slice(b",\"_id\":");
        match &self.id_field {
            Some(field) => {
                let id = doc
                    .as_ref()
                    .and_then(|d| json::get(d, field))
                    .and_then(json::as_text)
                    .ok_or_else(|| {
                        Outcome::reject(
                            "es.id.missing_field",
                            format!(
                                "id_field `{field}` is missing or not a string, number or boolean"
                            ),
                        )
                    })?;
                if id.is_empty() {
                    return Err(Outcome::reject(
                        "es.id.missing_field",
                        format!("id_field `{field}` is empty"),
                    ));
                }
                json::write_str(buf, &id);
            }
            None => write_origin_id(buf, record),
        }
        buf.extend_from_slice(b"}}\n");

        // JSON allows raw CR/LF only as whitespace between tokens (never inside strings), so
        // turning them into spaces keeps the document identical and the line intact.
        if memchr::memchr2(b'\n', b'\r', record.value()).is_some() {
            buf.extend(record.value().iter().map(|&b| match b {
                b'\n' | b'\r' => b' ',
                other => other,
            }));
        } else {
            buf.extend_from_slice(record.value());
        }
        buf.push(b'\n');
        Ok(())
    }
}

/// Groups consecutive spans into requests of at most `max_bytes` (a span larger than that
/// goes alone: the server decides, and a 413 makes the host split or dead-letter it).
pub fn chunks(spans: &[(usize, Range<usize>)], max_bytes: usize) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, (_, r)) in spans.iter().enumerate() {
        let len = r.len();
        if i > start && bytes + len > max_bytes {
            out.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += len;
    }
    if start < spans.len() {
        out.push(start..spans.len());
    }
    out
}

/// `<topic>-<partition>-<offset>-<digest>`: a replay of the same record gets the same id, and
/// a different record at a reused position (a topic recreated, a file re-read, two clusters
/// with one topic name) gets another one, so `create` never answers 409 for a record that was
/// never written.
fn write_origin_id(buf: &mut Vec<u8>, record: &RecordRef<'_>) {
    let origin = record.origin();
    json::write_str(buf, origin.stream);
    buf.pop(); // reopen the string to append the numbers
    let mut n = itoa::Buffer::new();
    buf.push(b'-');
    buf.extend_from_slice(n.format(origin.partition).as_bytes());
    buf.push(b'-');
    buf.extend_from_slice(n.format(origin.offset).as_bytes());
    buf.push(b'-');
    write_digest(buf, record);
    buf.push(b'"');
}

/// Hex digits of the id digest: 128 bits of SHA-256 of the key and value.
const DIGEST_BYTES: usize = 16;

/// Appends the first [`DIGEST_BYTES`] of SHA-256 over the key (length-prefixed, so key and
/// value cannot trade bytes; absent and empty differ) and the value, in lower-case hex.
fn write_digest(buf: &mut Vec<u8>, record: &RecordRef<'_>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut h = Sha256::new();
    match record.key() {
        Some(k) => {
            h.update([1u8]);
            h.update((k.len() as u64).to_le_bytes());
            h.update(k);
        }
        None => h.update([0u8]),
    }
    h.update(record.value());
    let digest = h.finalize();
    for b in &digest[..DIGEST_BYTES] {
        buf.push(HEX[usize::from(b >> 4)]);
        buf.push(HEX[usize::from(b & 0xf)]);
    }
}

fn first_non_space(bytes: &[u8]) -> Option<u8> {
    bytes.iter().copied().find(|b| !b.is_ascii_whitespace())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::{views, Origin, Record};

    fn rec(value: &str, offset: i64) -> Record {
        let mut r = Record::new(value.to_string(), Origin::new("audit".into(), 2, offset));
        r.timestamp = Some(1_718_022_896_000);
        r
    }

    fn id_of(r: &Record) -> String {
        let mut buf = Vec::new();
        write_origin_id(&mut buf, &r.view());
        serde_json::from_slice(&buf).unwrap()
    }

    #[test]
    fn default_ids_follow_the_position_and_the_content() {
        let a = rec(r#"{"a":1}"#, 7);
        let id = id_of(&a);
        assert!(id.starts_with("audit-2-7-"), "{id}");
        assert_eq!(id.len(), "audit-2-7-".len() + 2 * DIGEST_BYTES);
        // A replay keeps its id; another record at the same position gets another.
        assert_eq!(id_of(&rec(r#"{"a":1}"#, 7)), id);
        assert_ne!(id_of(&rec(r#"{"a":2}"#, 7)), id);
        let mut keyed = rec(r#"{"a":1}"#, 7);
        keyed.key = Some(Bytes::from_static(b"k"));
        assert_ne!(id_of(&keyed), id);
        let mut empty_key = rec(r#"{"a":1}"#, 7);
        empty_key.key = Some(Bytes::new());
        assert_ne!(id_of(&empty_key), id);
    }

    #[test]
    fn time_field_picks_the_dated_index() {
        let enc = Encoder {
            index: crate::index::parse("audit-%Y.%m.%d").unwrap(),
            op: OpType::Create,
            id_field: None,
            time_field: Some("event.at".into()),
        };
        // The record's own time is 2024-06-10; the events say otherwise (or nothing usable).
        let out = enc.encode(&views(&[
            rec(r#"{"event":{"at":"2023-01-02T03:04:05Z"}}"#, 1),
            rec(r#"{"event":{"at":1700000000}}"#, 2),
            rec(r#"{"event":{"at":"yesterday"}}"#, 3),
            rec(r#"{"other":1}"#, 4),
        ]));
        let text = std::str::from_utf8(&out.body).unwrap();
        let indices: Vec<&str> = text
            .lines()
            .step_by(2)
            .map(|l| l.split('"').nth(5).unwrap())
            .collect();
        assert_eq!(
            indices,
            [
                "audit-2023.01.02",
                "audit-2023.11.14",
                "audit-2024.06.10",
                "audit-2024.06.10"
            ]
        );
    }

    #[test]
    fn writes_pairs_with_final_newline() {
        let enc = Encoder {
            index: crate::index::parse("audit-%Y.%m.%d").unwrap(),
            op: OpType::Create,
            id_field: None,
            time_field: None,
        };
        let batch = [rec("{\"a\":1}", 7), rec("[1]", 8), rec("{\"b\":\n2}", 9)];
        let out = enc.encode(&views(&batch));
        let text = std::str::from_utf8(&out.body).unwrap();
        assert_eq!(
            text,
            format!(
                "{{\"create\":{{\"_index\":\"audit-2024.06.10\",\"_id\":\"{}\"}}}}\n{{\"a\":1}}\n\
                 {{\"create\":{{\"_index\":\"audit-2024.06.10\",\"_id\":\"{}\"}}}}\n{{\"b\": 2}}\n",
                id_of(&batch[0]),
                id_of(&batch[2])
            )
        );
        assert!(
            matches!(out.outcomes.get(1), Some(Outcome::Reject(r)) if r.kind == "es.document.not_an_object")
        );
        assert_eq!(out.spans.len(), 2);
    }

    #[test]
    fn id_and_index_from_fields() {
        let enc = Encoder {
            index: crate::index::parse("t-{{ tenant }}").unwrap(),
            op: OpType::Index,
            id_field: Some("event.id".into()),
            time_field: None,
        };
        let out = enc.encode(&views(&[
            rec(r#"{"tenant":"acme","event":{"id":"e\"1"}}"#, 1),
            rec(r#"{"tenant":"acme"}"#, 2),
        ]));
        let text = std::str::from_utf8(&out.body).unwrap();
        assert!(text.starts_with("{\"index\":{\"_index\":\"t-acme\",\"_id\":\"e\\\"1\"}}\n"));
        assert!(
            matches!(out.outcomes.get(1), Some(Outcome::Reject(r)) if r.kind == "es.id.missing_field")
        );
    }

    #[test]
    fn chunking_respects_the_byte_cap() {
        let spans: Vec<_> = (0..5).map(|i| (i, i * 10..i * 10 + 10)).collect();
        assert_eq!(chunks(&spans, 25), vec![0..2, 2..4, 4..5]);
        assert_eq!(chunks(&spans, 5), vec![0..1, 1..2, 2..3, 3..4, 4..5]);
        assert_eq!(chunks(&spans, 1000), vec![0..5]);
    }
}
