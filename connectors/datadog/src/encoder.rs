//! Writes logs as JSON arrays, split so that no request breaks Datadog's limits.

use serde_json::Value;
use sluice_sdk::template::Template;
use sluice_sdk::{json, Outcome, Outcomes, RecordRef};

/// At most this many logs per request.
pub const MAX_ENTRIES: usize = 1000;
/// At most this many bytes per request body, measured before compression.
pub const MAX_REQUEST_BYTES: usize = 5_000_000;
/// A log larger than this would be truncated by Datadog; it is rejected instead.
pub const MAX_LOG_BYTES: usize = 1_000_000;

/// The reserved attributes set from the configuration.
#[derive(Debug, Default)]
pub struct Attributes {
    pub service: Option<Template>,
    pub ddsource: Option<Template>,
    pub ddtags: Option<Template>,
    pub hostname: Option<Template>,
    pub status: Option<Template>,
}

impl Attributes {
    fn iter(&self) -> impl Iterator<Item = (&'static str, &Template)> {
        [
            ("ddsource", &self.ddsource),
            ("ddtags", &self.ddtags),
            ("hostname", &self.hostname),
            ("service", &self.service),
            ("status", &self.status),
        ]
        .into_iter()
        .filter_map(|(k, t)| t.as_ref().map(|t| (k, t)))
    }

    fn needs_fields(&self) -> bool {
        self.iter().any(|(_, t)| t.needs_fields())
    }

    fn is_set(&self, key: &str) -> bool {
        self.iter().any(|(k, _)| k == key)
    }
}

/// Turns records into Datadog log objects.
#[derive(Debug)]
pub struct Encoder {
    pub attributes: Attributes,
    pub message_field: Option<String>,
}

/// The body of one request and the batch positions of its logs.
#[derive(Debug, Default)]
pub struct Chunk {
    pub body: Vec<u8>,
    pub positions: Vec<usize>,
}

impl Chunk {
    fn open(capacity: usize) -> Self {
        let mut body = Vec::with_capacity(capacity);
        body.push(b'[');
        Chunk {
            body,
            positions: Vec::new(),
        }
    }
}

/// One encoded batch.
#[derive(Debug)]
pub struct Encoded {
    pub chunks: Vec<Chunk>,
    /// `Reject` for the records that cannot be sent; the others are answered by the requests.
    pub outcomes: Outcomes,
}

