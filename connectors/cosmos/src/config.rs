//! What the user writes under `source:` for `type: cosmos_change_feed`.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Deserializer};
use sluice_sdk::config::Secret;
use sluice_sdk::ConfigError;

/// Configuration of the `cosmos_change_feed` source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CosmosConfig {
    /// Account endpoint, e.g. `https://myaccount.documents.azure.com:443/`.
    pub endpoint: String,
    /// The account's primary or secondary master key (base64), from the environment.
    pub key: Secret,
    pub database: String,
    pub container: String,
    /// Where to start when no checkpoint is stored: `beginning` (default), `now`, or an
    /// RFC 3339 time.
    #[serde(default)]
    pub start_from: StartFrom,
    /// `x-ms-max-item-count` per change-feed request. A page can hold more when one
    /// transaction changed more documents.
    #[serde(default = "default_max_items")]
    pub max_items_per_page: u32,
    /// How long a range waits after `304 Not Modified` before asking again.
    #[serde(
        default = "default_poll_interval",
        with = "sluice_sdk::config::duration"
    )]
    pub poll_interval: Duration,
    #[serde(default)]
    pub mode: Mode,
}

fn default_max_items() -> u32 {
    100
}

fn default_poll_interval() -> Duration {
    Duration::from_secs(1)
}

/// Start position of a range that has no checkpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StartFrom {
    #[default]
    Beginning,
    Now,
    Time(SystemTime),
}

impl<'de> Deserialize<'de> for StartFrom {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.trim() {
            "beginning" => Ok(StartFrom::Beginning),
            "now" => Ok(StartFrom::Now),
            t => chrono::DateTime::parse_from_rfc3339(t)
                .map(|dt| StartFrom::Time(SystemTime::from(dt)))
                .map_err(|e| {
                    serde::de::Error::custom(format!(
                        "expected `beginning`, `now` or an RFC 3339 time like \
                         2024-06-11T08:00:00Z, got `{t}` ({e})"
                    ))
                }),
        }
    }
}

/// Change-feed mode.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Latest version of each changed document (`A-IM: Incremental feed`); no deletes.
    #[default]
    LatestVersion,
    /// Every create, replace and delete as a `{current, previous, metadata}` envelope
    /// (`A-IM: Full-Fidelity Feed`).
    AllVersionsAndDeletes,
}

impl CosmosConfig {
    /// Checks what can be checked without I/O and returns the decoded master key.
    pub fn validate(&self) -> Result<Vec<u8>, ConfigError> {
        let url = reqwest::Url::parse(&self.endpoint)
            .map_err(|e| ConfigError::at("endpoint", format!("not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ConfigError::at("endpoint", "must be an http(s) URL"));
        }
        let key = crate::auth::decode_key(self.key.expose())
            .map_err(|_| ConfigError::at("key", "the master key must be base64"))?;
        if self.database.is_empty() {
            return Err(ConfigError::at("database", "must not be empty"));
        }
        if self.container.is_empty() {
            return Err(ConfigError::at("container", "must not be empty"));
        }
        if self.max_items_per_page == 0 {
            return Err(ConfigError::at("max_items_per_page", "must be at least 1"));
        }
        if self.mode == Mode::AllVersionsAndDeletes && self.start_from != StartFrom::Now {
            // The service answers 400 to any other start in this mode.
            return Err(ConfigError::at(
                "start_from",
                "mode all_versions_and_deletes can only start from `now` (or a checkpoint)",
            ));
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: serde_json::Value) -> Result<CosmosConfig, ConfigError> {
        sluice_sdk::config::from_value(v)
    }

    fn base() -> serde_json::Value {
        serde_json::json!({
            "endpoint": "https://acct.documents.azure.com:443/",
            "key": "a2V5",
            "database": "grc",
            "container": "changes",
        })
    }

    #[test]
    fn defaults() {
        let c = parse(base()).unwrap();
        assert_eq!(c.start_from, StartFrom::Beginning);
        assert_eq!(c.mode, Mode::LatestVersion);
        assert_eq!(c.max_items_per_page, 100);
        assert_eq!(c.poll_interval, Duration::from_secs(1));
        assert_eq!(c.validate().unwrap(), b"key");
    }

    #[test]
    fn start_from_time_and_errors() {
        let mut v = base();
        v["start_from"] = "2024-06-11T08:12:31Z".into();
        let c = parse(v.clone()).unwrap();
        let StartFrom::Time(t) = c.start_from else {
            panic!("not a time")
        };
        assert_eq!(httpdate::fmt_http_date(t), "Tue, 11 Jun 2024 08:12:31 GMT");

        v["start_from"] = "yesterday".into();
        let e = parse(v).unwrap_err();
        assert_eq!(e.path.as_deref(), Some("start_from"));

        let mut v = base();
        v["modee"] = "x".into();
        assert!(parse(v).unwrap_err().message.contains("unknown field"));

        let mut v = base();
        v["key"] = "not base64!".into();
        assert_eq!(
            parse(v).unwrap().validate().unwrap_err().path.as_deref(),
            Some("key")
        );

        let mut v = base();
        v["mode"] = "all_versions_and_deletes".into();
        assert_eq!(
            parse(v).unwrap().validate().unwrap_err().path.as_deref(),
            Some("start_from")
        );
    }
}
