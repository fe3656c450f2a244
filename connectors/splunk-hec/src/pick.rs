//! Reads only the top-level fields of a record that templates and `time_field` name.
//!
//! Building a full `serde_json::Value` allocates every key and string of the record; this
//! scan validates the whole value but materialises only the wanted subtrees, which is most
//! of the sink's CPU when metadata comes from the record.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

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
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match (Pick { keys }).deserialize(&mut de) {
        Ok(p) if de.end().is_ok() => p,
        _ => Picked::NotJson,
    }
}

struct Pick<'k> {
    keys: &'k [String],
}

impl<'de> DeserializeSeed<'de> for Pick<'_> {
    type Value = Picked;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Picked, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Pick<'_> {
    type Value = Picked;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Picked, A::Error> {
        let mut out = Map::new();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            match self.keys.iter().find(|k| **k == *key) {
                Some(k) => {
                    out.insert(k.clone(), map.next_value::<Value>()?);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Picked::Object(Value::Object(out)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Picked, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Picked::OtherJson)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Picked, E> {
        Ok(Picked::OtherJson)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Picked, E> {
        Ok(Picked::OtherJson)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Picked, E> {
        Ok(Picked::OtherJson)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Picked, E> {
        Ok(Picked::OtherJson)
    }
    fn visit_str<E>(self, _: &str) -> Result<Picked, E> {
        Ok(Picked::OtherJson)
    }
    fn visit_unit<E>(self) -> Result<Picked, E> {
        Ok(Picked::OtherJson)
    }
}

/// An object key, borrowed from the input unless it contains escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_string())))
            }
        }
        d.deserialize_str(V)
    }
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
