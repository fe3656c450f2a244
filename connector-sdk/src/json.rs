//! Field access on JSON values with dotted paths (`source.system`, `user.roles.0`), and the
//! checks and scans that read JSON text without building values.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

mod check;
mod escape;
mod member;
mod quotes;
pub use check::{check, is_json, NotJson};
pub use escape::write_str;
pub use member::MemberFinder;

/// Sixteen-byte chunks with every byte value in every lane (and a second byte beside it),
/// for the tests that compare a vector form of a chunk's flags with its bytewise form.
#[cfg(test)]
fn test_chunks() -> impl Iterator<Item = [u8; 16]> {
    (0..=255u8).flat_map(|v| {
        (0..16).map(move |lane| {
            let mut chunk = [b'a'; 16];
            chunk[lane] = v;
            chunk[(lane + 5) % 16] = v.wrapping_mul(37);
            chunk
        })
    })
}

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

/// Where each top-level member of a JSON object lies in its text: key and raw value as byte
/// ranges, in document order. Kept by the caller and reused record after record.
pub type MemberSpans = Vec<(std::ops::Range<usize>, std::ops::Range<usize>)>;

/// Finds the top-level members of a JSON object without parsing or validating their values:
/// strings are skipped to their closing quote, objects and arrays to their closing bracket,
/// other values to the next delimiter. For deciding on a few top-level fields of records a
/// source already checked (routing), at a fraction of [`Outline::parse`]'s cost.
///
/// `false` when the text is not laid out as one object, or a key has an escape (its bytes
/// are not its name): the caller then parses the record properly. The keys' spans exclude
/// their quotes; a value's span is its whole raw text.
pub fn scan_members(bytes: &[u8], out: &mut MemberSpans) -> bool {
    out.clear();
    let start = skip_ws(bytes, 0);
    let scanned = match quotes::QuoteMap::new(bytes) {
        Some(map) => scan_object_in(bytes, start, out, &map),
        None => scan_object_in(bytes, start, out, &Plain),
    };
    match scanned {
        Some(o) => !o.escaped_keys && skip_ws(bytes, o.end) == bytes.len(),
        None => false,
    }
}

/// What [`scan_object`] found besides the member spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScannedObject {
    /// Just past the object's closing brace.
    pub end: usize,
    /// Some key has a backslash escape: its span's bytes are not its name.
    pub escaped_keys: bool,
}

/// [`scan_members`] for the object whose `{` is at `start`, anywhere in `bytes` (a nested
/// one too): appends its members' spans to `out` (which it does not clear, so a recursive
/// caller can keep every level's members in one vector) and accepts escaped keys, telling
/// the caller about them. `None` when the text there is not laid out as an object.
pub fn scan_object(bytes: &[u8], start: usize, out: &mut MemberSpans) -> Option<ScannedObject> {
    scan_object_in(bytes, start, out, &Plain)
}

/// How a scan finds where a string ends.
trait StringEnd {
    /// Just past the closing quote of the string whose opening quote is at `start`.
    fn end(&self, bytes: &[u8], start: usize) -> Option<usize>;
    /// Whether a string may hold a backslash escape.
    const ESCAPES: bool;
}

/// Reading the bytes up to the first quote no backslash escapes.
struct Plain;

impl StringEnd for Plain {
    const ESCAPES: bool = true;
    fn end(&self, bytes: &[u8], start: usize) -> Option<usize> {
        skip_string(bytes, start)
    }
}

/// From the text's quote bitmap (a text without backslashes).
impl StringEnd for quotes::QuoteMap {
    const ESCAPES: bool = false;
    fn end(&self, _bytes: &[u8], start: usize) -> Option<usize> {
        self.string_end(start)
    }
}

fn scan_object_in<S: StringEnd>(
    bytes: &[u8],
    start: usize,
    out: &mut MemberSpans,
    strings: &S,
) -> Option<ScannedObject> {
    if bytes.get(start) != Some(&b'{') {
        return None;
    }
    let mut escaped_keys = false;
    let mut i = skip_ws(bytes, start + 1);
    if bytes.get(i) == Some(&b'}') {
        return Some(ScannedObject {
            end: i + 1,
            escaped_keys,
        });
    }
    loop {
        if bytes.get(i) != Some(&b'"') {
            return None;
        }
        let key_start = i + 1;
        let key_end = strings.end(bytes, i)? - 1;
        escaped_keys |= S::ESCAPES && bytes[key_start..key_end].contains(&b'\\');
        i = skip_ws(bytes, key_end + 1);
        if bytes.get(i) != Some(&b':') {
            return None;
        }
        let value_start = skip_ws(bytes, i + 1);
        let value_end = skip_value(bytes, value_start, strings)?;
        out.push((key_start..key_end, value_start..value_end));
        i = skip_ws(bytes, value_end);
        match bytes.get(i) {
            Some(b',') => i = skip_ws(bytes, i + 1),
            Some(b'}') => {
                return Some(ScannedObject {
                    end: i + 1,
                    escaped_keys,
                })
            }
            _ => return None,
        }
    }
}

