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
        let message = e.into_inner().to_string();
        if path == "." || path.is_empty() {
            ConfigError::new(message)
        } else {
            ConfigError::at(path, message)
        }
    })
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
