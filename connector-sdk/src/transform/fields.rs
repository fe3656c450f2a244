//! A record's top-level JSON object as borrowed slices: keys and the raw text of each value.
//!
//! Transforms mostly touch a few top-level fields of records they do not otherwise look at.
//! Parsing only the object's outline and copying untouched values as bytes avoids building
//! and re-serialising a whole `serde_json::Value` per record.
//!
//! JSON allows a name twice (`{"ssn":"1","ssn":"2"}`). Every reader in Sluice takes the last
//! copy (as serde_json's map does), so reads here do too, and an edit of a top-level name
//! (`set`, `remove`) first collapses it to that last copy: a dropped field leaves no earlier
//! copy behind for a first-copy reader downstream to find.

use std::borrow::Cow;

use serde_json::value::RawValue;
use serde_json::Value;

use crate::json::{self, Outline, OutlineError};

/// A top-level field: untouched raw text, a value a transform produced, or JSON text a
/// transform produced (written as it is, parsed only if read).
enum Field<'a> {
    Raw(&'a RawValue),
    Owned(Value),
    Text(String),
}

impl Field<'_> {
    /// The JSON text of a field not parsed yet.
    fn text(&self) -> Option<&str> {
        match self {
            Field::Raw(raw) => Some(raw.get()),
            Field::Text(text) => Some(text),
            Field::Owned(_) => None,
        }
    }
}

impl<'a> From<&'a RawValue> for Field<'a> {
    fn from(raw: &'a RawValue) -> Self {
        Field::Raw(raw)
    }
}

/// The fields of a record whose value is a JSON object, in their original order, with
/// dotted paths (`source.system`, `user.roles.0`) reaching nested values.
///
/// Only the values read or edited are ever parsed; the others are written back byte for
/// byte. Edits are remembered, so the record is serialised again only if one happened.
pub struct Fields<'a> {
    fields: Vec<(Cow<'a, str>, Field<'a>)>,
    changed: bool,
}

fn split(path: &str) -> (&str, Option<&str>) {
    match path.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (path, None),
    }
}

impl<'a> Fields<'a> {
    /// Parses a record value that should be a JSON object.
    #[inline]
    pub fn parse(bytes: &'a [u8]) -> Result<Self, OutlineError> {
        let outline: Outline<'a, Field<'a>> = Outline::parse(bytes)?;
        Ok(Fields {
            fields: outline.into_members(),
            changed: false,
        })
    }

