//! Helpers for connector configuration structs.
//!
//! Configuration arrives as JSON (the YAML block of the connector, without its `type` key,
//! with `${VAR}` already expanded). Derive `Deserialize` with `#[serde(deny_unknown_fields)]`
//! so a typo is an error, and use the modules here for durations and sizes so every connector
//! reads `200ms` and `1MiB` the same way.

use std::fmt;
use std::time::Duration;

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};

use crate::ConfigError;

/// Deserializes a configuration value, reporting the path of the offending key.
pub fn from_value<C: DeserializeOwned>(value: serde_json::Value) -> Result<C, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = humanize(&e.into_inner().to_string());
        if path == "." || path.is_empty() {
            ConfigError::new(message)
        } else {
            ConfigError::at(path, message)
        }
    })
}

/// Rewrites a serde error message for an operator: Rust type names in words (`expected
/// usize` becomes `expected a whole number`), and for an unknown key or variant close to a
/// known one, `did you mean `batch`?`.
pub fn humanize(message: &str) -> String {
    let mut out = message.to_string();
    for (from, to) in [
        ("invalid type: map,", "invalid type: a mapping,"),
        ("invalid type: sequence,", "invalid type: a list,"),
        ("invalid type: unit value,", "invalid type: an empty value,"),
    ] {
        if let Some(rest) = out.strip_prefix(from) {
            out = format!("{to}{rest}");
        }
    }
    if let Some(i) = out.rfind("expected ") {
        let what = &out[i + "expected ".len()..];
        if let Some(words) = type_in_words(what) {
            out = format!("{}expected {words}", &out[..i]);
        }
    }
    if let Some(hint) = did_you_mean(message) {
        out.push_str(&format!("; did you mean `{hint}`?"));
    }
    out
}

fn type_in_words(rust: &str) -> Option<String> {
    let words = match rust {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number (0 or more)",
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number",
        "f32" | "f64" => "a number",
        "a boolean" | "bool" => "true or false",
        "a map" => "a mapping",
        "a sequence" => "a list",
        "char" => "a single character",
        _ if rust.starts_with("struct ") => "a mapping of options",
        _ if rust.starts_with("internally tagged enum ") => "a mapping with a `type`",
        _ if rust.starts_with("enum ") => "one of the documented values",
        _ => return None,
    };
    Some(words.to_string())
}

/// For `unknown field `bach`, expected one of `batch`, ...`: the closest expected name.
fn did_you_mean(message: &str) -> Option<String> {
    let rest = message
        .strip_prefix("unknown field `")
        .or_else(|| message.strip_prefix("unknown variant `"))?;
    let (given, expected) = rest.split_once('`')?;
    let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    let (best, distance) = candidates
        .iter()
        .map(|c| (*c, edit_distance(given, c)))
        .min_by_key(|(_, d)| *d)?;
    let limit = given
        .chars()
        .count()
        .max(best.chars().count())
        .div_ceil(3)
        .min(3);
    (distance <= limit).then(|| best.to_string())
}

/// Levenshtein distance, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// `#[serde(deserialize_with = "sluice_sdk::config::string_list")]` for a list option that
/// also accepts one string of comma-separated items, as an environment variable gives it
/// (`topics: ${KAFKA_TOPICS}` with `KAFKA_TOPICS=a,b`). Items are trimmed; empty ones are
/// dropped.
pub fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<String>),
        One(String),
    }
    match Raw::deserialize(d).map_err(|_| {
        D::Error::custom("expected a list of strings, or one comma-separated string")
    })? {
        Raw::List(l) => Ok(l),
        Raw::One(s) => Ok(s
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect()),
    }
}

/// Parses `200ms`, `30s`, `1h 5m` (humantime).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| format!("invalid duration `{text}`: {e}"))
}

