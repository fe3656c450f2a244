//! Reads only the top-level fields of a record that templates and `time_field` name.
//!
//! Building a full `serde_json::Value` allocates every key and string of the record; the
//! SDK's [`Outline`] validates the whole value but materialises only the wanted subtrees,
//! which is most of the sink's CPU when metadata comes from the record.

use serde_json::value::RawValue;
use serde_json::{Map, Value};
use sluice_sdk::json::{Outline, OutlineError};

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

/// Scans `bytes`, keeping the top-level entries whose key is in `keys`.
pub fn pick(bytes: &[u8], keys: &[String]) -> Picked {
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

    fn keys(k: &[&str]) -> Vec<String> {
        k.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn keeps_only_wanted_keys() {
        let v = br#"{"a":1,"b":{"c":[1,2]},"d":"x","e\"q":2}"#;
        assert_eq!(
            pick(v, &keys(&["b", "e\"q", "zz"])),
            Picked::Object(json!({"b": {"c": [1, 2]}, "e\"q": 2}))
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
            assert_eq!(pick(v, &keys(&["a"])), Picked::OtherJson, "{v:?}");
        }
        for v in [&b"not json"[..], b"{\"a\":1", b"{\"a\":1} trailing", b""] {
            assert_eq!(pick(v, &keys(&["a"])), Picked::NotJson, "{v:?}");
        }
    }
}
