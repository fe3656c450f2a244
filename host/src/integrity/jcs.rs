//! RFC 8785 JSON Canonicalization Scheme (JCS): the form a record is hashed in, so a store
//! that reorders members or rewrites whitespace still verifies.
//!
//! - objects: members sorted by their names' UTF-16 code units, no whitespace;
//! - strings: `"` and `\` escaped, `\b \t \n \f \r`, other controls below U+0020 as
//!   `\u00xx` (lower-case hex), everything else as literal UTF-8;
//! - numbers: IEEE 754 doubles written as ECMAScript's `Number.prototype.toString` does
//!   (shortest round-trip digits; exponent form below 1e-6 and from 1e21; `-0` as `0`).
//!
//! This is the form computed from a parsed `Value`: digest entries use it, and it is what
//! [`super::jcs_text`], which computes the same bytes from a record's text, falls back to.
//!
//! Crates: `serde_jcs` 0.2.0 and `json-canon` 0.1.3 are on crates.io; neither was evaluated
//! in depth yet. This module is small, has no dependency, and is tested with RFC 8785's
//! examples; switching to a crate later must keep these tests passing.

use std::io::Write as _;

use serde_json::Value;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JcsError {
    #[error("a number that is not finite cannot be canonicalised")]
    NotFinite,
}

/// The canonical bytes of `v`.
pub fn canonical(v: &Value) -> Result<Vec<u8>, JcsError> {
    canonical_sized(v, 256)
}

/// [`canonical`] into a buffer of `capacity` (the source text's length avoids regrowing).
pub fn canonical_sized(v: &Value, capacity: usize) -> Result<Vec<u8>, JcsError> {
    let mut out = Vec::with_capacity(capacity);
    write_value(v, &mut out)?;
    Ok(out)
}

