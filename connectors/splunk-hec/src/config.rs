//! What the user writes under `sink: { type: splunk_hec, ... }`, and its validation.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use sluice_sdk::config::Secret;
use sluice_sdk::http::{Compression, Deprecations, TlsConfig};
use sluice_sdk::template::Template;
use sluice_sdk::ConfigError;
use url::Url;

/// Splunk Cloud refuses requests over about 1 MB; Enterprise allows far more.
pub const DEFAULT_MAX_REQUEST_BYTES: u64 = 1 << 20;
/// Timeout of one HTTP request unless `request_timeout` says otherwise.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Configuration of the `splunk_hec` sink.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HecConfig {
    /// Base URL of one HEC listener, e.g. `https://splunk:8088`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Several listeners, used round-robin; a request that cannot be delivered to one is tried
    /// on the next.
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// HEC token (a GUID), sent as `Authorization: Splunk <token>`.
    pub token: Secret,
    #[serde(default)]
    pub index: Option<Template>,
    #[serde(default)]
    pub source: Option<Template>,
    #[serde(default)]
    pub sourcetype: Option<Template>,
    #[serde(default)]
    pub host: Option<Template>,
    /// Dotted path of the record field holding the event time (RFC 3339 or epoch).
    #[serde(default)]
    pub time_field: Option<String>,
    /// Index-time fields: flat map of names to string values (templates allowed).
    #[serde(default)]
    pub fields: BTreeMap<String, Template>,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Timeout of one HTTP request (default 30s); read it with
    /// [`request_timeout`](HecConfig::request_timeout).
    #[serde(default, with = "sluice_sdk::config::opt_duration")]
    pub request_timeout: Option<Duration>,
    /// `request_timeout`'s deprecated spelling.
    #[serde(default, rename = "timeout", with = "sluice_sdk::config::opt_duration")]
    pub deprecated_timeout: Option<Duration>,
    #[serde(default)]
    pub endpoint_kind: EndpointKind,
    /// `gzip` (level 1, the default), `none`, or `{ algorithm: gzip, level: N }`.
    #[serde(default = "Compression::gzip")]
    pub compression: Compression,
    /// Upper bound of one request body before compression (default 1MiB); larger batches are
    /// split. Read it with [`max_request_bytes`](HecConfig::max_request_bytes).
    #[serde(default, deserialize_with = "opt_byte_size")]
    pub max_request_bytes: Option<u64>,
    /// `max_request_bytes`'s deprecated spelling.
    #[serde(default, rename = "max_bytes", deserialize_with = "opt_byte_size")]
    pub deprecated_max_bytes: Option<u64>,
    /// Wait for indexer acknowledgement before reporting records delivered.
    #[serde(default)]
    pub acknowledgements: bool,
    /// How long to wait for an ackId to become true before resending the batch.
    #[serde(default = "default_ack_timeout", with = "sluice_sdk::config::duration")]
    pub ack_timeout: Duration,
    /// How often pending ackIds are queried.
    #[serde(
        default = "default_ack_poll_interval",
        with = "sluice_sdk::config::duration"
    )]
    pub ack_poll_interval: Duration,
}

/// Which HEC endpoint receives the events.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointKind {
    /// `/services/collector/event`: one JSON envelope per record, with metadata and time.
    #[default]
    Event,
    /// `/services/collector/raw`: record values as lines; Splunk extracts timestamps.
    Raw,
}

/// A size option that may be absent.
fn opt_byte_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    sluice_sdk::config::byte_size::deserialize(d).map(Some)
}
fn default_ack_timeout() -> Duration {
    Duration::from_secs(120)
}
fn default_ack_poll_interval() -> Duration {
    Duration::from_secs(1)
}

