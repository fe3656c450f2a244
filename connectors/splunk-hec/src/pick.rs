//! Reads only the top-level fields of a record that templates and `time_field` name.
//!
//! Building a full `serde_json::Value` allocates every key and string of the record. A value
//! its source already checked is only scanned for its members' places
//! ([`scan_members`]); any other is validated whole by the SDK's [`Outline`]. Either way
//! only the wanted members are parsed.

use serde_json::value::RawValue;
use serde_json::{Map, Value};
use sluice_sdk::json::{scan_members, MemberSpans, Outline, OutlineError};
use sluice_sdk::RecordRef;

/// What a record value turned out to be.
#[derive(Debug, PartialEq)]
pub enum Picked {
    /// A JSON object: the wanted top-level keys that it has.
    Object(Value),
    /// Valid JSON, but not an object (it has no fields).
    OtherJson,
    /// Not JSON.
    NotJson,
}

/// Reads `record`'s value, keeping the top-level entries whose key is in `keys`. `spans` is
/// scratch space kept across records.
pub fn pick(record: &RecordRef<'_>, keys: &[String], spans: &mut MemberSpans) -> Picked {
    let bytes = record.value();
    // An object with escaped keys, or checked JSON that is not an object, takes the full path.
    if record.is_checked_json() && scan_members(bytes, spans) {
        let mut out = Map::new();
        // In document order, so a repeated key keeps its last value, as serde_json does.
        for (name, raw) in spans.iter() {
            if let Some(key) = keys.iter().find(|k| k.as_bytes() == &bytes[name.clone()]) {
                match serde_json::from_slice(&bytes[raw.clone()]) {
                    Ok(v) => {
                        out.insert(key.clone(), v);
                    }
                    // The source checked it; a failure here would be a serde_json bug.
                    Err(_) => return Picked::NotJson,
                }
            }
        }
        return Picked::Object(Value::Object(out));
    }
    let outline = match Outline::<&RawValue>::parse(bytes) {
        Ok(o) => o,
        Err(OutlineError::NotAnObject) => return Picked::OtherJson,
        Err(OutlineError::NotJson(_)) => return Picked::NotJson,
    };
    let mut out = Map::new();
    // In document order, so a repeated key keeps its last value, as serde_json does.
    for (name, raw) in outline.into_members() {
        if let Some(key) = keys.iter().find(|k| **k == *name) {
            match serde_json::from_str(raw.get()) {
                Ok(v) => {
                    out.insert(key.clone(), v);
                }
                // The outline has validated it; a failure here would be a serde_json bug.
                Err(_) => return Picked::NotJson,
            }
        }
    }
    Picked::Object(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sluice_sdk::{Origin, Record};

    fn keys(k: &[&str]) -> Vec<String> {
        k.iter().map(|s| s.to_string()).collect()
    }

    /// `pick` on `value` as a record no source checked, and as one a source found JSON
    /// (only when it is): both must read the same.
    fn both(value: &[u8], k: &[&str]) -> Picked {
        let mut spans = MemberSpans::new();
        let mut r = Record::new(value.to_vec(), Origin::new("t".into(), 0, 0));
        let unchecked = pick(&r.view(), &keys(k), &mut spans);
        if sluice_sdk::json::is_json(value) {
            r.mark_json_checked();
            assert!(r.view().is_checked_json());
            assert_eq!(
                pick(&r.view(), &keys(k), &mut spans),
                unchecked,
                "{value:?}"
            );
        }
        unchecked
    }

    #[test]
    fn keeps_only_wanted_keys() {
        let v = br#"{"a":1,"b":{"c":[1,2]},"d":"x","time":"2026-12-07T10:00:00Z"}"#;
        assert!(
            scan_members(v, &mut MemberSpans::new()),
            "a checked copy of this value takes the member scan"
        );
        assert_eq!(
            both(v, &["b", "time", "zz"]),
            Picked::Object(json!({"b": {"c": [1, 2]}, "time": "2026-12-07T10:00:00Z"}))
        );
    }

    #[test]
    fn a_repeated_key_keeps_its_last_value_and_escaped_keys_are_read() {
        let v = br#"{"a":1,"b":true,"a":{"x":"y"}}"#;
        assert!(scan_members(v, &mut MemberSpans::new()));
        assert_eq!(both(v, &["a"]), Picked::Object(json!({"a": {"x": "y"}})));
        let v = br#"{"a":1,"e\"q":2,"a":{"x":"y"}}"#;
        assert_eq!(
            both(v, &["a", "e\"q"]),
            Picked::Object(json!({"a": {"x": "y"}, "e\"q": 2}))
        );
    }

    #[test]
    fn tells_other_json_from_not_json() {
        for v in [
            &b"[1,{\"a\":2}]"[..],
            b"\"text\"",
            b"12",
            b"null",
            b" true ",
        ] {
            assert_eq!(both(v, &["a"]), Picked::OtherJson, "{v:?}");
        }
        for v in [&b"not json"[..], b"{\"a\":1", b"{\"a\":1} trailing", b""] {
            assert_eq!(both(v, &["a"]), Picked::NotJson, "{v:?}");
        }
    }
}
