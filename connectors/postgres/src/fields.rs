//! Field access into a record's JSON without building a `serde_json::Value` tree: only the
//! levels on a path are scanned, and strings without escapes, numbers, booleans and nested
//! documents are borrowed from the record bytes.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

/// The members of one JSON object, values left unparsed.
pub struct Object<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
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

impl<'de> Deserialize<'de> for Object<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Object<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Object<'de>, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(16));
                while let Some(Key(k)) = map.next_key()? {
                    members.push((k, map.next_value::<&'de RawValue>()?));
                }
                Ok(Object(members))
            }
        }
        d.deserialize_map(V)
    }
}

impl<'a> Object<'a> {
    /// Parses a record value; the whole document is checked to be valid JSON.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    fn member(&self, name: &str) -> Option<&'a RawValue> {
        // JSON allows repeated names; like serde_json's map, the last one wins.
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| *v)
    }

    /// The value at a dotted path (numeric segments index arrays), unparsed.
    pub fn get(&self, path: &str) -> Option<&'a RawValue> {
        let mut segs = path.split('.');
        let mut cur = self.member(segs.next()?)?;
        for seg in segs {
            let text = cur.get();
            cur = if text.starts_with('{') {
                Object::parse(text.as_bytes()).ok()?.member(seg)?
            } else if text.starts_with('[') {
                let items: Vec<&'a RawValue> = serde_json::from_str(text).ok()?;
                *items.get(seg.parse::<usize>().ok()?)?
            } else {
                return None;
            };
        }
        Some(cur)
    }
}

/// A value as column text: `None` for null; a string's contents (borrowed unless it has
/// escapes), or with `json` the JSON text itself; numbers, booleans, objects and arrays as
/// their JSON text.
pub fn text<'a>(v: &'a RawValue, json: bool) -> Option<Cow<'a, str>> {
    let t = v.get();
    match t.as_bytes().first() {
        Some(b'n') => None,
        Some(b'"') if !json => {
            let inner = &t[1..t.len() - 1];
            if inner.contains('\\') {
                serde_json::from_str::<String>(t).ok().map(Cow::Owned)
            } else {
                Some(Cow::Borrowed(inner))
            }
        }
        _ => Some(Cow::Borrowed(t)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_texts() {
        let doc =
            br#"{"a":{"b":[1,{"c":"x\"y"}]},"s":"plain","n":-1.5e3,"t":true,"z":null,"o":{"k":1}}"#;
        let o = Object::parse(doc).unwrap();
        let t = |p: &str, json| o.get(p).and_then(|v| text(v, json)).map(|c| c.into_owned());
        assert_eq!(t("a.b.1.c", false).as_deref(), Some("x\"y"));
        assert_eq!(t("a.b.1.c", true).as_deref(), Some(r#""x\"y""#));
        assert_eq!(t("s", false).as_deref(), Some("plain"));
        assert!(matches!(
            text(o.get("s").unwrap(), false),
            Some(Cow::Borrowed(_))
        ));
        assert_eq!(t("n", false).as_deref(), Some("-1.5e3"));
        assert_eq!(t("t", false).as_deref(), Some("true"));
        assert_eq!(t("z", false), None);
        assert_eq!(t("o", false).as_deref(), Some(r#"{"k":1}"#));
        assert_eq!(t("a.b.0", false).as_deref(), Some("1"));
        assert_eq!(t("a.b.9", false), None);
        assert_eq!(t("missing.x", false), None);
        assert_eq!(t("s.x", false), None);
        assert!(Object::parse(b"[1]").is_err());
        assert!(Object::parse(br#"{"a":}"#).is_err());
    }
}