impl HecConfig {
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
            .or(self.deprecated_timeout)
            .unwrap_or(DEFAULT_REQUEST_TIMEOUT)
    }

    pub fn max_request_bytes(&self) -> u64 {
        self.max_request_bytes
            .or(self.deprecated_max_bytes)
            .unwrap_or(DEFAULT_MAX_REQUEST_BYTES)
    }

    /// The deprecated spellings in use, to warn about when the sink opens.
    pub fn deprecations(&self) -> Result<Deprecations, ConfigError> {
        let mut d = Deprecations::default();
        d.renamed(
            ("request_timeout", self.request_timeout),
            ("timeout", self.deprecated_timeout),
        )?;
        d.renamed(
            ("max_request_bytes", self.max_request_bytes),
            ("max_bytes", self.deprecated_max_bytes),
        )?;
        Ok(d)
    }

    /// Checks what can be checked without I/O and returns the endpoint base URLs, without a
    /// trailing slash.
    pub fn validate(&self) -> Result<Vec<String>, ConfigError> {
        let (list, key): (Vec<&String>, &str) = match (&self.endpoint, self.endpoints.is_empty()) {
            (Some(_), false) => {
                return Err(ConfigError::new(
                    "set either `endpoint` or `endpoints`, not both",
                ))
            }
            (None, true) => return Err(ConfigError::new(
                "missing `endpoint` (or `endpoints`): the HEC base URL, e.g. https://splunk:8088",
            )),
            (Some(e), true) => (vec![e], "endpoint"),
            (None, false) => (self.endpoints.iter().collect(), "endpoints"),
        };
        let mut bases = Vec::with_capacity(list.len());
        for (i, text) in list.into_iter().enumerate() {
            let path = if key == "endpoint" {
                key.to_string()
            } else {
                format!("{key}[{i}]")
            };
            bases.push(parse_base(text).map_err(|m| ConfigError::at(path, m))?);
        }
        let token = self.token.expose();
        if token.trim().is_empty() {
            return Err(ConfigError::at("token", "the HEC token is empty"));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ConfigError::at(
                "token",
                "the HEC token contains spaces or non-ASCII characters",
            ));
        }
        let size_key = match self.max_request_bytes {
            None if self.deprecated_max_bytes.is_some() => "max_bytes",
            _ => "max_request_bytes",
        };
        if self.max_request_bytes() < 1024 {
            return Err(ConfigError::at(size_key, "must be at least 1KiB"));
        }
        if self.request_timeout().is_zero() {
            let key = match self.request_timeout {
                None if self.deprecated_timeout.is_some() => "timeout",
                _ => "request_timeout",
            };
            return Err(ConfigError::at(key, "must be greater than zero"));
        }
        if self.acknowledgements {
            if self.ack_poll_interval.is_zero() {
                return Err(ConfigError::at(
                    "ack_poll_interval",
                    "must be greater than zero",
                ));
            }
            if self.ack_timeout < self.ack_poll_interval {
                return Err(ConfigError::at(
                    "ack_timeout",
                    "must be at least `ack_poll_interval`",
                ));
            }
        }
        if let Some(tls) = &self.tls {
            tls.validate("tls")?;
        }
        if let Some(f) = &self.time_field {
            if f.trim().is_empty() {
                return Err(ConfigError::at("time_field", "empty field path"));
            }
        }
        if self.endpoint_kind == EndpointKind::Raw {
            self.validate_raw()?;
        }
        Ok(bases)
    }

    /// On /raw metadata travels in the query string, once per request, and Splunk extracts the
    /// time from the text: per-record values cannot be honoured, so refuse them.
    fn validate_raw(&self) -> Result<(), ConfigError> {
        for (key, t) in [
            ("index", &self.index),
            ("source", &self.source),
            ("sourcetype", &self.sourcetype),
            ("host", &self.host),
        ] {
            if t.as_ref().is_some_and(|t| !t.is_constant()) {
                return Err(ConfigError::at(
                    key,
                    "record field templates are not supported with `endpoint_kind: raw` \
                     (metadata is per request); use a fixed value or `endpoint_kind: event`",
                ));
            }
        }
        if self.time_field.is_some() {
            return Err(ConfigError::at(
                "time_field",
                "not supported with `endpoint_kind: raw`: Splunk extracts the time from the text",
            ));
        }
        if !self.fields.is_empty() {
            return Err(ConfigError::at(
                "fields",
                "index-time `fields` are only sent to the /event endpoint",
            ));
        }
        Ok(())
    }
}

