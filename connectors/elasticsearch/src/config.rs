//! What the user writes under `sink:` for `type: elasticsearch`.

use std::time::Duration;

use serde::{Deserialize, Deserializer};
use sluice_sdk::config::{byte_size, duration, Secret};
use sluice_sdk::http::{Compression, TlsConfig};

/// Configuration of the `elasticsearch` sink.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EsConfig {
    /// Node URLs (`https://es1:9200`), used round-robin. Exclusive with `cloud_id`.
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// Elastic Cloud deployment id; replaces `endpoints`.
    #[serde(default)]
    pub cloud_id: Option<String>,
    /// Target index: literal text with `%Y %y %m %d %H %j %G %V %%` taken from the record's time
    /// (UTC) and `{{ field.path }}` taken from the record (`audit-%Y.%m.%d`).
    pub index: String,
    /// Bulk action for every record.
    #[serde(default)]
    pub op_type: OpType,
    /// Field holding the document id. Absent: `<topic>-<partition>-<offset>-<digest>`, the
    /// record's origin and 128 bits of SHA-256 of its key and value, so a replay of the same
    /// record overwrites (`index`) or conflicts (`create`) instead of duplicating, and a
    /// different record at a reused position is written as a document of its own.
    #[serde(default)]
    pub id_field: Option<String>,
    /// Dotted path of the field holding the event time (RFC 3339 or epoch, as `splunk_hec`'s
    /// `time_field`) that fills the `index` date parts. Missing or not a time: the record's
    /// time, then the current time.
    #[serde(default)]
    pub time_field: Option<String>,
    #[serde(default)]
    pub auth: Option<Auth>,
    #[serde(default)]
    pub tls: Tls,
    /// `none` (the default), `gzip` or `{ algorithm: gzip, level: N }`.
    #[serde(default = "no_compression")]
    pub compression: Compression,
    /// Upper bound of one `_bulk` body before compression; a larger batch is sent as several
    /// requests. Keep it under the cluster's `http.max_content_length` (100mb by default).
    #[serde(default = "default_max_request_bytes", with = "byte_size")]
    pub max_request_bytes: u64,
    /// Timeout of one HTTP request.
    #[serde(default = "default_timeout", with = "duration")]
    pub request_timeout: Duration,
    /// Ingest pipeline applied to every document (`?pipeline=`).
    #[serde(default)]
    pub pipeline: Option<String>,
}

fn default_max_request_bytes() -> u64 {
    10 * 1024 * 1024
}

fn default_timeout() -> Duration {
    Duration::from_secs(60)
}

/// The bulk action written for each record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpType {
    /// Add or replace the document.
    #[default]
    Index,
    /// Add only if the id is new (required for data streams). A conflict on an explicit id
    /// means an earlier attempt already wrote it, so it counts as delivered.
    Create,
}

impl OpType {
    pub fn as_str(self) -> &'static str {
        match self {
            OpType::Index => "index",
            OpType::Create => "create",
        }
    }
}

/// How to authenticate.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Auth {
    Basic {
        username: String,
        password: Secret,
    },
    /// With `id`: `key` is the raw API key and `id:key` is encoded; without: `key` is Elastic's
    /// already encoded value, sent verbatim.
    ApiKey {
        #[serde(default)]
        id: Option<String>,
        key: Secret,
    },
    Bearer {
        token: Secret,
    },
}

fn no_compression() -> Compression {
    Compression::None
}

/// The shared `tls` options, plus `verify_certificate`: the spelling `insecure_skip_verify`
/// replaced (inverted), accepted for one release.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tls {
    pub config: TlsConfig,
    /// `verify_certificate`, when it was written.
    pub verify_certificate: Option<bool>,
}

impl<'de> Deserialize<'de> for Tls {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut map = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        let verify_certificate = match map.remove("verify_certificate") {
            None => None,
            Some(v) => Some(serde_json::from_value::<bool>(v).map_err(|_| {
                serde::de::Error::custom("`verify_certificate` expects true or false")
            })?),
        };
        let config = serde_json::from_value::<TlsConfig>(serde_json::Value::Object(map))
            .map_err(serde::de::Error::custom)?;
        Ok(Tls {
            config,
            verify_certificate,
        })
    }
}

impl Tls {
    /// Refuses both spellings at once; no I/O, no log.
    pub fn check(&self) -> Result<(), sluice_sdk::ConfigError> {
        self.config.validate("tls")?;
        if self.config.cert_file.is_some() {
            return Err(sluice_sdk::ConfigError::at(
                "tls.cert_file",
                "client certificates are not supported by the Elasticsearch client; use `auth`",
            ));
        }
        if self.verify_certificate.is_some() && self.config.insecure_skip_verify {
            return Err(sluice_sdk::ConfigError::at(
                "tls.verify_certificate",
                "set `insecure_skip_verify` only: `verify_certificate` is its deprecated spelling",
            ));
        }
        Ok(())
    }

    /// The shared options with the deprecated spelling folded in; warns when it is used, so
    /// call it once when the sink opens.
    pub fn resolve(&self) -> TlsConfig {
        let mut config = self.config.clone();
        if let Some(verify) = self.verify_certificate {
            tracing::warn!(
                connector = "elasticsearch",
                "tls.verify_certificate is {verify}: option `tls.verify_certificate` is \
                 deprecated and will be removed in the next release: write \
                 `tls.insecure_skip_verify: {}`",
                !verify
            );
            config.insecure_skip_verify |= !verify;
        }
        config
    }
}
