//! The `http_server` source's options.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use sluice_sdk::config::Secret;

use crate::wal::{Fsync, Retain};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpServerConfig {
    /// Address to listen on (`0.0.0.0:3003`).
    pub listen: String,
    #[serde(default)]
    pub paths: Paths,
    pub tls: Option<TlsConfig>,
    pub auth: Option<AuthConfig>,
    /// The event field that names its tenant.
    #[serde(default = "default_tenant_field")]
    pub tenant_field: String,
    /// Events per second each tenant may post.
    pub rate_limit: Option<RateLimitConfig>,
    /// A JSON Schema (draft 2020-12) every event must satisfy.
    pub schema: Option<PathBuf>,
    /// Largest request body, after gzip decompression (413 above).
    #[serde(
        default = "default_max_body_bytes",
        with = "sluice_sdk::config::byte_size"
    )]
    pub max_body_bytes: u64,
    /// Most events in one request (413 above).
    #[serde(default = "default_max_events")]
    pub max_events_per_request: usize,
    /// When answers wait for an fsync: `always` or `{ interval: 10ms }`.
    #[serde(default)]
    pub fsync: FsyncConfig,
    /// Cap on the write-ahead log's disk use (503 at the cap).
    #[serde(default = "default_max_bytes", with = "sluice_sdk::config::byte_size")]
    pub max_bytes: u64,
    /// Undelivered bytes in the log above which requests get 503 (default: half of `max_bytes`).
    #[serde(default, deserialize_with = "opt_byte_size")]
    pub high_water_bytes: Option<u64>,
    /// Size at which a log segment is closed and a new one started.
    #[serde(
        default = "default_segment_bytes",
        with = "sluice_sdk::config::byte_size"
    )]
    pub segment_bytes: u64,
    /// Keep delivered segments for `sluice replay`: `{ max_age: 24h, max_bytes: 512MiB }`
    /// (either or both). Default: deleted as soon as they are delivered.
    pub retain_delivered: Option<RetainConfig>,
    /// `Retry-After` sent with a 503.
    #[serde(default = "default_retry_after", with = "sluice_sdk::config::duration")]
    pub retry_after: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Paths {
    #[serde(default = "default_single")]
    pub single: String,
    #[serde(default = "default_bulk")]
    pub bulk: String,
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            single: default_single(),
            bulk: default_bulk(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Require client certificates signed by this CA (mutual TLS).
    pub client_ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Tenant name to its bearer token.
    pub tokens: BTreeMap<String, Secret>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    pub events_per_second: u32,
    /// Events a tenant may post at once (default: one second's worth).
    pub burst: Option<u32>,
}

/// `retain_delivered: { max_age: 24h, max_bytes: 512MiB }`: delivered segments are kept while
/// within both limits (an absent one is no limit), deleted oldest first.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RetainConfig {
    #[serde(default, with = "sluice_sdk::config::opt_duration")]
    pub max_age: Option<Duration>,
    #[serde(default, deserialize_with = "opt_byte_size")]
    pub max_bytes: Option<u64>,
}

impl RetainConfig {
    pub fn retain(self) -> Retain {
        Retain {
            max_age: self.max_age,
            max_bytes: self.max_bytes,
        }
    }
}

/// `fsync: always` or `fsync: { interval: 10ms }`.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FsyncConfig {
    #[default]
    Always,
    Interval(#[serde(with = "sluice_sdk::config::duration")] Duration),
}

impl FsyncConfig {
    pub fn mode(self) -> Fsync {
        match self {
            FsyncConfig::Always => Fsync::Always,
            FsyncConfig::Interval(d) => Fsync::Interval(d),
        }
    }
}

fn opt_byte_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    sluice_sdk::config::byte_size::deserialize(d).map(Some)
}

fn default_tenant_field() -> String {
    "tenantId".into()
}
fn default_single() -> String {
    "/events".into()
}
fn default_bulk() -> String {
    "/events/bulk".into()
}
fn default_max_body_bytes() -> u64 {
    10 * 1024 * 1024
}
fn default_max_events() -> usize {
    10_000
}
fn default_max_bytes() -> u64 {
    1024 * 1024 * 1024
}
fn default_segment_bytes() -> u64 {
    64 * 1024 * 1024
}
fn default_retry_after() -> Duration {
    Duration::from_secs(1)
}
