//! Field access on JSON values with dotted paths (`source.system`, `user.roles.0`).

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// The value at a dotted path; numeric segments index arrays.
pub fn get<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = value;
    for seg in path.split('.') {
        cur = match cur {
            Value::Object(m) => m.get(seg)?,
            Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// Sets the value at a dotted path, creating intermediate objects. Fails (returns false) when
/// a non-object value is in the way.
pub fn set(value: &mut Value, path: &str, new: Value) -> bool {
    let mut cur = value;
    let mut segs = path.split('.').peekable();
    while let Some(seg) = segs.next() {
        let Value::Object(map) = cur else {
            return false;
        };
        if segs.peek().is_none() {
            map.insert(seg.to_string(), new);
            return true;
        }
        cur = map
            .entry(seg.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    false
}

/// Removes and returns the value at a dotted path.
pub fn remove(value: &mut Value, path: &str) -> Option<Value> {
    match path.rsplit_once('.') {
        None => value.as_object_mut()?.remove(path),
        Some((parent, last)) => get_mut(value, parent)?.as_object_mut()?.remove(last),
    }
}

/// Mutable access at a dotted path.
pub fn get_mut<'a>(value: &'a mut Value, path: &str) -> Option<&'a mut Value> {
    let mut cur = value;
    for seg in path.split('.') {
        cur = match cur {
            Value::Object(m) => m.get_mut(seg)?,
            Value::Array(a) => a.get_mut(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// A scalar as text: strings without quotes, numbers and booleans as written, else `None`.
pub fn as_text(value: &Value) -> Option<std::borrow::Cow<'_, str>> {
    match value {
        Value::String(s) => Some(std::borrow::Cow::Borrowed(s)),
        Value::Number(n) => Some(std::borrow::Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(std::borrow::Cow::Borrowed(if *b {
            "true"
        } else {
            "false"
        })),
        _ => None,
    }
}

/// Why a record value has no top-level fields.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutlineError {
    /// Not JSON at all (or not UTF-8).
    #[error("value is not JSON: {0}")]
    NotJson(String),
    /// Valid JSON, but an array, a string, a number, a boolean or null.
    #[error("value is not a JSON object")]
    NotAnObject,
}

/// The top-level members of a JSON object as borrowed slices: each key (borrowed unless it
/// has escapes) and the raw text of its value, in document order.
///
/// Connectors and transforms mostly need a few top-level fields of records they otherwise
/// pass on untouched; this checks the whole document but builds no `Value` tree, so a
/// member costs a slice, and only the values actually read are ever parsed. `V` is what a
/// member's raw value is kept as: a caller that edits members (the host's transforms) keeps
/// them in its own type and avoids a second vector.
#[derive(Debug)]
pub struct Outline<'a, V = &'a RawValue> {
    members: Vec<(Cow<'a, str>, V)>,
}

impl<'a, V: From<&'a RawValue>> Outline<'a, V> {
    /// Parses a record value that should be a JSON object.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, OutlineError> {
        // Validating UTF-8 once lets serde_json read from a `str` and skip re-validating
        // every key and value it borrows.
        let text = std::str::from_utf8(bytes).map_err(|e| OutlineError::NotJson(e.to_string()))?;
        serde_json::from_str(text).map_err(|e| {
            if e.is_data() {
                OutlineError::NotAnObject
            } else {
                OutlineError::NotJson(e.to_string())
            }
        })
    }

    /// The members, in document order (repeated names included).
    pub fn into_members(self) -> Vec<(Cow<'a, str>, V)> {
        self.members
    }
}

impl<'a> Outline<'a> {
    /// The value of a top-level member. JSON allows repeated names; as in serde_json's
    /// map, the last one wins.
    pub fn member(&self, name: &str) -> Option<&'a RawValue> {
        self.members
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| *v)
    }

    /// The raw value at a dotted path (numeric segments index arrays); only the levels on
    /// the path are scanned.
    pub fn get(&self, path: &str) -> Option<&'a RawValue> {
        let mut segs = path.split('.');
        let mut cur = self.member(segs.next()?)?;
        for seg in segs {
            let text = cur.get();
            cur = if text.starts_with('{') {
                Outline::<&RawValue>::parse(text.as_bytes())
                    .ok()?
                    .member(seg)?
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

/// An object key, borrowed from the input unless it has escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de, V: From<&'de RawValue>> Deserialize<'de> for Outline<'de, V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Members<V>(std::marker::PhantomData<V>);
        impl<'de, V: From<&'de RawValue>> Visitor<'de> for Members<V> {
            type Value = Outline<'de, V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Outline<'de, V>, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(16));
                while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
                    members.push((k, V::from(map.next_value::<&'de RawValue>()?)));
                }
                Ok(Outline { members })
            }
        }
        d.deserialize_map(Members(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths() {
        let mut v = json!({"a": {"b": [1, {"c": "x"}]}});
        assert_eq!(get(&v, "a.b.1.c"), Some(&json!("x")));
        assert!(set(&mut v, "a.d.e", json!(5)));
        assert_eq!(get(&v, "a.d.e"), Some(&json!(5)));
        assert_eq!(remove(&mut v, "a.d.e"), Some(json!(5)));
        assert!(!set(&mut v, "a.b.x", json!(1)));
        assert_eq!(as_text(&json!(12)).as_deref(), Some("12"));
    }

    #[test]
    fn outline_members_and_paths() {
        let doc = br#"{"a":{"b":[1,{"c":"x\"y"}]},"s":"plain","n":-1.5e3,"z":null,"s":"last","k\u0065y":1}"#;
        let o: Outline = Outline::parse(doc).unwrap();
        let raw = |p: &str| o.get(p).map(|v| v.get().to_string());
        assert_eq!(raw("a.b.1.c").as_deref(), Some(r#""x\"y""#));
        assert_eq!(raw("a.b.0").as_deref(), Some("1"));
        assert_eq!(
            raw("s").as_deref(),
            Some(r#""last""#),
            "the last repeated name wins"
        );
        assert_eq!(raw("n").as_deref(), Some("-1.5e3"));
        assert_eq!(raw("z").as_deref(), Some("null"));
        assert_eq!(raw("key").as_deref(), Some("1"), "escaped keys are decoded");
        assert_eq!(raw("a.b.9"), None);
        assert_eq!(raw("s.x"), None);
        assert_eq!(raw("missing"), None);
        let members = o.into_members();
        assert_eq!(members.len(), 6);
        assert!(matches!(members[0].0, Cow::Borrowed("a")));
    }

    #[test]
    fn outline_tells_other_json_from_not_json() {
        for v in [&b"[1]"[..], b"\"text\"", b"12", b"null", b" true "] {
            assert_eq!(
                Outline::<&RawValue>::parse(v).unwrap_err(),
                OutlineError::NotAnObject
            );
        }
        for v in [&b"{\"a\":}"[..], b"{\"a\":1} x", b"", &[0xff, 0xfe]] {
            assert!(matches!(
                Outline::<&RawValue>::parse(v).unwrap_err(),
                OutlineError::NotJson(_)
            ));
        }
    }
}
