//! What the user writes under `sink:` for `type: postgres`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use sluice_sdk::config::{duration, Secret};
use sluice_sdk::ConfigError;

/// `postgres` sink configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// `postgres://user:password@host:5432/db` (libpq URL or key=value form); take it from the
    /// environment: `url: "${PG_URL}"`.
    pub url: Secret,
    /// Transport security; `prefer` unless set.
    #[serde(default)]
    pub tls: TlsConfig,
    /// Target table, optionally schema-qualified (`audit.events`).
    pub table: String,
    /// Create the default audit table (and its indexes) when it does not exist.
    #[serde(default)]
    pub create_table: bool,
    /// Column name -> record field (dotted path) or one of `$value`, `$key`, `$topic`,
    /// `$partition`, `$offset`, `$timestamp`. Absent: the default audit table layout.
    #[serde(default)]
    pub columns: Option<BTreeMap<String, String>>,
    /// Columns of the unique key used by `mode: upsert` (`event_id` for the default table).
    #[serde(default)]
    pub key: Option<Vec<String>>,
    /// `append` (plain INSERT/COPY) or `upsert` (INSERT ... ON CONFLICT on `key`).
    #[serde(default)]
    pub mode: Mode,
    /// With `mode: upsert`: `update` the existing row (last write wins) or do `nothing`.
    #[serde(default)]
    pub on_conflict: OnConflict,
    /// Batches with at least this many rows go through binary COPY; smaller ones through a
    /// prepared multi-row INSERT.
    #[serde(default = "default_copy_threshold")]
    pub copy_threshold: usize,
    #[serde(default = "default_connect_timeout", with = "duration")]
    pub connect_timeout: Duration,
    /// A batch not acknowledged within this time counts as a lost connection.
    #[serde(default = "default_request_timeout", with = "duration")]
    pub request_timeout: Duration,
}

fn default_copy_threshold() -> usize {
    64
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(60)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Append,
    Upsert,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnConflict {
    #[default]
    Update,
    Nothing,
}

/// libpq's `sslmode` subset: `disable`, `prefer` (the default, as in libpq: encrypted when the
/// server offers TLS, plaintext when it does not; certificate not checked), `require`
/// (encrypted, certificate not checked) and `verify-full` (chain checked against `ca_file`, or
/// the system roots, and host name matched).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    Disable,
    #[default]
    Prefer,
    Require,
    VerifyFull,
}

impl TlsMode {
    /// The name as written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::Disable => "disable",
            TlsMode::Prefer => "prefer",
            TlsMode::Require => "require",
            TlsMode::VerifyFull => "verify-full",
        }
    }
}

/// `tls: require` or `tls: { mode: verify-full, ca_file: /etc/ssl/pg-ca.pem }`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    pub mode: TlsMode,
    pub ca_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsTable {
    #[serde(default)]
    mode: TlsMode,
    #[serde(default)]
    ca_file: Option<PathBuf>,
}