fn write_value(v: &Value, out: &mut Vec<u8>) -> Result<(), JcsError> {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(n, out)?,
        Value::String(s) => sluice_sdk::json::write_str(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            // UTF-16 code unit order is UTF-8 byte order unless a key has a character at or
            // above U+E000 (lead byte 0xEE or more): compare those as UTF-16.
            if map.keys().any(|k| k.bytes().any(|b| b >= 0xEE)) {
                members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            } else {
                members.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            }
            out.push(b'{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                sluice_sdk::json::write_str(out, k);
                out.push(b':');
                write_value(v, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

/// A parsed number as JCS writes it (shared with the text canonicaliser, which parses the
/// numbers it does not copy through serde_json so both agree on the double).
pub(super) fn write_number(n: &serde_json::Number, out: &mut Vec<u8>) -> Result<(), JcsError> {
    let f = n.as_f64().ok_or(JcsError::NotFinite)?;
    // Integers a double holds exactly print as themselves.
    if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 && f != 0.0 {
        let _ = write!(out, "{}", f as i64);
    } else {
        out.extend_from_slice(number(f)?.as_bytes());
    }
    Ok(())
}

/// ECMAScript's `Number::toString(x)` for a finite double (ECMA-262, 7.1.12.1).
pub fn number(x: f64) -> Result<String, JcsError> {
    if !x.is_finite() {
        return Err(JcsError::NotFinite);
    }
    if x == 0.0 {
        return Ok("0".into());
    }
    let sign = if x < 0.0 { "-" } else { "" };
    // Rust's `{:e}` gives the shortest digits that round-trip: `d.ddddde<exp>`.
    let sci = format!("{:e}", x.abs());
    let (mant, exp) = sci.split_once('e').ok_or(JcsError::NotFinite)?;
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    let e: i32 = exp.parse().map_err(|_| JcsError::NotFinite)?;
    let k = digits.len() as i32;
    // x = 0.digits × 10^n
    let n = e + 1;
    let body = if k <= n && n <= 21 {
        format!("{digits}{}", "0".repeat((n - k) as usize))
    } else if 0 < n && n <= 21 {
        let (a, b) = digits.split_at(n as usize);
        format!("{a}.{b}")
    } else if -6 < n && n <= 0 {
        format!("0.{}{digits}", "0".repeat((-n) as usize))
    } else {
        let e = n - 1;
        let es = if e >= 0 {
            format!("+{e}")
        } else {
            e.to_string()
        };
        if k == 1 {
            format!("{digits}e{es}")
        } else {
            let (a, b) = digits.split_at(1);
            format!("{a}.{b}e{es}")
        }
    };
    Ok(format!("{sign}{body}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(text: &str) -> String {
        let v: Value = serde_json::from_str(text).unwrap();
        String::from_utf8(canonical(&v).unwrap()).unwrap()
    }

    /// RFC 8785 appendix B: IEEE 754 bit patterns and their canonical text.
    #[test]
    fn rfc8785_number_examples() {
        let cases: [(u64, &str); 18] = [
            (0x0000000000000000, "0"),
            (0x8000000000000000, "0"),
            (0x0000000000000001, "5e-324"),
            (0x8000000000000001, "-5e-324"),
            (0x7fefffffffffffff, "1.7976931348623157e+308"),
            (0xffefffffffffffff, "-1.7976931348623157e+308"),
            (0x4340000000000000, "9007199254740992"),
            (0xc340000000000000, "-9007199254740992"),
            (0x4430000000000000, "295147905179352830000"),
            (0x44b52d02c7e14af5, "9.999999999999997e+22"),
            (0x44b52d02c7e14af6, "1e+23"),
            (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
            (0x444b1ae4d6e2ef4e, "999999999999999700000"),
            (0x444b1ae4d6e2ef4f, "999999999999999900000"),
            (0x444b1ae4d6e2ef50, "1e+21"),
            (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
            (0x3eb0c6f7a0b5ed8d, "0.000001"),
            (0x41b3de4355555553, "333333333.3333332"),
        ];
        for (bits, want) in cases {
            assert_eq!(number(f64::from_bits(bits)).unwrap(), want, "{bits:#x}");
        }
        assert_eq!(number(-0.0).unwrap(), "0");
        assert_eq!(number(1e21).unwrap(), "1e+21");
        assert_eq!(number(1e20).unwrap(), "100000000000000000000");
        assert_eq!(number(0.1).unwrap(), "0.1");
        assert_eq!(number(1.5e-7).unwrap(), "1.5e-7");
        assert_eq!(number(123.0).unwrap(), "123");
        assert_eq!(number(f64::NAN), Err(JcsError::NotFinite));
        assert_eq!(number(f64::INFINITY), Err(JcsError::NotFinite));
    }

    /// The shortcuts (integers printed directly, keys below U+E000 sorted as bytes) give
    /// the same text as the general path.
    #[test]
    fn shortcuts_match_the_general_rules() {
        for x in [
            1.0,
            -1.0,
            42.0,
            1e15,
            -9_007_199_254_740_991.0,
            9_007_199_254_740_991.0,
            9_007_199_254_740_992.0,
            1e21,
            0.0,
            -0.0,
            0.5,
        ] {
            let v = serde_json::json!(x);
            let got = String::from_utf8(canonical(&v).unwrap()).unwrap();
            assert_eq!(got, number(x).unwrap(), "{x}");
        }
        assert_eq!(canon("12345678901234567890"), "12345678901234567000");
        assert_eq!(canon("-7"), "-7");
        // Keys of BMP characters below U+E000: byte order is UTF-16 order.
        let keys = ["\u{f6}", "\u{20ac}", "\r", "1", "z", "\u{d7ff}", "A"];
        let mut m = serde_json::Map::new();
        for k in keys {
            m.insert(k.to_string(), Value::Null);
        }
        let text = String::from_utf8(canonical(&Value::Object(m)).unwrap()).unwrap();
        let mut by_utf16: Vec<&str> = keys.to_vec();
        by_utf16.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
        let want: Vec<String> = by_utf16
            .iter()
            .map(|k| {
                let mut o = Vec::new();
                sluice_sdk::json::write_str(&mut o, k);
                format!("{}:null", String::from_utf8(o).unwrap())
            })
            .collect();
        assert_eq!(text, format!("{{{}}}", want.join(",")));
    }

    /// RFC 8785 section 3.2.2 and 3.2.3 examples.
    #[test]
    fn rfc8785_sample_and_sorting() {
        let input = r#"{
            "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
            "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
            "literals": [null, true, false]
        }"#;
        let want = r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#;
        assert_eq!(canon(input), want);

        // Sorting by UTF-16 code units: U+1F600 (surrogates D83D DE00) sorts before U+FB33.
        let input = r#"{
            "\u20ac": "Euro Sign",
            "\r": "Carriage Return",
            "\ufb33": "Hebrew Letter Dalet With Dagesh",
            "1": "One",
            "\ud83d\ude00": "Emoji: Grinning Face",
            "\u0080": "Control",
            "\u00f6": "Latin Small Letter O With Diaeresis"
        }"#;
        let v: Value = serde_json::from_str(input).unwrap();
        let text = String::from_utf8(canonical(&v).unwrap()).unwrap();
        let order: Vec<&str> = text
            .split(&['{', ',', '}'][..])
            .filter(|s| !s.is_empty())
            .map(|m| m.split_once("\":").map_or(m, |(_, v)| v))
            .collect();
        assert_eq!(
            order,
            [
                "\"Carriage Return\"",
                "\"One\"",
                "\"Control\"",
                "\"Latin Small Letter O With Diaeresis\"",
                "\"Euro Sign\"",
                "\"Emoji: Grinning Face\"",
                "\"Hebrew Letter Dalet With Dagesh\"",
            ]
        );
    }

    #[test]
    fn whitespace_and_member_order_do_not_matter() {
        let a = canon(r#"{"b": [1, 2.0, {"z": 1, "a": "x"}], "a": -0}"#);
        let b = canon(r#"{"a":0,"b":[1,2,{"a":"x","z":1}]}"#);
        assert_eq!(a, b);
        assert_eq!(a, r#"{"a":0,"b":[1,2,{"a":"x","z":1}]}"#);
        assert_eq!(canon(r#""\u001f\u007f""#), "\"\\u001f\u{7f}\"");
        assert_eq!(canon("18446744073709551615"), "18446744073709552000");
    }
}