/// `https://host:8088` or `https://proxy/prefix`; the collector paths are appended per request.
fn parse_base(text: &str) -> Result<String, String> {
    let url: Url = sluice_sdk::http::endpoint_url(text, "put the HEC token in `token`")
        .map_err(|e| e.to_string())?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "`{text}`: give the base URL without query or fragment"
        ));
    }
    if url.path().contains("/services/collector") {
        return Err(format!(
            "`{text}`: give the base URL (e.g. https://splunk:8088); the sink appends \
             /services/collector/... itself"
        ));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sluice_sdk::config::from_value;

    fn cfg(v: serde_json::Value) -> Result<HecConfig, ConfigError> {
        from_value::<HecConfig>(v)
    }

    #[test]
    fn defaults() {
        let c = cfg(json!({"endpoint": "https://splunk:8088/", "token": "t"})).unwrap();
        assert_eq!(
            c.validate().unwrap(),
            vec!["https://splunk:8088".to_string()]
        );
        assert_eq!(c.compression, Compression::Gzip { level: 1 });
        assert_eq!(c.endpoint_kind, EndpointKind::Event);
        assert_eq!(c.max_request_bytes(), 1 << 20);
        assert_eq!(c.request_timeout(), Duration::from_secs(30));
        assert_eq!(c.deprecations().unwrap(), Deprecations::default());
        assert!(!c.acknowledgements);
        assert!(c.tls.is_none());
        let c = cfg(json!({"endpoint": "https://s:8088", "token": "t", "tls": {"ca_file": "/x"}}))
            .unwrap();
        assert!(!c.tls.unwrap().insecure_skip_verify);
    }

    #[test]
    fn endpoints_are_checked() {
        let both =
            cfg(json!({"endpoint": "http://a", "endpoints": ["http://b"], "token": "t"})).unwrap();
        assert!(both.validate().unwrap_err().message.contains("not both"));
        let none = cfg(json!({"token": "t"})).unwrap();
        assert!(none.validate().is_err());
        let bad = cfg(json!({"endpoints": ["http://a:8088", "ftp://b"], "token": "t"})).unwrap();
        let e = bad.validate().unwrap_err();
        assert_eq!(e.path.as_deref(), Some("endpoints[1]"));
        let full =
            cfg(json!({"endpoint": "http://a/services/collector/event", "token": "t"})).unwrap();
        assert!(full.validate().unwrap_err().message.contains("base URL"));
        let prefixed =
            cfg(json!({"endpoint": "https://lb.example/splunk/", "token": "t"})).unwrap();
        assert_eq!(
            prefixed.validate().unwrap(),
            vec!["https://lb.example/splunk"]
        );
    }

    #[test]
    fn typos_and_bad_values_are_errors() {
        let e = cfg(json!({"endpoint": "http://a", "token": "t", "indx": "main"})).unwrap_err();
        assert_eq!(e.path.as_deref(), Some("indx"));
        let e =
            cfg(json!({"endpoint": "http://a", "token": "t", "compression": "zstd"})).unwrap_err();
        assert_eq!(e.path.as_deref(), Some("compression"));
        let e = cfg(json!({"endpoint": "http://a", "token": "t", "tls": {"insecure": true}}))
            .unwrap_err();
        assert_eq!(e.path.as_deref(), Some("tls.insecure"));
        let c =
            cfg(json!({"endpoint": "http://a", "token": "t", "tls": {"cert_file": "/c"}})).unwrap();
        assert!(c.validate().is_err());
    }

    #[test]
    fn old_spellings_are_accepted_but_not_with_the_new_ones() {
        let c = cfg(
            json!({"endpoint": "http://a", "token": "t", "timeout": "5s",
                           "max_bytes": "4KiB"}),
        )
        .unwrap();
        assert!(c.validate().is_ok());
        assert_eq!(c.request_timeout(), Duration::from_secs(5));
        assert_eq!(c.max_request_bytes(), 4096);
        assert_ne!(c.deprecations().unwrap(), Deprecations::default());
        let c = cfg(
            json!({"endpoint": "http://a", "token": "t", "timeout": "5s",
                           "request_timeout": "6s"}),
        )
        .unwrap();
        assert_eq!(
            c.deprecations().unwrap_err().path.as_deref(),
            Some("timeout")
        );
        let c = cfg(json!({"endpoint": "http://a", "token": "t", "max_bytes": 10})).unwrap();
        assert_eq!(c.validate().unwrap_err().path.as_deref(), Some("max_bytes"));
    }

    #[test]
    fn raw_refuses_per_record_metadata() {
        let c = cfg(
            json!({"endpoint": "http://a", "token": "t", "endpoint_kind": "raw",
                           "index": "{{ idx }}"}),
        )
        .unwrap();
        assert_eq!(c.validate().unwrap_err().path.as_deref(), Some("index"));
        let c = cfg(
            json!({"endpoint": "http://a", "token": "t", "endpoint_kind": "raw",
                           "index": "main", "sourcetype": "syslog"}),
        )
        .unwrap();
        assert!(c.validate().is_ok());
    }

    #[test]
    fn credentials_in_the_endpoint_are_refused_without_being_repeated() {
        for (key, url) in [
            ("endpoint", "https://admin:hunter2@splunk:8088"),
            ("endpoint", "https://splunk:8088/?token=hunter2"),
        ] {
            let e = cfg(json!({key: url, "token": "t"}))
                .unwrap()
                .validate()
                .unwrap_err();
            assert_eq!(e.path.as_deref(), Some(key));
            assert!(!e.to_string().contains("hunter2"), "{e}");
            assert!(e.message.contains("`token`"), "{e}");
        }
        let e = cfg(json!({"endpoints": ["https://a:8088", "https://u:hunter2@b"], "token": "t"}))
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(e.path.as_deref(), Some("endpoints[1]"));
    }

    #[test]
    fn token_never_printed() {
        let c = cfg(json!({"endpoint": "http://a", "token": "11111111-2222"})).unwrap();
        assert!(!format!("{c:?}").contains("11111111"));
    }
}