impl<'de> Deserialize<'de> for TlsConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TlsConfig;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("disable, prefer, require, verify-full or { mode, ca_file }")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<TlsConfig, E> {
                let mode = TlsMode::deserialize(de::value::StrDeserializer::<E>::new(s))?;
                Ok(TlsConfig {
                    mode,
                    ca_file: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<TlsConfig, A::Error> {
                let t = TlsTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                if t.ca_file.is_some() && t.mode != TlsMode::VerifyFull {
                    return Err(de::Error::custom(
                        "ca_file is only used with mode: verify-full",
                    ));
                }
                Ok(TlsConfig {
                    mode: t.mode,
                    ca_file: t.ca_file,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// Where a column's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnSource {
    /// A field of the JSON record, by dotted path.
    Field(String),
    /// The whole record value, as it arrived.
    Value,
    /// The record key (UTF-8 text).
    Key,
    /// Origin stream (Kafka topic).
    Topic,
    Partition,
    Offset,
    /// The record's event time (source timestamp), as `timestamptz` text.
    Timestamp,
}

impl ColumnSource {
    pub fn parse(text: &str) -> Result<Self, String> {
        Ok(match text {
            "$value" => ColumnSource::Value,
            "$key" => ColumnSource::Key,
            "$topic" => ColumnSource::Topic,
            "$partition" => ColumnSource::Partition,
            "$offset" => ColumnSource::Offset,
            "$timestamp" => ColumnSource::Timestamp,
            t if t.starts_with('$') => {
                return Err(format!(
                    "unknown column source `{t}` (use a field path or $value, $key, $topic, \
                     $partition, $offset, $timestamp)"
                ))
            }
            "" => return Err("empty field path".to_string()),
            t => ColumnSource::Field(t.to_string()),
        })
    }
}

/// The default audit table: column, type, source.
pub const DEFAULT_COLUMNS: [(&str, &str, &str); 8] = [
    ("event_id", "text", "event_id"),
    ("event_type", "text", "event_type"),
    ("tenant_id", "text", "tenant_id"),
    ("event_time", "timestamptz", "$timestamp"),
    ("payload", "jsonb", "$value"),
    ("source_topic", "text", "$topic"),
    ("source_partition", "integer", "$partition"),
    ("source_offset", "bigint", "$offset"),
];

/// A checked configuration: what the sink works from.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Quoted, possibly schema-qualified table name.
    pub table: String,
    /// Unquoted table name (for index names).
    pub table_base: String,
    pub create_table: bool,
    pub columns: Vec<(String, ColumnSource)>,
    /// Indexes into `columns`.
    pub key: Vec<usize>,
    pub mode: Mode,
    pub on_conflict: OnConflict,
    pub copy_threshold: usize,
}

/// Quotes an SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl PostgresConfig {
    /// Checks the configuration without touching the network.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        if let Err(e) = self.url.expose().parse::<tokio_postgres::Config>() {
            // The parser's message may quote part of the URL, which can hold a password:
            // only a fixed option name is taken from it.
            let cause = std::error::Error::source(&e).map_or_else(String::new, |c| c.to_string());
            let why = cause
                .split_once("invalid value for option `")
                .and_then(|(_, rest)| rest.split_once('`'))
                .map(|(option, _)| format!("invalid {option}"))
                .unwrap_or_else(|| "malformed (expected postgres://user@host:port/db)".into());
            return Err(ConfigError::at(
                "url",
                format!("not a valid PostgreSQL connection URL: {why}"),
            ));
        }
        let parts: Vec<&str> = self.table.split('.').collect();
        if parts.is_empty() || parts.len() > 2 || parts.iter().any(|p| p.is_empty()) {
            return Err(ConfigError::at(
                "table",
                "expected `table` or `schema.table`",
            ));
        }
        let table = parts
            .iter()
            .map(|p| quote_ident(p))
            .collect::<Vec<_>>()
            .join(".");
        let table_base = parts[parts.len() - 1].to_string();

        let columns: Vec<(String, ColumnSource)> = match &self.columns {
            None => DEFAULT_COLUMNS
                .iter()
                .map(|(c, _, s)| {
                    (
                        c.to_string(),
                        ColumnSource::parse(s).expect("valid default"),
                    )
                })
                .collect(),
            Some(map) => {
                if map.is_empty() {
                    return Err(ConfigError::at("columns", "map at least one column"));
                }
                let mut out = Vec::with_capacity(map.len());
                for (col, src) in map {
                    if self.create_table && !DEFAULT_COLUMNS.iter().any(|(c, _, _)| c == col) {
                        return Err(ConfigError::at(
                            format!("columns.{col}"),
                            "create_table makes the default audit table; this column is not in it",
                        ));
                    }
                    let src = ColumnSource::parse(src)
                        .map_err(|m| ConfigError::at(format!("columns.{col}"), m))?;
                    out.push((col.clone(), src));
                }
                out
            }
        };

        let key_names: Vec<String> = match (&self.key, &self.columns) {
            (Some(k), _) => k.clone(),
            (None, None) => vec!["event_id".to_string()],
            (None, Some(_)) if self.create_table => vec!["event_id".to_string()],
            (None, Some(_)) => Vec::new(),
        };
        let mut key = Vec::with_capacity(key_names.len());
        for (i, k) in key_names.iter().enumerate() {
            let idx = columns.iter().position(|(c, _)| c == k).ok_or_else(|| {
                ConfigError::at(
                    format!("key[{i}]"),
                    format!("key column `{k}` is not mapped"),
                )
            })?;
            key.push(idx);
        }
        if self.mode == Mode::Upsert && key.is_empty() {
            return Err(ConfigError::at("key", "mode: upsert needs the key columns"));
        }
        if self.copy_threshold == 0 {
            return Err(ConfigError::at("copy_threshold", "must be at least 1"));
        }
        Ok(Settings {
            table,
            table_base,
            create_table: self.create_table,
            columns,
            key,
            mode: self.mode,
            on_conflict: self.on_conflict,
            copy_threshold: self.copy_threshold,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> Result<PostgresConfig, ConfigError> {
        sluice_sdk::config::from_value(v)
    }

    #[test]
    fn defaults_to_the_audit_table() {
        let c = parse(json!({"url": "postgres://u@h/db", "table": "audit.events"})).unwrap();
        let s = c.settings().unwrap();
        assert_eq!(s.table, "\"audit\".\"events\"");
        assert_eq!(s.columns.len(), 8);
        assert_eq!(s.columns[s.key[0]].0, "event_id");
        assert_eq!(c.tls, TlsConfig::default());
        assert_eq!(c.tls.mode, TlsMode::Prefer);
    }

    #[test]
    fn tls_short_and_long_forms() {
        let c = parse(json!({"url": "postgres://h/db", "table": "t", "tls": "require"})).unwrap();
        assert_eq!(c.tls.mode, TlsMode::Require);
        let c = parse(json!({"url": "postgres://h/db", "table": "t",
            "tls": {"mode": "verify-full", "ca_file": "/ca.pem"}}))
        .unwrap();
        assert_eq!(c.tls.mode, TlsMode::VerifyFull);
        let e =
            parse(json!({"url": "postgres://h/db", "table": "t", "tls": "verify"})).unwrap_err();
        assert!(e.message.contains("unknown variant"), "{e:?}");
        let e = parse(json!({"url": "postgres://h/db", "table": "t",
            "tls": {"mode": "require", "cafile": "/x"}}))
        .unwrap_err();
        assert!(e.message.contains("unknown field"), "{e:?}");
    }

    #[test]
    fn checks_columns_and_key() {
        let c = parse(
            json!({"url": "postgres://h/db", "table": "t", "mode": "upsert",
            "columns": {"id": "audit_id", "meta": "$value"}}),
        )
        .unwrap();
        assert!(c.settings().unwrap_err().message.contains("upsert"));
        let c = parse(
            json!({"url": "postgres://h/db", "table": "t", "mode": "upsert",
            "columns": {"id": "audit_id"}, "key": ["nope"]}),
        )
        .unwrap();
        assert_eq!(c.settings().unwrap_err().path.as_deref(), Some("key[0]"));
        let c = parse(json!({"url": "postgres://h/db", "table": "t",
            "columns": {"id": "$bogus"}}))
        .unwrap();
        assert_eq!(
            c.settings().unwrap_err().path.as_deref(),
            Some("columns.id")
        );
        let c = parse(
            json!({"url": "postgres://h/db", "table": "t", "create_table": true,
            "columns": {"other": "x"}}),
        )
        .unwrap();
        assert!(c.settings().is_err());
    }

    #[test]
    fn bad_url_is_not_echoed() {
        let c = parse(json!({"url": "postgres://u:s3cret@h:notaport/db", "table": "t"})).unwrap();
        let e = c.settings().unwrap_err();
        assert!(!e.message.contains("s3cret"));
        assert!(e.message.ends_with(": invalid port"), "{}", e.message);
        assert_eq!(e.path.as_deref(), Some("url"));
    }
}
