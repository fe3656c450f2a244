//! Event time read from a record field, one parser for every connector that takes a
//! `time_field` (`splunk_hec`, `elasticsearch`): RFC 3339 text, or epoch seconds, milli-,
//! micro- or nanoseconds as a number or numeric string, told apart by magnitude.

use chrono::DateTime;
use serde_json::Value;

/// Epoch numbers below this are seconds (up to the year 5138); larger ones are taken as
/// milliseconds, then microseconds, then nanoseconds, each step a factor of 1000.
const SECONDS_LIMIT: f64 = 1e11;

/// Milliseconds since the epoch from a field value: a number or numeric string (epoch seconds,
/// or milli/micro/nanoseconds recognised by magnitude), or an RFC 3339 string. `None` when
/// the value is none of these.
pub fn parse_millis(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Some(int_to_millis(i))
            } else {
                float_to_millis(n.as_f64()?)
            }
        }
        Value::String(s) => parse_text(s),
        _ => None,
    }
}

/// [`parse_millis`] of a value given as its JSON text (a member's span in a record already
/// found to be JSON): a string without escapes is read where it lies, anything else is parsed
/// first.
pub fn parse_raw_millis(raw: &[u8]) -> Option<i64> {
    if let Some(inner) = raw.strip_prefix(b"\"").and_then(|r| r.strip_suffix(b"\"")) {
        if !inner.contains(&b'\\') {
            return parse_text(std::str::from_utf8(inner).ok()?);
        }
    }
    parse_millis(&serde_json::from_slice(raw).ok()?)
}

fn parse_text(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let numeric = s
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'));
    if numeric {
        if let Ok(i) = s.parse::<i64>() {
            return Some(int_to_millis(i));
        }
        return s.parse::<f64>().ok().and_then(float_to_millis);
    }
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
}

fn int_to_millis(i: i64) -> i64 {
    let a = i.unsigned_abs();
    if a < 100_000_000_000 {
        i.saturating_mul(1000)
    } else if a < 100_000_000_000_000 {
        i
    } else if a < 100_000_000_000_000_000 {
        i.div_euclid(1000)
    } else {
        i.div_euclid(1_000_000)
    }
}

fn float_to_millis(f: f64) -> Option<i64> {
    if !f.is_finite() {
        return None;
    }
    let mut secs = f;
    while secs.abs() >= SECONDS_LIMIT {
        secs /= 1000.0;
    }
    // Round to whole microseconds first (exact in an f64 for any plausible date) so that
    // `1718000000.123` does not become ...122.9999 and lose a millisecond.
    let micros = (secs * 1e6).round();
    Some((micros as i64).div_euclid(1000))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_rfc3339() {
        assert_eq!(
            parse_millis(&json!("2024-06-10T06:13:20.123Z")),
            Some(1_718_000_000_123)
        );
        assert_eq!(
            parse_millis(&json!("2024-06-10T08:13:20.5+02:00")),
            Some(1_718_000_000_500)
        );
        assert_eq!(
            parse_millis(&json!("2024-06-10T06:00:00Z")),
            Some(1_717_999_200_000)
        );
    }

    #[test]
    fn parses_epochs_by_magnitude() {
        assert_eq!(parse_millis(&json!(1_718_000_000)), Some(1_718_000_000_000));
        assert_eq!(
            parse_millis(&json!(1_718_000_000.123)),
            Some(1_718_000_000_123)
        );
        assert_eq!(
            parse_millis(&json!(1_718_000_000_123i64)),
            Some(1_718_000_000_123)
        );
        assert_eq!(
            parse_millis(&json!(1_718_000_000_123_456i64)),
            Some(1_718_000_000_123)
        );
        assert_eq!(
            parse_millis(&json!(1_718_000_000_123_456_789i64)),
            Some(1_718_000_000_123)
        );
        assert_eq!(
            parse_millis(&json!("1718000000.5")),
            Some(1_718_000_000_500)
        );
        assert_eq!(
            parse_millis(&json!(" 1718000000 ")),
            Some(1_718_000_000_000)
        );
        assert_eq!(parse_millis(&json!(1.718e9)), Some(1_718_000_000_000));
    }

    #[test]
    fn raw_values_read_as_their_parsed_values() {
        for raw in [
            r#""2024-06-10T06:13:20.123Z""#,
            r#""2024-06-10T06:13:20\u002e123Z""#,
            r#""1718000000.5""#,
            r#"" 1718000000 ""#,
            "1718000000123",
            "1.718e9",
            r#""yesterday""#,
            r#""""#,
            "null",
            "{}",
        ] {
            let parsed: Value = serde_json::from_str(raw).unwrap();
            assert_eq!(
                parse_raw_millis(raw.as_bytes()),
                parse_millis(&parsed),
                "{raw}"
            );
        }
        assert_eq!(parse_raw_millis(br#"""#), None);
    }

    #[test]
    fn rejects_what_is_not_a_time() {
        for v in [
            json!("yesterday"),
            json!(""),
            json!(null),
            json!(true),
            json!({}),
            json!("NaN"),
        ] {
            assert_eq!(parse_millis(&v), None, "{v}");
        }
    }
}
