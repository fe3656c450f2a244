//! The request body: one JSON array per batch, written straight into one buffer.
//!
//! ```json
//! [{"key":"k1","value":{"event":"login"},"headers":[["trace","abc"]],"timestamp":1700000000000,
//!   "origin":{"stream":"audit","partition":0,"offset":42}}]
//! ```
//! A value that is JSON is embedded as is (no re-serialisation); other UTF-8 text becomes a
//! JSON string; anything else is `value_base64`. Keys and header values are strings when
//! UTF-8, else `*_base64` likewise.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sluice_sdk::RecordRef;

/// Framing bytes reserved per record when sizing the body.
const PER_RECORD: usize = 96;

pub fn encode(records: &[RecordRef<'_>]) -> Vec<u8> {
    let size: usize = records.iter().map(|r| r.size() + PER_RECORD).sum();
    let mut body = Vec::with_capacity(size + 2);
    body.push(b'[');
    for (i, r) in records.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.push(b'{');
        match r.key() {
            None => body.extend_from_slice(b"\"key\":null"),
            Some(k) => bytes_field(&mut body, "key", k),
        }
        body.push(b',');
        if r.is_json() {
            body.extend_from_slice(b"\"value\":");
            body.extend_from_slice(r.value());
        } else {
            bytes_field(&mut body, "value", r.value());
        }
        body.extend_from_slice(b",\"headers\":[");
        for (j, h) in r.headers().iter().enumerate() {
            if j > 0 {
                body.push(b',');
            }
            body.push(b'[');
            string(&mut body, h.key);
            body.push(b',');
            match h.value {
                None => body.extend_from_slice(b"null"),
                Some(v) => match std::str::from_utf8(v) {
                    Ok(s) => string(&mut body, s),
                    Err(_) => {
                        body.extend_from_slice(b"{\"base64\":");
                        base64(&mut body, v);
                        body.push(b'}');
                    }
                },
            }
            body.push(b']');
        }
        body.extend_from_slice(b"],\"timestamp\":");
        match r.timestamp() {
            None => body.extend_from_slice(b"null"),
            Some(ts) => int(&mut body, ts),
        }
        body.extend_from_slice(b",\"origin\":{\"stream\":");
        string(&mut body, r.origin().stream);
        body.extend_from_slice(b",\"partition\":");
        int(&mut body, r.origin().partition);
        body.extend_from_slice(b",\"offset\":");
        int(&mut body, r.origin().offset);
        body.extend_from_slice(b"}}");
    }
    body.push(b']');
    body
}

/// `"name":"text"` when UTF-8, else `"name_base64":"..."`.
fn bytes_field(body: &mut Vec<u8>, name: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(s) => {
            string(body, name);
            body.push(b':');
            string(body, s);
        }
        Err(_) => {
            body.push(b'"');
            body.extend_from_slice(name.as_bytes());
            body.extend_from_slice(b"_base64\":");
            base64(body, bytes);
        }
    }
}

fn string(body: &mut Vec<u8>, s: &str) {
    // Writing a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *body, s);
}

fn base64(body: &mut Vec<u8>, bytes: &[u8]) {
    body.push(b'"');
    body.extend_from_slice(STANDARD.encode(bytes).as_bytes());
    body.push(b'"');
}

fn int(body: &mut Vec<u8>, n: impl itoa::Integer) {
    body.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}
