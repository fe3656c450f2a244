//! Wire format: records to HEC request bodies.
//!
//! `/event` bodies are JSON envelopes concatenated (one per line for readability; HEC takes
//! whitespace between objects, never commas or an array). Each envelope carries its own
//! metadata: nothing carries over from one object to the next. A record value that is JSON is
//! embedded as-is (no re-serialisation), anything else as a JSON string.
//!
//! `/raw` bodies are the record values, one per line; metadata goes in the query string.
//!
//! All envelopes of a batch are written into one buffer; the buffer is cut into chunks of at
//! most `max_request_bytes` so that one chunk is one request.

use std::ops::Range;

use sluice_sdk::json::MemberSpans;
use sluice_sdk::template::Template;
use sluice_sdk::{json, Outcome, Outcomes, RecordRef};

use crate::config::{EndpointKind, HecConfig};
use crate::pick::{pick, Picked};
use crate::time;

/// Rejection kind of a record whose template field is missing.
pub const MISSING_FIELD: &str = "splunk.hec.missing_field";
/// Rejection kind of a record whose envelope alone exceeds `max_request_bytes`.
pub const EVENT_TOO_LARGE: &str = "splunk.hec.event_too_large";
/// Rejection kind of a record sent to `/raw` with a line break inside: Splunk would split it
/// into several events.
pub const RAW_LINE_BREAK: &str = "splunk.hec.raw_line_break";

/// Metadata of an envelope, precompiled: runs of constant JSON text and the templates between
/// them. With constant metadata (the usual case) an envelope is one memcpy plus the value.
#[derive(Debug)]
enum Piece {
    Text(Vec<u8>),
    Field(Template),
}

/// Turns batches of records into request bodies.
#[derive(Debug)]
pub struct Encoder {
    kind: EndpointKind,
    time_field: Option<String>,
    pieces: Vec<Piece>,
    /// Top-level keys that templates and `time_field` read; empty when none does.
    keys: Vec<String>,
    /// Set when only `time_field` is read (no template reads a field) and it names a
    /// top-level member: a record its source checked is then read in place, without
    /// building a `Value` of the member.
    time_member: Option<json::MemberFinder>,
    max_bytes: usize,
}

/// A batch encoded into one buffer and cut into requests.
#[derive(Debug, Default)]
pub struct Encoded {
    pub body: Vec<u8>,
    pub chunks: Vec<Chunk>,
    /// Record index of each encoded event, in body order.
    pub events: Vec<usize>,
    /// Set for the records refused before sending.
    pub outcomes: Outcomes,
}

/// One request: a byte range of [`Encoded::body`] and the events it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub bytes: Range<usize>,
    pub events: Range<usize>,
}

