//! What the user writes under `sink:` for `type: http`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use serde_json::Value;
use sluice_sdk::config::{duration, Secret};
use sluice_sdk::http::{Compression, TlsConfig};

use crate::body::BatchFormat;

/// Configuration of the `http` sink.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Where each call goes; `{{ field.path }}` references in the path and query.
    pub url: String,
    /// `POST` (default), `PUT`, `PATCH`, `DELETE` or `GET`.
    #[serde(default = "default_method")]
    pub method: String,
    /// Extra headers, fixed text or `{{ field }}` templates. Values are never logged.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// What a call carries: `record` (the record's value as it is) or `{ template: {...} }`.
    #[serde(default)]
    pub body: BodyConfig,
    /// One request per batch instead of one per record: `json_array` or `ndjson`.
    #[serde(default)]
    pub batch: Option<BatchFormat>,
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// Per-status overrides of the answer table: `{ 404: reject, 409: delivered }`.
    #[serde(default)]
    pub responses: BTreeMap<StatusKey, Action>,
    /// A header carrying a key that identifies the call, so the API applies a resent call once.
    #[serde(default)]
    pub idempotency_key: Option<IdempotencyKeyConfig>,
    /// Timeout of one call (connect, send, answer).
    #[serde(default = "default_timeout", with = "duration")]
    pub request_timeout: Duration,
    /// Calls in flight at once, each for a different source partition.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Request body compression; default `none` (not every API takes gzip bodies).
    #[serde(default = "no_compression")]
    pub compression: Compression,
    /// Whether each source partition's calls are made one after another, in order.
    #[serde(default)]
    pub ordering: Ordering,
}

/// `ordering:` of the calls of one record each.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ordering {
    /// A partition's calls one after another, in source order, across batches too.
    #[default]
    Partition,
    /// Any call may overlap any other, up to `max_in_flight`: for an API whose calls do not
    /// depend on each other's order.
    None,
}

fn default_method() -> String {
    "POST".into()
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_max_in_flight() -> usize {
    4
}

fn no_compression() -> Compression {
    Compression::None
}

/// `body: record` or `body: { template: {...} }`.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum BodyConfig {
    #[default]
    Record,
    Template(Value),
}

impl<'de> Deserialize<'de> for BodyConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            template: Value,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Name(String),
            Table(Table),
        }
        const EXPECTED: &str = "expected `record` or `{ template: {...} }`";
        match Raw::deserialize(d).map_err(|_| serde::de::Error::custom(EXPECTED))? {
            Raw::Name(n) if n == "record" => Ok(BodyConfig::Record),
            Raw::Name(n) => Err(serde::de::Error::custom(format!(
                "unknown body `{n}`: {EXPECTED}"
            ))),
            Raw::Table(t) => Ok(BodyConfig::Template(t.template)),
        }
    }
}

/// `auth: { type: bearer | basic | header | oauth2, ... }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthConfig {
    /// `Authorization: Bearer <token>`.
    Bearer { token: Secret },
    /// `Authorization: Basic base64(username:password)`.
    Basic { username: String, password: Secret },
    /// Any header (`Authorization: Token …`, `X-API-Key: …`).
    Header { name: String, value: Secret },
    /// OAuth 2.0 client credentials grant (RFC 6749 §4.4).
    Oauth2 {
        token_url: String,
        client_id: String,
        client_secret: Secret,
        #[serde(default)]
        scope: Option<String>,
        /// How the client authenticates at the token endpoint: `basic` (HTTP Basic, the
        /// default RFC 6749 §2.3.1 asks servers to support) or `body` (form parameters).
        #[serde(default)]
        client_auth: ClientAuth,
    },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    #[default]
    Basic,
    Body,
}

/// What an answer with a given status means, when `responses:` overrides the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Taken (a 409 from an idempotent API: already done).
    Delivered,
    /// Refused for good: dead-lettered.
    Reject,
    /// Tried again with backoff up to `retry.max_attempts`, then dead-lettered.
    Retry,
    /// The API cannot take calls now: resent with backoff, never dead-lettered.
    Unavailable,
}

/// A key of `responses:` as written: `409` (a YAML number) or `"409"`; checked when the sink is
/// built, so an error points at it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct StatusKey(pub String);

impl<'de> Deserialize<'de> for StatusKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = StatusKey;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an HTTP status code")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<StatusKey, E> {
                Ok(StatusKey(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<StatusKey, E> {
                Ok(StatusKey(v.to_string()))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<StatusKey, E> {
                Ok(StatusKey(v.to_string()))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// `idempotency_key: { header, template }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdempotencyKeyConfig {
    #[serde(default = "default_idempotency_header")]
    pub header: String,
    pub template: String,
}

fn default_idempotency_header() -> String {
    "Idempotency-Key".into()
}
