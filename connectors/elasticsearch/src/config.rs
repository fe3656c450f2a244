//! What the user writes under `sink:` for `type: elasticsearch`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use sluice_sdk::config::{byte_size, duration, Secret};

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
    #[serde(default)]
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

/// Server certificate checks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// PEM file with the CA (or chain) that signed the server certificate.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// `false` disables every check; for diagnosis only.
    #[serde(default = "yes")]
    pub verify_certificate: bool,
}

impl Default for Tls {
    fn default() -> Self {
        Tls {
            ca_file: None,
            verify_certificate: true,
        }
    }
}

fn yes() -> bool {
    true
}

/// Request body compression.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    #[default]
    None,
    Gzip,
}
