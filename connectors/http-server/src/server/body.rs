//! Request bodies: gzip, and the ways events are framed.

use std::io::Read;

use serde::Deserialize;
use serde_json::value::RawValue;

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the body is over max_body_bytes ({0} bytes)")]
    TooLarge(u64),
    #[error("unsupported Content-Encoding `{0}` (gzip or identity)")]
    Encoding(String),
    #[error("the gzip body cannot be decompressed: {0}")]
    Gzip(std::io::Error),
    #[error("the body is not JSON: {0}")]
    Json(serde_json::Error),
    #[error("the body holds no event")]
    Empty,
}

/// The body as sent, gunzipped when `Content-Encoding: gzip`, at most `limit` bytes.
pub fn decode(
    encoding: Option<&str>,
    body: bytes::Bytes,
    limit: u64,
) -> Result<bytes::Bytes, BodyError> {
    match encoding.map(str::trim) {
        None | Some("") | Some("identity") => Ok(body),
        Some(e) if e.eq_ignore_ascii_case("gzip") || e.eq_ignore_ascii_case("x-gzip") => {
            let mut out = Vec::with_capacity((body.len() * 4).min(limit as usize));
            flate2::read::MultiGzDecoder::new(&body[..])
                .take(limit + 1)
                .read_to_end(&mut out)
                .map_err(BodyError::Gzip)?;
            if out.len() as u64 > limit {
                return Err(BodyError::TooLarge(limit));
            }
            Ok(out.into())
        }
        Some(other) => Err(BodyError::Encoding(other.to_string())),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wrapped<'a> {
    #[serde(borrow)]
    events: Vec<&'a RawValue>,
}

/// How the events came.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Framing {
    /// One JSON value: answered as one event on the single-event path.
    One,
    /// `{"events": [...]}`, a JSON array, or several values (NDJSON).
    Many,
}

/// The events of a body: `{"events": [...]}` (on the bulk path), a JSON array, or one or more
/// JSON values separated by whitespace (one object, NDJSON).
pub fn split(body: &[u8], bulk_path: bool) -> Result<(Vec<&RawValue>, Framing), BodyError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        None => Err(BodyError::Empty),
        Some(b'[') => serde_json::from_slice::<Vec<&RawValue>>(body)
            .map(|v| (v, Framing::Many))
            .map_err(BodyError::Json),
        Some(b'{') if bulk_path => match serde_json::from_slice::<Wrapped>(body) {
            Ok(w) => Ok((w.events, Framing::Many)),
            Err(_) => stream(body).map(|v| (v, Framing::Many)),
        },
        Some(_) => {
            let v = stream(body)?;
            let framing = if v.len() == 1 {
                Framing::One
            } else {
                Framing::Many
            };
            Ok((v, framing))
        }
    }
}

fn stream(body: &[u8]) -> Result<Vec<&RawValue>, BodyError> {
    let v = serde_json::Deserializer::from_slice(body)
        .into_iter::<&RawValue>()
        .collect::<Result<Vec<_>, _>>()
        .map_err(BodyError::Json)?;
    if v.is_empty() {
        return Err(BodyError::Empty);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(body: &str, bulk: bool) -> (Vec<String>, Framing) {
        let (v, f) = split(body.as_bytes(), bulk).unwrap();
        (v.iter().map(|r| r.get().to_string()).collect(), f)
    }

    #[test]
    fn every_framing_yields_its_events() {
        assert_eq!(
            texts(r#" {"a":1} "#, false),
            (vec![r#"{"a":1}"#.into()], Framing::One)
        );
        assert_eq!(
            texts("{\"a\":1}\n{\"a\":2}\n", false),
            (
                vec![r#"{"a":1}"#.into(), r#"{"a":2}"#.into()],
                Framing::Many
            )
        );
        assert_eq!(
            texts(r#"[{"a":1},{"a":2}]"#, false).0,
            vec![r#"{"a":1}"#, r#"{"a":2}"#]
        );
        assert_eq!(
            texts(r#"{"events":[{"a":1},{"a":2}]}"#, true).0,
            vec![r#"{"a":1}"#, r#"{"a":2}"#]
        );
        // Off the bulk path an `events` key is just a field of one event.
        assert_eq!(
            texts(r#"{"events":[1]}"#, false).0,
            vec![r#"{"events":[1]}"#]
        );
        assert!(split(b"{\"a\":", false).is_err());
        assert!(split(b"  ", true).is_err());
    }

    #[test]
    fn a_gzip_bomb_stops_at_the_limit() {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(&vec![b' '; 1_000_000]).unwrap();
        let gz = e.finish().unwrap();
        assert!(matches!(
            decode(Some("gzip"), gz.clone().into(), 1000),
            Err(BodyError::TooLarge(1000))
        ));
        assert_eq!(
            decode(Some("gzip"), gz.into(), 2_000_000).unwrap().len(),
            1_000_000
        );
    }
}
