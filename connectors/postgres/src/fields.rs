//! Column values from a record's JSON fields, read through [`Outline`] (no `Value` tree):
//! strings without escapes, numbers, booleans and nested documents are borrowed from the
//! record bytes.

use std::borrow::Cow;

use serde_json::value::RawValue;
pub use sluice_sdk::json::Outline;

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
        let o = Outline::parse(doc).unwrap();
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
    }
}
