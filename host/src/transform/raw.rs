//! A record's top-level JSON object as borrowed slices: keys and the raw text of each value.
//!
//! Transforms mostly touch a few top-level fields of records they do not otherwise look at.
//! Parsing only the object's outline and copying untouched values as bytes avoids building
//! and re-serialising a whole `serde_json::Value` per record.
//!
//! JSON allows a name twice (`{"ssn":"1","ssn":"2"}`). Every reader in Sluice takes the last
//! copy (as serde_json's map does), so reads here do too, and an edit of a top-level name
//! (`set`, `rename`, `drop`, and `add_fields`) first collapses it to that last copy: a
//! dropped field leaves no earlier copy behind for a first-copy reader downstream to find.

use std::borrow::Cow;

use serde_json::value::RawValue;
use serde_json::Value;
use sluice_sdk::json::{self, Outline};

/// A top-level field: untouched raw text, or a value a transform produced.
pub enum Field<'a> {
    Raw(&'a RawValue),
    Owned(Value),
}

/// The top-level object of a record, in its original key order.
pub struct RawObject<'a> {
    fields: Vec<(Cow<'a, str>, Field<'a>)>,
}

impl<'a> From<&'a RawValue> for Field<'a> {
    fn from(raw: &'a RawValue) -> Self {
        Field::Raw(raw)
    }
}

fn split(path: &str) -> (&str, Option<&str>) {
    match path.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (path, None),
    }
}

