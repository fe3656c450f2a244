//! Setting one field of a record's JSON object value, for the host's own marks (a fallback's
//! `sluice.fallback_of`).

use bytes::Bytes;
use serde_json::Value;
use sluice_sdk::transform::Fields;

/// The value with `path` (dotted) set to `v`; `None` when the value is not a JSON object or
/// the path is blocked by a field that is not an object (the record is then left as it is).
pub fn with_field(value: &[u8], path: &str, v: Value) -> Option<Bytes> {
    let mut fields = Fields::parse(value).ok()?;
    if !fields.set(path, v) {
        return None;
    }
    let mut out = Vec::with_capacity(value.len() + path.len() + 16);
    fields.write(&mut out).ok()?;
    Some(Bytes::from(out))
}