fn skip_ws(bytes: &[u8], mut i: usize) -> usize {
    while matches!(bytes.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The end of the string whose opening quote is at `start`: just past the first quote after
/// it that no backslash escapes.
fn skip_string(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    loop {
        i += check::string_stop::<false>(bytes.get(i..)?)?;
        if bytes[i] == b'"' {
            return Some(i + 1);
        }
        // A backslash and the byte it escapes.
        i += 2;
    }
}

/// The end of the value starting at `start`.
fn skip_value(bytes: &[u8], start: usize, strings: &impl StringEnd) -> Option<usize> {
    match *bytes.get(start)? {
        b'"' => strings.end(bytes, start),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = start;
            while i < bytes.len() {
                match bytes[i] {
                    b'"' => {
                        i = strings.end(bytes, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            None
        }
        b',' | b'}' | b']' | b':' => None,
        _ => {
            let n = bytes[start..]
                .iter()
                .position(|c| matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                .unwrap_or(bytes.len() - start);
            Some(start + n)
        }
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

    /// The quote bitmap finds the same members as the byte scan, wherever the quotes fall
    /// in its 64-bit words, and gives way to the byte scan past 1 KiB or with a backslash.
    #[test]
    fn the_quote_map_scans_as_the_bytes_do() {
        let mut texts = Vec::new();
        for n in 0..90 {
            let s = "x".repeat(n);
            texts.push(format!(
                r#"{{"{s}":"{s}","n":{n},"o":{{"a":["{s}",{{"b":"{s}"}}]}},"z":"{s}"}}"#
            ));
            texts.push(format!(r#" {{ "k" : "{s}" , "e" : "" , "t" : true }} "#));
            texts.push(format!(r#"{{"k":"a\"b{s}","l":"{s}"}}"#));
            texts.push(format!(r#"{{"k":"{s}","#));
            texts.push(format!(r#"{{"k":"{}"}}"#, "y".repeat(n * 13)));
        }
        let mapped = texts
            .iter()
            .filter(|t| quotes::QuoteMap::new(t.as_bytes()).is_some())
            .count();
        assert!(mapped > 300, "only {mapped} texts were scanned by the map");
        for text in &texts {
            let b = text.as_bytes();
            let (mut by_map, mut by_bytes) = (MemberSpans::new(), MemberSpans::new());
            let map = scan_members(b, &mut by_map);
            let bytes = scan_object_in(b, skip_ws(b, 0), &mut by_bytes, &Plain)
                .is_some_and(|o| !o.escaped_keys && skip_ws(b, o.end) == b.len());
            assert_eq!(map, bytes, "{text}");
            if map {
                assert_eq!(by_map, by_bytes, "{text}");
            }
        }
    }

    #[test]
    fn scanned_members_match_the_parsed_outline() {
        let text = br#" {"a": "x\"}", "b" :{"c":[1,{"d":"]"}]}, "n": -1.5e3,"t":true, "a":null } "#;
        let mut spans = MemberSpans::new();
        assert!(scan_members(text, &mut spans));
        let got: Vec<(&str, &str)> = spans
            .iter()
            .map(|(k, v)| {
                (
                    std::str::from_utf8(&text[k.clone()]).unwrap(),
                    std::str::from_utf8(&text[v.clone()]).unwrap(),
                )
            })
            .collect();
        let outline: Outline<'_> = Outline::parse(text).unwrap();
        let want: Vec<(String, &str)> = outline
            .into_members()
            .into_iter()
            .map(|(k, v)| (k.into_owned(), v.get()))
            .collect();
        assert_eq!(got.len(), want.len());
        for ((gk, gv), (wk, wv)) in got.iter().zip(&want) {
            assert_eq!((*gk, *gv), (wk.as_str(), *wv));
        }
        assert!(scan_members(b"{}", &mut spans) && spans.is_empty());
        // Not one object, or a key with an escape: the caller parses instead.
        for bad in [
            &b"[1]"[..],
            b"{\"a\":1",
            b"{\"a\":1} x",
            b"{\"a\" 1}",
            b"{\"a\":}",
            b"{\"a\\u0041\":1}",
            b"{\"a\":\"open}",
            b"{\"a\":[1,2}",
            b"",
        ] {
            assert!(
                !scan_members(bad, &mut spans),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