impl Encoder {
    pub fn encode(&self, records: &[RecordRef<'_>]) -> Encoded {
        let estimate: usize = records.iter().map(|r| r.value().len() + 128).sum();
        let capacity = estimate.min(MAX_REQUEST_BYTES + 1);
        let mut chunks = Vec::new();
        let mut cur = Chunk::open(capacity);
        let mut outcomes = Outcomes::new(records.len());
        let needs_doc = self.message_field.is_some() || self.attributes.needs_fields();

        for (i, record) in records.iter().enumerate() {
            let mark = cur.body.len();
            if !cur.positions.is_empty() {
                cur.body.push(b',');
            }
            let start = cur.body.len();
            if let Err(rejection) = self.write_log(record, needs_doc, &mut cur.body) {
                cur.body.truncate(mark);
                outcomes.set(i, rejection);
                continue;
            }
            let len = cur.body.len() - start;
            if len > MAX_LOG_BYTES {
                cur.body.truncate(mark);
                outcomes.set(
                    i,
                    Outcome::reject(
                        "datadog.log_too_large",
                        format!(
                        "log is {len} bytes, over Datadog's {MAX_LOG_BYTES}-byte limit per log; \
                         not sent because Datadog would truncate it"
                    ),
                    ),
                );
                continue;
            }
            // `]` still has to fit.
            if cur.positions.len() == MAX_ENTRIES || cur.body.len() + 1 > MAX_REQUEST_BYTES {
                let log = cur.body[start..].to_vec();
                cur.body.truncate(mark);
                cur.body.push(b']');
                let remaining = capacity.saturating_sub(mark);
                chunks.push(std::mem::replace(
                    &mut cur,
                    Chunk::open(remaining.max(log.len() + 2)),
                ));
                cur.body.extend_from_slice(&log);
            }
            cur.positions.push(i);
        }
        if !cur.positions.is_empty() {
            cur.body.push(b']');
            chunks.push(cur);
        }
        Encoded { chunks, outcomes }
    }

    /// Writes one log object.
    fn write_log(
        &self,
        record: &RecordRef<'_>,
        needs_doc: bool,
        buf: &mut Vec<u8>,
    ) -> Result<(), Outcome> {
        let mut doc: Option<Value> = if needs_doc {
            match serde_json::from_slice(record.value()) {
                Ok(v) => Some(v),
                Err(e) if self.message_field.is_some() => {
                    return Err(Outcome::reject(
                        "datadog.invalid_json",
                        format!(
                        "record value is not valid JSON, so `message_field` cannot be read: {e}"
                    ),
                    ))
                }
                // Templates read fields from JSON records only; other records keep fixed parts.
                Err(_) => None,
            }
        } else {
            None
        };

        buf.push(b'{');
        for (key, template) in self.attributes.iter() {
            let rendered = match &doc {
                Some(d) => template.render(d).ok(),
                None => template.constant().map(std::borrow::Cow::Borrowed),
            };
            if let Some(text) = rendered {
                json::write_str(buf, key);
                buf.push(b':');
                json::write_str(buf, &text);
                buf.push(b',');
            }
        }

        match &self.message_field {
            None => {
                json::write_str(buf, "message");
                buf.push(b':');
                match std::str::from_utf8(record.value()) {
                    Ok(text) => json::write_str(buf, text),
                    Err(_) => json::write_str(buf, &String::from_utf8_lossy(record.value())),
                }
                if let Some(ts) = record.timestamp() {
                    buf.extend_from_slice(b",\"timestamp\":");
                    buf.extend_from_slice(itoa::Buffer::new().format(ts).as_bytes());
                }
            }
            Some(field) => {
                let Some(doc) = doc.as_mut().filter(|d| d.is_object()) else {
                    return Err(Outcome::reject(
                        "datadog.not_an_object",
                        "record value is not a JSON object, so `message_field` cannot be read",
                    ));
                };
                let message = json::remove(doc, field).ok_or_else(|| {
                    Outcome::reject(
                        "datadog.missing_message",
                        format!("message_field `{field}` is missing from the record"),
                    )
                })?;
                json::write_str(buf, "message");
                buf.push(b':');
                match &message {
                    Value::String(s) => json::write_str(buf, s),
                    other => json::write_str(buf, &other.to_string()),
                }
                let mut has_timestamp = false;
                if let Value::Object(map) = &*doc {
                    for (k, v) in map {
                        if k == "message" || self.attributes.is_set(k) {
                            continue;
                        }
                        has_timestamp |= k == "timestamp";
                        buf.push(b',');
                        json::write_str(buf, k);
                        buf.push(b':');
                        write_value(buf, v);
                    }
                }
                if let (Some(ts), false) = (record.timestamp(), has_timestamp) {
                    buf.extend_from_slice(b",\"timestamp\":");
                    buf.extend_from_slice(itoa::Buffer::new().format(ts).as_bytes());
                }
            }
        }
        buf.push(b'}');
        Ok(())
    }
}

fn write_value(buf: &mut Vec<u8>, v: &Value) {
    let _ = serde_json::to_writer(&mut *buf, v);
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::{views, Origin, Record};

    fn rec(v: &str) -> Record {
        let mut r = Record::new(v.to_string(), Origin::new("t".into(), 0, 0));
        r.timestamp = Some(1_700_000_000_000);
        r
    }

    fn tpl(s: &str) -> Option<Template> {
        Some(Template::parse(s).unwrap())
    }

    #[test]
    fn whole_record_as_message() {
        let enc = Encoder {
            attributes: Attributes {
                service: tpl("audit"),
                ddtags: tpl("env:{{ env }}"),
                ..Attributes::default()
            },
            message_field: None,
        };
        let out = enc.encode(&views(&[
            rec(r#"{"env":"prod","a":"x"}"#),
            rec("plain text"),
        ]));
        let v: Value = serde_json::from_slice(&out.chunks[0].body).unwrap();
        assert_eq!(
            v,
            serde_json::json!([
                {"ddtags": "env:prod", "service": "audit", "message": "{\"env\":\"prod\",\"a\":\"x\"}", "timestamp": 1_700_000_000_000i64},
                {"service": "audit", "message": "plain text", "timestamp": 1_700_000_000_000i64},
            ])
        );
    }

    #[test]
    fn message_field_and_attributes() {
        let enc = Encoder {
            attributes: Attributes {
                status: tpl("{{ level }}"),
                ..Attributes::default()
            },
            message_field: Some("msg".into()),
        };
        let out = enc.encode(&views(&[
            rec(r#"{"msg":"hi","level":"warning","user":{"id":1}}"#),
            rec(r#"{"x":1}"#),
        ]));
        let v: Value = serde_json::from_slice(&out.chunks[0].body).unwrap();
        assert_eq!(
            v,
            serde_json::json!([{"status": "warning", "message": "hi", "level": "warning", "user": {"id": 1}, "timestamp": 1_700_000_000_000i64}])
        );
        assert!(
            matches!(out.outcomes.get(1), Some(Outcome::Reject(r)) if r.kind == "datadog.missing_message")
        );
    }

    #[test]
    fn splits_by_entries_and_bytes_and_rejects_huge_logs() {
        let enc = Encoder {
            attributes: Attributes::default(),
            message_field: None,
        };
        let small: Vec<Record> = (0..2500).map(|_| rec("{}")).collect();
        let out = enc.encode(&views(&small));
        let sizes: Vec<usize> = out.chunks.iter().map(|c| c.positions.len()).collect();
        assert_eq!(sizes, vec![1000, 1000, 500]);

        let big = "x".repeat(900_000);
        let mut records: Vec<Record> = (0..12).map(|_| rec(&big)).collect();
        records.insert(3, rec(&"y".repeat(1_500_000)));
        let out = enc.encode(&views(&records));
        assert!(
            matches!(out.outcomes.get(3), Some(Outcome::Reject(r)) if r.kind == "datadog.log_too_large")
        );
        let sizes: Vec<usize> = out.chunks.iter().map(|c| c.positions.len()).collect();
        assert_eq!(sizes, vec![5, 5, 2]);
        for c in &out.chunks {
            assert!(c.body.len() <= MAX_REQUEST_BYTES);
            let v: Value = serde_json::from_slice(&c.body).unwrap();
            assert_eq!(v.as_array().unwrap().len(), c.positions.len());
        }
        assert_eq!(out.chunks[1].positions[0], 6);
    }
}
