//! What the user writes under `sink:` for `type: redis`.

use std::time::Duration;

use serde::Deserialize;
use sluice_sdk::config::{duration, opt_duration, Secret};
use sluice_sdk::template::Template;
use sluice_sdk::ConfigError;

/// `redis` sink configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:6379[/db]`, or `rediss://` for TLS. From the
    /// environment: `url: "${REDIS_URL}"`.
    pub url: Secret,
    /// What each record becomes.
    pub mode: Mode,
    /// Key (or channel for `publish`), templated from record fields: `audit:{{ tenant_id }}`.
    pub key: Template,
    /// `stream`: cap the stream near this length (`XADD MAXLEN ~ n`).
    #[serde(default)]
    pub maxlen: Option<u64>,
    /// `stream`/`hash`: record fields (dotted paths) to copy as entry fields; `"*"` copies
    /// every top-level field.
    #[serde(default)]
    pub fields: Vec<String>,
    /// `stream`/`hash`: entry field holding the whole record. Default `payload` when
    /// `fields` is empty, none otherwise.
    #[serde(default)]
    pub payload_field: Option<String>,
    /// `set`: expiry of the key (`SET ... PX`); `hash`/`list`/`stream`: `PEXPIRE` after
    /// each write.
    #[serde(default, with = "opt_duration")]
    pub ttl: Option<Duration>,
    #[serde(default = "default_connect_timeout", with = "duration")]
    pub connect_timeout: Duration,
    /// A batch not answered within this time counts as a lost connection.
    #[serde(default = "default_request_timeout", with = "duration")]
    pub request_timeout: Duration,
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}

/// What each record becomes in Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// `XADD key * field value ...`
    Stream,
    /// `HSET key field value ...`
    Hash,
    /// `RPUSH key <record>`
    List,
    /// `PUBLISH key <record>`
    Publish,
    /// `SET key <record> [PX ttl]`
    Set,
}

/// Which entry fields a stream entry or hash gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryFields {
    /// Every top-level field of the record.
    pub all: bool,
    /// Dotted paths; the path is the entry field name.
    pub paths: Vec<String>,
    pub payload: Option<String>,
}

impl EntryFields {
    pub fn needs_json(&self) -> bool {
        self.all || !self.paths.is_empty()
    }
}

/// A checked configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub mode: Mode,
    pub key: Template,
    pub maxlen: Option<u64>,
    pub fields: EntryFields,
    pub ttl_ms: Option<u64>,
}

impl RedisConfig {
    /// Checks the configuration without touching the network.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        if redis::Client::open(self.url.expose()).is_err() {
            // The parser's message could quote the URL and its password.
            return Err(ConfigError::at(
                "url",
                "not a valid Redis URL (redis://host:6379, rediss:// for TLS)",
            ));
        }
        let entry_modes = matches!(self.mode, Mode::Stream | Mode::Hash);
        if self.maxlen.is_some() && self.mode != Mode::Stream {
            return Err(ConfigError::at(
                "maxlen",
                "maxlen applies to mode: stream only",
            ));
        }
        if !entry_modes && !self.fields.is_empty() {
            return Err(ConfigError::at(
                "fields",
                "fields apply to mode: stream and hash only",
            ));
        }
        if !entry_modes && self.payload_field.is_some() {
            return Err(ConfigError::at(
                "payload_field",
                "payload_field applies to mode: stream and hash only",
            ));
        }
        if self.mode == Mode::Publish && self.ttl.is_some() {
            return Err(ConfigError::at("ttl", "a published message has no expiry"));
        }
        let ttl_ms = match self.ttl {
            Some(d) if d.as_millis() == 0 => {
                return Err(ConfigError::at("ttl", "ttl must be at least 1ms"))
            }
            Some(d) => Some(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            None => None,
        };
        let all = self.fields.iter().any(|f| f == "*");
        let paths: Vec<String> = self.fields.iter().filter(|f| *f != "*").cloned().collect();
        if paths.iter().any(String::is_empty) {
            return Err(ConfigError::at("fields", "empty field path"));
        }
        let payload = match &self.payload_field {
            Some(p) if p.is_empty() => {
                return Err(ConfigError::at("payload_field", "must not be empty"))
            }
            Some(p) => Some(p.clone()),
            None if self.fields.is_empty() => Some("payload".to_string()),
            None => None,
        };
        Ok(Settings {
            mode: self.mode,
            key: self.key.clone(),
            maxlen: self.maxlen,
            fields: EntryFields {
                all,
                paths,
                payload,
            },
            ttl_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings(v: serde_json::Value) -> Result<Settings, ConfigError> {
        sluice_sdk::config::from_value::<RedisConfig>(v)?.settings()
    }

    #[test]
    fn stream_defaults_to_a_payload_field() {
        let s = settings(json!({"url": "redis://127.0.0.1:6379", "mode": "stream",
            "key": "audit:{{ tenant_id }}", "maxlen": 1000}))
        .unwrap();
        assert_eq!(s.fields.payload.as_deref(), Some("payload"));
        assert!(!s.fields.needs_json());
        let s = settings(json!({"url": "redis://h", "mode": "hash", "key": "k",
            "fields": ["*"]}))
        .unwrap();
        assert!(s.fields.all && s.fields.payload.is_none());
    }

    #[test]
    fn rejects_options_of_other_modes() {
        let e = settings(json!({"url": "redis://h", "mode": "list", "key": "k", "maxlen": 5}))
            .unwrap_err();
        assert_eq!(e.path.as_deref(), Some("maxlen"));
        let e = settings(json!({"url": "redis://h", "mode": "publish", "key": "k", "ttl": "1s"}))
            .unwrap_err();
        assert_eq!(e.path.as_deref(), Some("ttl"));
        let e = settings(json!({"url": "redis://h", "mode": "stream", "key": "k", "fields": 3}))
            .unwrap_err();
        assert_eq!(e.path.as_deref(), Some("fields"));
        let e = settings(json!({"url": "redis://h", "mode": "queue", "key": "k"})).unwrap_err();
        assert_eq!(e.path.as_deref(), Some("mode"));
    }

    #[test]
    fn bad_url_is_not_echoed() {
        let e =
            settings(json!({"url": "http://u:s3cret@h", "mode": "list", "key": "k"})).unwrap_err();
        assert!(!e.message.contains("s3cret"));
    }
}