    /// Fields that replace a record's value as a whole (a value a transform in a plugin
    /// returned): every field owned, and the whole counted as an edit.
    pub fn replacing(bytes: &[u8]) -> Result<Fields<'static>, OutlineError> {
        match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(map)) => Ok(Fields {
                fields: map
                    .into_iter()
                    .map(|(k, v)| (Cow::Owned(k), Field::Owned(v)))
                    .collect(),
                changed: true,
            }),
            Ok(_) => Err(OutlineError::NotAnObject),
            Err(e) => Err(OutlineError::NotJson(e.to_string())),
        }
    }

    /// Whether an edit happened since parsing.
    #[inline]
    pub fn is_changed(&self) -> bool {
        self.changed
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
    #[inline]
    pub fn get(&self, path: &str) -> Option<Cow<'_, Value>> {
        let (head, rest) = split(path);
        let (_, field) = &self.fields[self.index(head)?];
        match (field, rest) {
            (Field::Owned(v), None) => Some(Cow::Borrowed(v)),
            (Field::Owned(v), Some(r)) => json::get(v, r).map(Cow::Borrowed),
            (Field::Raw(_) | Field::Text(_), rest) => {
                let v: Value = serde_json::from_str(field.text()?).ok()?;
                match rest {
                    None => Some(Cow::Owned(v)),
                    Some(r) => json::get(&v, r).cloned().map(Cow::Owned),
                }
            }
        }
    }

    /// The top-level names in order, a name given twice listed twice.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().map(|(k, _)| k.as_ref())
    }

    /// The top-level names in order, each distinct name once (at its first place), kept
    /// apart from `self` (borrowed from the record where they are) so a transform can edit
    /// the fields while it goes through them.
    pub fn distinct_names(&self) -> Vec<Cow<'a, str>> {
        let mut out: Vec<Cow<'a, str>> = Vec::with_capacity(self.fields.len());
        for (k, _) in &self.fields {
            if !out.iter().any(|o| o == k) {
                out.push(k.clone());
            }
        }
        out
    }

    /// The number of top-level members, a name given twice counted twice.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Member `i`'s name and, if no transform replaced it, its JSON text as it arrived:
    /// for walking every member without looking names up.
    pub fn member(&self, i: usize) -> Option<(&str, Option<&str>)> {
        let (k, f) = self.fields.get(i)?;
        let raw = match f {
            Field::Raw(raw) => Some(raw.get()),
            Field::Owned(_) | Field::Text(_) => None,
        };
        Some((k, raw))
    }

    /// Whether any top-level name is given more than once.
    pub fn has_repeated_names(&self) -> bool {
        self.fields
            .iter()
            .enumerate()
            .any(|(i, (k, _))| self.fields[i + 1..].iter().any(|(o, _)| o == k))
    }

    /// Whether a top-level name is given more than once.
    pub fn is_repeated(&self, name: &str) -> bool {
        self.fields
            .iter()
            .filter(|(k, _)| k == name)
            .nth(1)
            .is_some()
    }

    /// The raw JSON text of a top-level field as it arrived, if no transform replaced it.
    pub fn raw(&self, name: &str) -> Option<&str> {
        match &self.fields[self.index(name)?].1 {
            Field::Raw(raw) => Some(raw.get()),
            Field::Owned(_) | Field::Text(_) => None,
        }
    }

    /// Whether a value is at a dotted path (`null` counts).
    #[inline]
    pub fn contains(&self, path: &str) -> bool {
        self.get(path).is_some()
    }

    /// Makes a top-level field owned (parsing its raw text) so it can be edited in place.
    fn owned(&mut self, i: usize) -> Option<&mut Value> {
        let f = &mut self.fields[i].1;
        if let Some(text) = f.text() {
            *f = Field::Owned(serde_json::from_str(text).ok()?);
        }
        match f {
            Field::Owned(v) => Some(v),
            Field::Raw(_) | Field::Text(_) => None,
        }
    }

    /// Sets a top-level field to `text`, which the caller guarantees is one valid JSON
    /// value: written out as it is, without building a `Value` (an envelope a transform
    /// formats itself). A name given twice is collapsed as by [`Fields::set`].
    pub fn set_text(&mut self, name: &str, text: String) {
        match self.collapse(name) {
            Some(i) => self.fields[i].1 = Field::Text(text),
            None => self
                .fields
                .push((Cow::Owned(name.to_string()), Field::Text(text))),
        }
        self.changed = true;
    }

    /// Sets the value at a dotted path, creating objects on the way. False when a
    /// non-object is in the way.
    #[inline]
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
                self.changed = true;
                return true;
            }
        };
        let done = match rest {
            None => {
                self.fields[i].1 = Field::Owned(value);
                true
            }
            Some(r) => self.owned(i).is_some_and(|v| json::set(v, r, value)),
        };
        self.changed |= done;
        done
    }

    /// Removes and returns the value at a dotted path.
    #[inline]
    pub fn remove(&mut self, path: &str) -> Option<Value> {
        let (head, rest) = split(path);
        let i = self.collapse(head)?;
        let removed = match rest {
            None => match self.fields.remove(i).1 {
                Field::Owned(v) => Some(v),
                Field::Raw(raw) => serde_json::from_str(raw.get()).ok(),
                Field::Text(text) => serde_json::from_str(&text).ok(),
            },
            Some(r) => json::remove(self.owned(i)?, r),
        };
        self.changed |= removed.is_some();
        removed
    }

    /// Writes the object as compact JSON; untouched values are copied byte for byte.
    #[inline]
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
                Field::Text(text) => out.extend_from_slice(text.as_bytes()),
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
    fn text_set_is_written_as_given_read_back_parsed_and_collapses_a_repeated_name() {
        let bytes = br#"{"a":1,"b":2,"a":3}"#;
        let mut f = Fields::parse(bytes).unwrap();
        f.set_text("a", r#"{"x":[1,"y"]}"#.to_string());
        f.set_text("c", "true".to_string());
        assert!(f.is_changed());
        assert_eq!(f.get("a.x.1").as_deref(), Some(&json!("y")));
        assert_eq!(f.raw("a"), None, "not the text that arrived");
        let mut out = Vec::new();
        f.write(&mut out).unwrap();
        assert_eq!(out, br#"{"b":2,"a":{"x":[1,"y"]},"c":true}"#);
        assert_eq!(f.remove("c"), Some(json!(true)));
    }

    #[test]
    fn distinct_names_keep_the_first_place_and_outlive_edits() {
        let bytes = br#"{"a":1,"b":2,"a":3,"c":4}"#;
        let mut f = Fields::parse(bytes).unwrap();
        let names = f.distinct_names();
        assert_eq!(names, ["a", "b", "c"]);
        assert!(f.is_repeated("a") && !f.is_repeated("b") && !f.is_repeated("z"));
        for n in &names {
            assert!(f.set(n, json!(0)));
        }
        assert!(!f.is_repeated("a"), "an edit collapses a repeated name");
    }

    #[test]
    fn edits_keep_untouched_bytes_and_order() {
        let src = br#"{"b":{"x": 1},"a":"q\"uote","n":[1, 2]}"#;
        let mut o = Fields::parse(src).unwrap();
        assert_eq!(o.get("b.x").as_deref(), Some(&json!(1)));
        assert!(!o.is_changed());
        assert!(o.set("c", json!("new")));
        assert!(o.set("b.y", json!(true)));
        assert_eq!(o.remove("a"), Some(json!("q\"uote")));
        assert!(o.is_changed());
        let mut out = Vec::new();
        o.write(&mut out).unwrap();
        // `n` keeps its original spacing: it was never parsed.
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"b":{"x":1,"y":true},"n":[1, 2],"c":"new"}"#
        );
        assert!(Fields::parse(b"[1]").is_err());
        assert!(Fields::parse(b"nope").is_err());
    }

    #[test]
    fn only_edits_that_happened_count_as_changes() {
        let mut o = Fields::parse(br#"{"a":1,"s":"x"}"#).unwrap();
        assert_eq!(o.remove("missing"), None);
        assert!(!o.set("s.deeper", json!(1)), "a string is in the way");
        assert!(!o.is_changed());
    }

    fn written(o: &Fields) -> String {
        let mut out = Vec::new();
        o.write(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn repeated_names_read_the_last_copy_and_edits_reach_every_copy() {
        let src = br#"{"ssn":"1","user":"a","ssn":"2","n":{"k":1,"k":2},"m":{"x":1},"m":{"y":2}}"#;
        let o = Fields::parse(src).unwrap();
        assert_eq!(o.get("ssn").as_deref(), Some(&json!("2")));
        assert_eq!(o.get("n.k").as_deref(), Some(&json!(2)));
        assert_eq!(
            o.get("m.x"),
            None,
            "the earlier `m` is not what readers see"
        );

        let mut o = Fields::parse(src).unwrap();
        assert_eq!(o.remove("ssn"), Some(json!("2")));
        assert_eq!(o.get("ssn"), None);
        assert_eq!(o.remove("n.k"), Some(json!(2)));
        assert_eq!(o.remove("m.y"), Some(json!(2)));
        assert_eq!(written(&o), r#"{"user":"a","n":{},"m":{}}"#);

        let mut o = Fields::parse(src).unwrap();
        assert!(o.set("ssn", json!("x")));
        assert!(o.set("m.z", json!(3)));
        assert_eq!(
            written(&o),
            r#"{"user":"a","ssn":"x","n":{"k":1,"k":2},"m":{"y":2,"z":3}}"#
        );
    }
}
