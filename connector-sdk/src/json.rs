//! Field access on JSON values with dotted paths (`source.system`, `user.roles.0`).

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
}