/// Parses `512`, `64KiB`, `1MiB`, `5MB`, `1GiB` into bytes.
pub fn parse_byte_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid size `{text}`: expected a number with an optional unit"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" | "b" => 1,
        "KiB" | "Ki" => 1 << 10,
        "MiB" | "Mi" => 1 << 20,
        "GiB" | "Gi" => 1 << 30,
        "KB" | "kB" | "K" | "k" => 1_000,
        "MB" | "M" => 1_000_000,
        "GB" | "G" => 1_000_000_000,
        other => {
            return Err(format!(
                "invalid size unit `{other}` in `{text}` (use B, KiB, MiB, GiB, KB, MB, GB)"
            ))
        }
    };
    Ok((n * mult as f64) as u64)
}

/// `#[serde(with = "sluice_sdk::config::duration")]` for a humantime duration.
pub mod duration {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map_err(D::Error::custom)
    }
}

/// `#[serde(default, with = "sluice_sdk::config::opt_duration")]` for an optional duration.
pub mod opt_duration {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) => parse_duration(&s).map(Some).map_err(D::Error::custom),
        }
    }
}

/// `#[serde(with = "sluice_sdk::config::byte_size")]` for a size: a number of bytes or a
/// string with a unit (`1MiB`).
pub mod byte_size {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d).map_err(|_| D::Error::custom("expected a size like 1MiB"))? {
            Raw::N(n) => Ok(n),
            Raw::S(s) => parse_byte_size(&s).map_err(D::Error::custom),
        }
    }
}

/// A credential. Its `Debug` and `Display` print `***` so it cannot leak into logs or errors.
#[derive(Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself, for building a request.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_byte_size("1MiB").unwrap(), 1 << 20);
        assert_eq!(parse_byte_size("5MB").unwrap(), 5_000_000);
        assert_eq!(parse_byte_size("512").unwrap(), 512);
        assert!(parse_byte_size("1XB").is_err());
    }

    #[test]
    fn messages_in_words_with_suggestions() {
        assert_eq!(
            humanize("invalid type: string \"lots\", expected usize"),
            "invalid type: string \"lots\", expected a whole number (0 or more)"
        );
        assert_eq!(
            humanize("unknown field `bach`, expected one of `name`, `batch`, `retry`"),
            "unknown field `bach`, expected one of `name`, `batch`, `retry`; did you mean `batch`?"
        );
        assert_eq!(
            humanize("unknown field `valeu`, expected `field` or `value`"),
            "unknown field `valeu`, expected `field` or `value`; did you mean `value`?"
        );
        assert_eq!(
            humanize("unknown field `zzzzzz`, expected `name` or `batch`"),
            "unknown field `zzzzzz`, expected `name` or `batch`"
        );
        assert_eq!(
            humanize("invalid type: map, expected a boolean"),
            "invalid type: a mapping, expected true or false"
        );
    }

    #[test]
    fn a_list_option_takes_one_comma_separated_string() {
        #[derive(Deserialize)]
        struct C {
            #[serde(deserialize_with = "string_list")]
            topics: Vec<String>,
        }
        let c: C = serde_json::from_value(serde_json::json!({"topics": "a, b,,c"})).unwrap();
        assert_eq!(c.topics, ["a", "b", "c"]);
        let c: C = serde_json::from_value(serde_json::json!({"topics": ["a,b"]})).unwrap();
        assert_eq!(c.topics, ["a,b"]);
    }

    #[test]
    fn errors_name_the_path() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Inner {
            port: u16,
        }
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct C {
            tls: Inner,
        }
        let e = from_value::<C>(serde_json::json!({"tls": {"port": "x"}})).unwrap_err();
        assert_eq!(e.path.as_deref(), Some("tls.port"));
        let e = from_value::<C>(serde_json::json!({"tls": {"port": 1}, "tsl": 1})).unwrap_err();
        assert_eq!(e.path.as_deref(), Some("tsl"));
        assert!(e.message.contains("unknown field"));
    }
}