impl Encoder {
    pub fn new(config: &HecConfig) -> Self {
        let mut pieces = Vec::new();
        let mut text = Vec::new();
        fn push(text: &mut Vec<u8>, pieces: &mut Vec<Piece>, t: &Template) {
            match t.constant() {
                Some(c) => json::write_str(text, c),
                None => {
                    pieces.push(Piece::Text(std::mem::take(text)));
                    pieces.push(Piece::Field(t.clone()));
                }
            }
        }
        if config.endpoint_kind == EndpointKind::Event {
            for (key, t) in [
                ("index", &config.index),
                ("source", &config.source),
                ("sourcetype", &config.sourcetype),
                ("host", &config.host),
            ] {
                if let Some(t) = t {
                    json::write_str(&mut text, key);
                    text.push(b':');
                    push(&mut text, &mut pieces, t);
                    text.push(b',');
                }
            }
            if !config.fields.is_empty() {
                text.extend_from_slice(br#""fields":{"#);
                for (i, (k, t)) in config.fields.iter().enumerate() {
                    if i > 0 {
                        text.push(b',');
                    }
                    json::write_str(&mut text, k);
                    text.push(b':');
                    push(&mut text, &mut pieces, t);
                }
                text.extend_from_slice(b"},");
            }
        }
        text.extend_from_slice(br#""event":"#);
        pieces.push(Piece::Text(text));
        pieces.retain(|p| !matches!(p, Piece::Text(t) if t.is_empty()));
        let mut keys: Vec<String> = Vec::new();
        if config.endpoint_kind == EndpointKind::Event {
            let paths = pieces
                .iter()
                .flat_map(|p| match p {
                    Piece::Field(t) => t.fields().collect(),
                    Piece::Text(_) => Vec::new(),
                })
                .chain(config.time_field.as_deref());
            for path in paths {
                let top = path.split('.').next().unwrap_or(path);
                if !keys.iter().any(|k| k == top) {
                    keys.push(top.to_string());
                }
            }
        }
        Encoder {
            kind: config.endpoint_kind,
            time_field: config.time_field.clone(),
            time_member: (keys.len() == 1
                && !pieces.iter().any(|p| matches!(p, Piece::Field(_)))
                && config
                    .time_field
                    .as_deref()
                    .is_some_and(|f| !f.contains('.') && keys[0] == f))
            .then(|| json::MemberFinder::new(&keys[0])),
            pieces,
            keys,
            max_bytes: usize::try_from(config.max_request_bytes()).unwrap_or(usize::MAX),
        }
    }

    /// Encodes a batch. Records that cannot be sent (a missing template field, an envelope
    /// over `max_bytes`) get their outcome here and are left out of the body.
    pub fn encode(&self, records: &[RecordRef<'_>]) -> Encoded {
        let mut out = Encoded {
            body: Vec::with_capacity(records.iter().map(|r| r.value().len() + 128).sum()),
            chunks: Vec::new(),
            events: Vec::with_capacity(records.len()),
            outcomes: Outcomes::new(records.len()),
        };
        let mut chunk = Chunk {
            bytes: 0..0,
            events: 0..0,
        };
        let mut spans = MemberSpans::new();
        for (i, record) in records.iter().enumerate() {
            let start = out.body.len();
            let written = match self.kind {
                EndpointKind::Event => self.write_envelope(&mut out.body, record, &mut spans),
                EndpointKind::Raw => write_raw(&mut out.body, record),
            };
            if let Err(rejection) = written {
                out.body.truncate(start);
                out.outcomes.set(i, rejection);
                continue;
            }
            let len = out.body.len() - start;
            if len > self.max_bytes {
                out.body.truncate(start);
                out.outcomes.set(
                    i,
                    Outcome::reject(
                        EVENT_TOO_LARGE,
                        format!(
                        "the event is {len} bytes encoded, over the sink's max_request_bytes of {}",
                        self.max_bytes
                    ),
                    ),
                );
                continue;
            }
            if start - chunk.bytes.start + len > self.max_bytes {
                chunk.bytes.end = start;
                chunk.events.end = out.events.len();
                let next = Chunk {
                    bytes: start..start,
                    events: out.events.len()..out.events.len(),
                };
                out.chunks.push(std::mem::replace(&mut chunk, next));
            }
            out.events.push(i);
        }
        chunk.bytes.end = out.body.len();
        chunk.events.end = out.events.len();
        if !chunk.events.is_empty() {
            out.chunks.push(chunk);
        }
        out
    }

    fn write_envelope(
        &self,
        buf: &mut Vec<u8>,
        record: &RecordRef<'_>,
        spans: &mut MemberSpans,
    ) -> Result<(), Outcome> {
        let in_place = match &self.time_member {
            Some(finder) if record.is_checked_json() => finder.find(record.value(), spans),
            _ => None,
        };
        let picked =
            (in_place.is_none() && !self.keys.is_empty()).then(|| pick(record, &self.keys, spans));
        let object = match &picked {
            Some(Picked::Object(v)) => Some(v),
            _ => None,
        };
        let millis = if let Some(member) = in_place {
            member.and_then(|v| time::parse_raw_millis(&record.value()[v]))
        } else {
            self.time_field
                .as_deref()
                .zip(object)
                .and_then(|(path, v)| json::get(v, path))
                .and_then(time::parse_millis)
        }
        .or(record.timestamp());
        buf.push(b'{');
        if let Some(ms) = millis {
            buf.extend_from_slice(br#""time":"#);
            time::write_seconds(buf, ms);
            buf.push(b',');
        }
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => buf.extend_from_slice(t),
                Piece::Field(t) => {
                    let Some(v) = object else {
                        return Err(Outcome::reject(
                            MISSING_FIELD,
                            "the record value is not a JSON object, so the sink's `{{ field }}` \
                             templates cannot be rendered",
                        ));
                    };
                    match t.render(v) {
                        Ok(text) => json::write_str(buf, &text),
                        Err(e) => return Err(Outcome::reject(MISSING_FIELD, e.to_string())),
                    }
                }
            }
        }
        let is_json = match picked {
            Some(p) => p != Picked::NotJson,
            // A record read in place was checked by its source: `is_json` says so at once.
            None => record.is_json(),
        };
        if is_json {
            buf.extend_from_slice(record.value());
        } else {
            json::write_str(buf, &String::from_utf8_lossy(record.value()));
        }
        buf.extend_from_slice(b"}\n");
        Ok(())
    }
}

/// One record, one line. HEC breaks `/raw` text into events at line breaks, so a value with a
/// CR or LF inside (one final line end aside) would become several events: it is refused
/// whole, to the DLQ, rather than escaped into text that is no longer the record.
fn write_raw(buf: &mut Vec<u8>, record: &RecordRef<'_>) -> Result<(), Outcome> {
    let value = record.value();
    let line = value
        .strip_suffix(b"\r\n")
        .or_else(|| value.strip_suffix(b"\n"))
        .unwrap_or(value);
    if memchr::memchr2(b'\n', b'\r', line).is_some() {
        return Err(Outcome::reject(
            RAW_LINE_BREAK,
            "the record holds a line break, so HEC /raw would index it as several events; \
             send it with `endpoint_kind: event` or remove the line breaks upstream",
        ));
    }
    buf.extend_from_slice(line);
    buf.push(b'\n');
    Ok(())
}

/// Writes `s` as a JSON string literal.
#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use serde_json::json;
    use sluice_sdk::config::from_value;
    use sluice_sdk::{views, Origin, Record};

    fn encoder(v: serde_json::Value) -> Encoder {
        let mut base = json!({"endpoint": "http://a", "token": "t"});
        base.as_object_mut()
            .unwrap()
            .extend(v.as_object().unwrap().clone());
        Encoder::new(&from_value::<HecConfig>(base).unwrap())
    }

    fn rec(value: &[u8], offset: i64) -> Record {
        Record::new(value.to_vec(), Origin::new(Arc::from("t"), 0, offset))
    }

    fn objects(body: &[u8]) -> Vec<serde_json::Value> {
        serde_json::Deserializer::from_slice(body)
            .into_iter::<serde_json::Value>()
            .map(|v| v.unwrap())
            .collect()
    }

    #[test]
    fn envelopes_carry_metadata_and_embed_json() {
        let e = encoder(json!({
            "index": "security", "source": "{{ src }}", "sourcetype": "audit:json",
            "host": "{{ h.name }}", "time_field": "ts",
            "fields": {"env": "prod", "tenant": "{{ tenant }}"}
        }));
        let r = rec(
            br#"{"src":"kafka","h":{"name":"web1"},"ts":"2024-06-10T06:13:20.123Z","tenant":"acme","n":1}"#,
            0,
        );
        let out = e.encode(&[r.view()]);
        let body = std::str::from_utf8(&out.body).unwrap();
        assert!(body.starts_with(r#"{"time":1718000000.123,"index":"security","source":"kafka","#));
        assert!(body.ends_with(&format!(
            r#""event":{}}}{}"#,
            std::str::from_utf8(&r.value).unwrap(),
            "\n"
        )));
        let v = &objects(&out.body)[0];
        assert_eq!(v["host"], "web1");
        assert_eq!(v["sourcetype"], "audit:json");
        assert_eq!(v["fields"], json!({"env": "prod", "tenant": "acme"}));
        assert_eq!(v["event"]["n"], 1);
        assert_eq!(
            out.chunks,
            vec![Chunk {
                bytes: 0..out.body.len(),
                events: 0..1
            }]
        );
    }

    #[test]
    fn text_values_become_strings_and_time_falls_back() {
        let e = encoder(json!({"time_field": "ts", "sourcetype": "syslog"}));
        let mut r = rec(b"plain \"quoted\" line", 0);
        r.timestamp = Some(1_718_000_000_007);
        let mut no_time = rec(br#"{"ts":"not a time"}"#, 1);
        no_time.timestamp = Some(5);
        let bare = rec(br#"{"a":1}"#, 2);
        let out = e.encode(&views(&[r, no_time, bare]));
        let v = objects(&out.body);
        assert_eq!(v[0]["event"], "plain \"quoted\" line");
        assert_eq!(v[0]["time"].to_string(), "1718000000.007");
        assert_eq!(v[1]["time"].to_string(), "0.005");
        assert!(
            v[2].get("time").is_none(),
            "no time: HEC stamps receipt time"
        );
        assert_eq!(out.events, vec![0, 1, 2]);
    }

    #[test]
    fn time_is_read_in_place_from_records_a_source_checked() {
        // A record a `format: json` source checked has its `time_field` read where it lies;
        // every value must give the body the full parse gives.
        let e = encoder(json!({"time_field": "ts", "index": "main"}));
        let values: [&[u8]; 9] = [
            br#"{"a":1,"ts":"2024-06-10T06:13:20.123Z"}"#,
            br#"{"ts":"2024-06-10T06:13:20.123Z","x":{"ts":5},"ts":1718000000}"#,
            br#"{"ts":"2024-06-10T06:13:20\u002e5Z"}"#,
            br#"{"ts":1718000000123,"s":"t\"s"}"#,
            br#"{"ts":" 1718000000.5 "}"#,
            br#"{"ts":null}"#,
            br#"{"ts":{"nested":1}}"#,
            br#"{"other":"2024-06-10T06:13:20Z"}"#,
            br#"[1,2]"#,
        ];
        for value in values {
            let mut plain = rec(value, 0);
            plain.timestamp = Some(42);
            let mut checked = plain.clone();
            checked.mark_json_checked();
            let (a, b) = (e.encode(&[plain.view()]), e.encode(&[checked.view()]));
            assert_eq!(
                String::from_utf8_lossy(&b.body),
                String::from_utf8_lossy(&a.body),
                "{}",
                String::from_utf8_lossy(value)
            );
        }
        let out = e.encode(&[{
            let mut r = rec(br#"{"ts":"2024-06-10T06:13:20.123Z","ts":1718000001}"#, 0);
            r.mark_json_checked();
            r
        }
        .view()]);
        assert!(
            out.body.starts_with(br#"{"time":1718000001.000,"#),
            "the last member of the name wins"
        );
    }

    #[test]
    fn a_template_reading_the_time_field_still_renders_on_checked_records() {
        let e = encoder(json!({"time_field": "ts", "source": "{{ ts }}"}));
        let mut r = rec(br#"{"ts":"2024-06-10T06:13:20.123Z"}"#, 0);
        r.mark_json_checked();
        let out = e.encode(&[r.view()]);
        assert_eq!(out.events, vec![0], "the record is sent, not rejected");
        let v = &objects(&out.body)[0];
        assert_eq!(v["source"], "2024-06-10T06:13:20.123Z");
        assert_eq!(v["time"].to_string(), "1718000000.123");
    }

    #[test]
    fn missing_template_field_is_rejected_alone() {
        let e = encoder(json!({"index": "{{ idx }}"}));
        let out = e.encode(&views(&[
            rec(br#"{"idx":"a"}"#, 0),
            rec(br#"{"x":1}"#, 1),
            rec(b"text", 2),
        ]));
        assert_eq!(out.events, vec![0]);
        assert!(!out.outcomes.is_set(0));
        for o in (1..out.outcomes.len()).map(|i| out.outcomes.get(i)) {
            assert!(
                matches!(o, Some(Outcome::Reject(r)) if r.kind == MISSING_FIELD),
                "{o:?}"
            );
        }
        assert_eq!(objects(&out.body).len(), 1);
    }

    #[test]
    fn splits_under_max_bytes() {
        let e = encoder(json!({"max_request_bytes": 1024}));
        let value = format!(r#"{{"pad":"{}"}}"#, "x".repeat(300));
        let records: Vec<Record> = (0..10).map(|i| rec(value.as_bytes(), i)).collect();
        let out = e.encode(&views(&records));
        assert!(out.chunks.len() >= 4, "{:?}", out.chunks);
        let mut next_event = 0;
        for c in &out.chunks {
            assert!(c.bytes.len() <= 1024);
            assert_eq!(c.events.start, next_event);
            next_event = c.events.end;
            assert_eq!(objects(&out.body[c.bytes.clone()]).len(), c.events.len());
        }
        assert_eq!(next_event, 10);
    }

    #[test]
    fn oversized_event_is_rejected() {
        let e = encoder(json!({"max_request_bytes": 1024}));
        let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(2000));
        let out = e.encode(&views(&[
            rec(b"{}", 0),
            rec(big.as_bytes(), 1),
            rec(b"{}", 2),
        ]));
        assert_eq!(out.events, vec![0, 2]);
        assert!(
            matches!(out.outcomes.get(1), Some(Outcome::Reject(r)) if r.kind == EVENT_TOO_LARGE)
        );
        assert_eq!(out.chunks.len(), 1);
    }

    #[test]
    fn raw_bodies_are_lines() {
        let e = encoder(json!({"endpoint_kind": "raw", "index": "main"}));
        let out = e.encode(&views(&[rec(b"a b c", 0), rec(b"d\n", 1)]));
        assert_eq!(out.body, b"a b c\nd\n");
    }

    #[test]
    fn raw_records_with_line_breaks_are_refused_not_split() {
        let e = encoder(json!({"endpoint_kind": "raw"}));
        let out = e.encode(&views(&[
            rec(b"one", 0),
            rec(b"two\nfake event", 1),
            rec(b"three\rx", 2),
            rec(b"four\r\n", 3),
        ]));
        assert_eq!(out.body, b"one\nfour\n");
        assert_eq!(out.events, vec![0, 3]);
        for i in [1, 2] {
            assert!(
                matches!(out.outcomes.get(i), Some(Outcome::Reject(r)) if r.kind == RAW_LINE_BREAK),
                "{i}"
            );
        }
    }
}