impl<'a> RawObject<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self, String> {
        let outline: Outline<'a, Field<'a>> = Outline::parse(bytes).map_err(|e| e.to_string())?;
        Ok(RawObject {
            fields: outline.into_members(),
        })
    }

    /// The last copy of a top-level name: the one readers see.
    fn index(&self, key: &str) -> Option<usize> {
        self.fields.iter().rposition(|(k, _)| k == key)
    }

    /// Removes every copy of a top-level name but the last; returns the last one's index.
    fn collapse(&mut self, key: &str) -> Option<usize> {
        let last = self.index(key)?;
        let mut n = 0;
        let mut i = 0;
        self.fields.retain(|(k, _)| {
            let keep = i == last || k != key;
            n += usize::from(!keep);
            i += 1;
            keep
        });
        Some(last - n)
    }

    /// The value at a dotted path, parsing only the subtree it lives in.
    pub fn get(&self, path: &str) -> Option<Cow<'_, Value>> {
        let (head, rest) = split(path);
        let (_, field) = &self.fields[self.index(head)?];
        match (field, rest) {
            (Field::Owned(v), None) => Some(Cow::Borrowed(v)),
            (Field::Owned(v), Some(r)) => json::get(v, r).map(Cow::Borrowed),
            (Field::Raw(raw), rest) => {
                let v: Value = serde_json::from_str(raw.get()).ok()?;
                match rest {
                    None => Some(Cow::Owned(v)),
                    Some(r) => json::get(&v, r).cloned().map(Cow::Owned),
                }
            }
        }
    }

    pub fn contains(&self, path: &str) -> bool {
        self.get(path).is_some()
    }

    /// Makes a top-level field owned (parsing its raw text) so it can be edited in place.
    fn owned(&mut self, i: usize) -> Option<&mut Value> {
        let f = &mut self.fields[i].1;
        if let Field::Raw(raw) = f {
            *f = Field::Owned(serde_json::from_str(raw.get()).ok()?);
        }
        match f {
            Field::Owned(v) => Some(v),
            Field::Raw(_) => None,
        }
    }

    /// Sets the value at a dotted path, creating objects on the way. False when a
    /// non-object is in the way.
    pub fn set(&mut self, path: &str, value: Value) -> bool {
        let (head, rest) = split(path);
        let i = match self.collapse(head) {
            Some(i) => i,
            None => {
                let v = match rest {
                    None => value,
                    Some(r) => {
                        let mut obj = Value::Object(Default::default());
                        if !json::set(&mut obj, r, value) {
                            return false;
                        }
                        obj
                    }
                };
                self.fields
                    .push((Cow::Owned(head.to_string()), Field::Owned(v)));
                return true;
            }
        };
        match rest {
            None => {
                self.fields[i].1 = Field::Owned(value);
                true
            }
            Some(r) => self.owned(i).is_some_and(|v| json::set(v, r, value)),
        }
    }

    /// Removes and returns the value at a dotted path.
    pub fn remove(&mut self, path: &str) -> Option<Value> {
        let (head, rest) = split(path);
        let i = self.collapse(head)?;
        match rest {
            None => match self.fields.remove(i).1 {
                Field::Owned(v) => Some(v),
                Field::Raw(raw) => serde_json::from_str(raw.get()).ok(),
            },
            Some(r) => json::remove(self.owned(i)?, r),
        }
    }

    /// Writes the object as compact JSON; untouched values are copied byte for byte.
    pub fn write(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        out.push(b'{');
        for (n, (k, f)) in self.fields.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            match k {
                // A borrowed key had no escape sequences: its text is already valid JSON.
                Cow::Borrowed(b) => {
                    out.push(b'"');
                    out.extend_from_slice(b.as_bytes());
                    out.push(b'"');
                }
                Cow::Owned(o) => serde_json::to_writer(&mut *out, o)?,
            }
            out.push(b':');
            match f {
                Field::Raw(raw) => out.extend_from_slice(raw.get().as_bytes()),
                Field::Owned(v) => serde_json::to_writer(&mut *out, v)?,
            }
        }
        out.push(b'}');
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn edits_keep_untouched_bytes_and_order() {
        let src = br#"{"b":{"x": 1},"a":"q\"uote","n":[1, 2]}"#;
        let mut o = RawObject::parse(src).unwrap();
        assert_eq!(o.get("b.x").as_deref(), Some(&json!(1)));
        assert!(o.set("c", json!("new")));
        assert!(o.set("b.y", json!(true)));
        assert_eq!(o.remove("a"), Some(json!("q\"uote")));
        let mut out = Vec::new();
        o.write(&mut out).unwrap();
        // `n` keeps its original spacing: it was never parsed.
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"b":{"x":1,"y":true},"n":[1, 2],"c":"new"}"#
        );
        assert!(RawObject::parse(b"[1]").is_err());
        assert!(RawObject::parse(b"nope").is_err());
    }

    fn written(o: &RawObject) -> String {
        let mut out = Vec::new();
        o.write(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn repeated_names_read_the_last_copy_and_edits_reach_every_copy() {
        let src = br#"{"ssn":"1","user":"a","ssn":"2","n":{"k":1,"k":2},"m":{"x":1},"m":{"y":2}}"#;
        let o = RawObject::parse(src).unwrap();
        assert_eq!(o.get("ssn").as_deref(), Some(&json!("2")));
        assert_eq!(o.get("n.k").as_deref(), Some(&json!(2)));
        assert_eq!(
            o.get("m.x"),
            None,
            "the earlier `m` is not what readers see"
        );

        let mut o = RawObject::parse(src).unwrap();
        assert_eq!(o.remove("ssn"), Some(json!("2")));
        assert_eq!(o.get("ssn"), None);
        assert_eq!(o.remove("n.k"), Some(json!(2)));
        assert_eq!(o.remove("m.y"), Some(json!(2)));
        assert_eq!(written(&o), r#"{"user":"a","n":{},"m":{}}"#);

        let mut o = RawObject::parse(src).unwrap();
        assert!(o.set("ssn", json!("x")));
        assert!(o.set("m.z", json!(3)));
        assert_eq!(
            written(&o),
            r#"{"user":"a","ssn":"x","n":{"k":1,"k":2},"m":{"y":2,"z":3}}"#
        );
    }
}
