//! Records -> one pipeline of Redis commands.

use std::borrow::Cow;

use serde_json::Value;
use sluice_sdk::{json, Outcome, Outcomes, RecordRef};

use crate::config::{Mode, Settings};

/// A batch as a pipeline: `spans[i]` = (record index, number of commands of that record),
/// in pipeline order.
pub struct Encoded {
    pub pipe: redis::Pipeline,
    pub spans: Vec<(usize, usize)>,
    pub commands: usize,
}

/// A field value as entry text: strings as they are, numbers and booleans as written,
/// objects and arrays as JSON; `None` for null.
fn field_text(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        other => Some(Cow::Owned(other.to_string())),
    }
}

/// Adds `field value` pairs of a stream entry or hash to `cmd`; returns how many.
fn push_fields(
    cmd: &mut redis::Cmd,
    s: &Settings,
    record: &RecordRef<'_>,
    parsed: Option<&Value>,
) -> usize {
    let mut n = 0;
    if let Some(v) = parsed {
        if s.fields.all {
            if let Value::Object(map) = v {
                for (k, v) in map {
                    if let Some(t) = field_text(v) {
                        cmd.arg(k.as_str()).arg(t.as_ref());
                        n += 1;
                    }
                }
            }
        }
        for path in &s.fields.paths {
            if let Some(t) = json::get(v, path).and_then(field_text) {
                cmd.arg(path.as_str()).arg(t.as_ref());
                n += 1;
            }
        }
    }
    if let Some(name) = &s.fields.payload {
        cmd.arg(name.as_str()).arg(record.value());
        n += 1;
    }
    n
}

/// Builds the pipeline; records that cannot be written (not JSON while fields are needed, a
/// key field missing, an entry with no field) get their outcome in `outcomes` instead.
pub fn encode(s: &Settings, records: &[RecordRef<'_>], outcomes: &mut Outcomes) -> Encoded {
    let parse = s.key.needs_fields() || s.fields.needs_json();
    let mut pipe = redis::pipe();
    let mut spans = Vec::with_capacity(records.len());
    let mut commands = 0;
    for (i, record) in records.iter().enumerate() {
        let parsed = if parse {
            match serde_json::from_slice::<Value>(record.value()) {
                Ok(v) => Some(v),
                Err(e) => {
                    outcomes.set(
                        i,
                        Outcome::reject(
                            "redis.record.invalid_json",
                            format!("record value is not JSON: {e}"),
                        ),
                    );
                    continue;
                }
            }
        } else {
            None
        };
        let key = match parsed.as_ref() {
            Some(v) => s.key.render(v),
            None => s.key.render(&Value::Null),
        };
        let key = match key {
            Ok(k) => k,
            Err(e) => {
                outcomes.set(i, Outcome::reject("redis.key_template", e.to_string()));
                continue;
            }
        };
        let mut cmd;
        match s.mode {
            Mode::Stream => {
                cmd = redis::cmd("XADD");
                cmd.arg(key.as_ref());
                if let Some(max) = s.maxlen {
                    // `~`: trim whole macro nodes only, far cheaper than exact trimming.
                    cmd.arg("MAXLEN").arg("~").arg(max);
                }
                cmd.arg("*");
                if push_fields(&mut cmd, s, record, parsed.as_ref()) == 0 {
                    outcomes.set(i, empty_entry());
                    continue;
                }
            }
            Mode::Hash => {
                cmd = redis::cmd("HSET");
                cmd.arg(key.as_ref());
                if push_fields(&mut cmd, s, record, parsed.as_ref()) == 0 {
                    outcomes.set(i, empty_entry());
                    continue;
                }
            }
            Mode::List => {
                cmd = redis::cmd("RPUSH");
                cmd.arg(key.as_ref()).arg(record.value());
            }
            Mode::Publish => {
                cmd = redis::cmd("PUBLISH");
                cmd.arg(key.as_ref()).arg(record.value());
            }
            Mode::Set => {
                cmd = redis::cmd("SET");
                cmd.arg(key.as_ref()).arg(record.value());
                if let Some(ms) = s.ttl_ms {
                    cmd.arg("PX").arg(ms);
                }
            }
        }
        pipe.add_command(cmd);
        let mut n = 1;
        if let (Some(ms), Mode::Stream | Mode::Hash | Mode::List) = (s.ttl_ms, s.mode) {
            pipe.cmd("PEXPIRE").arg(key.as_ref()).arg(ms);
            n += 1;
        }
        spans.push((i, n));
        commands += n;
    }
    Encoded {
        pipe,
        spans,
        commands,
    }
}

fn empty_entry() -> Outcome {
    Outcome::reject(
        "redis.empty_entry",
        "none of the configured fields is in the record, and no payload_field is set",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RedisConfig;
    use serde_json::json;
    use sluice_sdk::{views, Origin, Record};

    fn settings(v: serde_json::Value) -> Settings {
        sluice_sdk::config::from_value::<RedisConfig>(v)
            .unwrap()
            .settings()
            .unwrap()
    }

    fn rec(v: &str) -> Record {
        Record::new(v.to_string(), Origin::new("t".into(), 0, 0))
    }

    #[test]
    fn stream_entry_fields_and_trimming() {
        let s = settings(
            json!({"url": "redis://h", "mode": "stream", "key": "a:{{ t }}",
            "maxlen": 10, "fields": ["t", "n.x"], "payload_field": "raw"}),
        );
        let records = [
            rec(r#"{"t":"acme","n":{"x":1}}"#),
            rec("not json"),
            rec(r#"{"n":1}"#),
        ];
        let mut out = Outcomes::new(3);
        let e = encode(&s, &views(&records), &mut out);
        assert_eq!(e.spans, vec![(0, 1)]);
        let packed = String::from_utf8_lossy(&e.pipe.get_packed_pipeline()).replace("\r\n", " ");
        assert!(
            packed.contains(
                "XADD $6 a:acme $6 MAXLEN $1 ~ $2 10 $1 * $1 t $4 acme $3 n.x $1 1 $3 raw"
            ),
            "{packed}"
        );
        assert!(
            matches!(out.get(1), Some(Outcome::Reject(r)) if r.kind == "redis.record.invalid_json")
        );
        assert!(matches!(out.get(2), Some(Outcome::Reject(r)) if r.kind == "redis.key_template"));
    }

    #[test]
    fn ttl_adds_pexpire() {
        let s = settings(json!({"url": "redis://h", "mode": "list", "key": "l", "ttl": "2s"}));
        let mut out = Outcomes::new(1);
        let e = encode(&s, &[rec("x").view()], &mut out);
        assert_eq!((e.spans.clone(), e.commands), (vec![(0, 2)], 2));
        let packed = String::from_utf8_lossy(&e.pipe.get_packed_pipeline()).replace("\r\n", " ");
        assert!(packed.contains("PEXPIRE $1 l $4 2000"), "{packed}");
    }
}
