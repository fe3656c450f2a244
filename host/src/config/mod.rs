//! The YAML configuration: what ops write, loaded with `${VAR}` expansion, strict keys and
//! errors that point at `file:line:col`.

mod env;
mod locate;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};
use sluice_sdk::config::{byte_size, duration};

pub use locate::Locator;

/// One problem in a configuration file, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.col,
            self.message
        )
    }
}

/// Where a pipeline was declared, to place errors found after parsing.
#[derive(Debug, Clone)]
pub struct Declared {
    pub file: PathBuf,
    pub index: usize,
    locator: Arc<Locator>,
    secrets: Arc<Vec<String>>,
}

impl Declared {
    /// An error at `path` below this pipeline (`source.type`, `sink.tls.ca_file`).
    pub fn error(&self, path: &str, message: impl Into<String>) -> ConfigError {
        let full = if path.is_empty() {
            format!("pipelines[{}]", self.index)
        } else {
            format!("pipelines[{}].{path}", self.index)
        };
        let (line, col) = self.locator.find(&full).unwrap_or((1, 1));
        ConfigError {
            file: self.file.clone(),
            line,
            col,
            message: redact(message.into(), &self.secrets),
        }
    }
}

fn redact(mut message: String, secrets: &[String]) -> String {
    for s in secrets {
        if message.contains(s.as_str()) {
            message = message.replace(s.as_str(), "***");
        }
    }
    message
}

/// The `host:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// Offset store and file DLQ live here.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// Plugin libraries to load before pipelines are built.
    #[serde(default)]
    pub plugins: Vec<PathBuf>,
    /// How long a graceful shutdown may take to drain in-flight batches.
    #[serde(default = "default_shutdown_timeout", with = "duration")]
    pub shutdown_timeout: Duration,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            data_dir: default_data_dir(),
            admin: None,
            plugins: Vec::new(),
            shutdown_timeout: default_shutdown_timeout(),
        }
    }
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("./data")
}

fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(30)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// Bearer token every endpoint but a bare liveness `GET /health` requires; take it from
    /// the environment (`token: "${SLUICE_ADMIN_TOKEN}"`).
    #[serde(default)]
    pub token: Option<sluice_sdk::config::Secret>,
    /// Serve HTTPS with this certificate instead of plain HTTP.
    #[serde(default)]
    pub tls: Option<AdminTls>,
}

/// `host.admin.tls`: PEM files of the certificate chain and its private key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// `source:`, `sink:` or `dead_letter:`: a `type` and the connector's own options.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectorSpec {
    pub type_name: String,
    pub config: Value,
}

impl<'de> Deserialize<'de> for ConnectorSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut map = Map::<String, Value>::deserialize(d)?;
        let type_name = match map.remove("type") {
            Some(Value::String(s)) => s,
            Some(_) => return Err(D::Error::custom("`type` must be a string")),
            None => return Err(D::Error::missing_field("type")),
        };
        Ok(ConnectorSpec {
            type_name,
            config: Value::Object(map),
        })
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    #[serde(default = "default_max_events")]
    pub max_events: usize,
    #[serde(default = "default_max_bytes", with = "byte_size")]
    pub max_bytes: u64,
    #[serde(default = "default_linger", with = "duration")]
    pub linger: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_events: default_max_events(),
            max_bytes: default_max_bytes(),
            linger: default_linger(),
        }
    }
}

fn default_max_events() -> usize {
    500
}
fn default_max_bytes() -> u64 {
    1 << 20
}
fn default_linger() -> Duration {
    Duration::from_millis(200)
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts per record before a retryable failure is dead-lettered.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    #[serde(default = "default_initial_backoff", with = "duration")]
    pub initial_backoff: Duration,
    #[serde(default = "default_max_backoff", with = "duration")]
    pub max_backoff: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: default_max_attempts(),
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
        }
    }
}

fn default_max_attempts() -> u32 {
    8
}
fn default_initial_backoff() -> Duration {
    Duration::from_millis(200)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(30)
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    pub events_per_second: u32,
    /// Events allowed at once above the steady rate; default a quarter second's worth.
    #[serde(default)]
    pub burst: Option<u32>,
}

/// One entry of `transforms:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TransformConfig {
    Filter(FilterConfig),
    AddFields(AddFieldsConfig),
    Set(SetConfig),
    Rename(RenameConfig),
    Drop(DropConfig),
}

/// Keeps records whose field matches; `negate` keeps the others.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    pub field: String,
    #[serde(default)]
    pub equals: Option<Value>,
    #[serde(default)]
    pub one_of: Option<Vec<Value>>,
    #[serde(default)]
    pub exists: Option<bool>,
    #[serde(default)]
    pub matches: Option<String>,
    #[serde(default)]
    pub negate: bool,
}

/// Adds static fields; existing values are overwritten unless `overwrite: false`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddFieldsConfig {
    pub fields: Map<String, Value>,
    #[serde(default = "yes")]
    pub overwrite: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetConfig {
    pub field: String,
    pub value: Value,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameConfig {
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropConfig {
    pub fields: Vec<String>,
}

/// One pipeline as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    pub name: String,
    pub source: ConnectorSpec,
    #[serde(default)]
    pub transforms: Vec<TransformConfig>,
    pub sink: ConnectorSpec,
    #[serde(default)]
    pub batch: BatchConfig,
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
    #[serde(default)]
    pub retry: RetryConfig,
    /// Default: the `file` DLQ under `data_dir`.
    #[serde(default)]
    pub dead_letter: Option<ConnectorSpec>,
    /// Batches in flight to the sink at once; default the sink's own preference (usually 1,
    /// which keeps order across batches).
    #[serde(default)]
    pub concurrency: Option<usize>,
    /// How often positions are saved to the offset store.
    #[serde(default = "default_commit_interval", with = "duration")]
    pub commit_interval: Duration,
    #[serde(skip)]
    pub declared: Option<Declared>,
}

fn default_commit_interval() -> Duration {
    Duration::from_millis(500)
}

impl PipelineConfig {
    /// Where it was declared (always set by [`load`]).
    pub fn declared(&self) -> Declared {
        self.declared.clone().unwrap_or_else(|| Declared {
            file: PathBuf::from("<config>"),
            index: 0,
            locator: Arc::new(Locator::default()),
            secrets: Arc::new(Vec::new()),
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    host: Option<HostConfig>,
    #[serde(default)]
    pipelines: Vec<PipelineConfig>,
}

/// Everything the given files declare.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub host: HostConfig,
    pub pipelines: Vec<PipelineConfig>,
}

/// Files named directly, and the `.yaml`/`.yml` files of named directories, sorted.
fn config_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Vec<ConfigError>> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        if p.is_dir() {
            match std::fs::read_dir(p) {
                Ok(rd) => {
                    let mut found: Vec<PathBuf> = rd
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|f| {
                            matches!(f.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
                        })
                        .collect();
                    found.sort();
                    files.extend(found);
                }
                Err(e) => errors.push(whole_file(p, format!("cannot read directory: {e}"))),
            }
        } else {
            files.push(p.clone());
        }
    }
    if errors.is_empty() {
        Ok(files)
    } else {
        Err(errors)
    }
}

fn whole_file(file: &Path, message: String) -> ConfigError {
    ConfigError {
        file: file.to_path_buf(),
        line: 1,
        col: 1,
        message,
    }
}

/// A file's host section (with its position) and pipelines.
type ParsedFile = (Option<(HostConfig, (usize, usize))>, Vec<PipelineConfig>);

/// Parses one file's text (already read) into its host section and pipelines.
fn parse_file(
    file: &Path,
    raw: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<ParsedFile, Vec<ConfigError>> {
    let expanded = env::expand(raw, lookup).map_err(|errs| {
        errs.into_iter()
            .map(|e| ConfigError {
                file: file.to_path_buf(),
                line: e.line,
                col: e.col,
                message: e.message,
            })
            .collect::<Vec<_>>()
    })?;
    let secrets = Arc::new(expanded.substituted);
    let locator = Arc::new(Locator::new(&expanded.text));
    let de = serde_yaml::Deserializer::from_str(&expanded.text);
    let parsed: Result<FileConfig, _> = serde_path_to_error::deserialize(de);
    let mut fc = match parsed {
        Ok(fc) => fc,
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let yaml_pos = inner.location().map(|l| (l.line(), l.column()));
            let exact = (path != ".").then(|| locator.find(&path)).flatten();
            let (line, col) = exact.or(yaml_pos).unwrap_or((1, 1));
            let mut message = inner.to_string();
            // serde_yaml appends its own " at line L column C"; the prefix already says it.
            if let Some(i) = message.find(" at line ") {
                message.truncate(i);
            }
            if path != "." && !message.contains(&path) {
                message = format!("{path}: {message}");
            }
            return Err(vec![ConfigError {
                file: file.to_path_buf(),
                line,
                col,
                message: redact(message, &secrets),
            }]);
        }
    };
    for (i, p) in fc.pipelines.iter_mut().enumerate() {
        p.declared = Some(Declared {
            file: file.to_path_buf(),
            index: i,
            locator: locator.clone(),
            secrets: secrets.clone(),
        });
    }
    let host = fc.host.map(|h| (h, locator.find("host").unwrap_or((1, 1))));
    Ok((host, fc.pipelines))
}

/// Loads and merges configuration files; every problem found is returned, not just the first.
pub fn load(paths: &[PathBuf]) -> Result<Config, Vec<ConfigError>> {
    load_with(paths, &|name| std::env::var(name).ok())
}

pub fn load_with(
    paths: &[PathBuf],
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, Vec<ConfigError>> {
    let files = config_files(paths)?;
    let mut errors = Vec::new();
    let mut host: Option<(HostConfig, PathBuf)> = None;
    let mut pipelines: Vec<PipelineConfig> = Vec::new();
    if files.is_empty() {
        return Err(vec![whole_file(
            paths.first().map_or(Path::new("."), |p| p.as_path()),
            "no configuration files found".into(),
        )]);
    }
    for file in &files {
        let raw = match std::fs::read_to_string(file) {
            Ok(r) => r,
            Err(e) => {
                errors.push(whole_file(file, format!("cannot read: {e}")));
                continue;
            }
        };
        match parse_file(file, &raw, lookup) {
            Err(mut e) => errors.append(&mut e),
            Ok((h, ps)) => {
                if let Some((h, (line, col))) = h {
                    match &host {
                        Some((_, first)) => errors.push(ConfigError {
                            file: file.clone(),
                            line,
                            col,
                            message: format!(
                                "a `host` section is already defined in {}; only one file may have one",
                                first.display()
                            ),
                        }),
                        None => host = Some((h, file.clone())),
                    }
                }
                pipelines.extend(ps);
            }
        }
    }
    let mut seen: HashMap<String, Declared> = HashMap::new();
    for p in &pipelines {
        let d = p.declared();
        if p.name.trim().is_empty() {
            errors.push(d.error("name", "pipeline name must not be empty"));
        } else if let Some(bad) = p.name.chars().find(|c| !is_name_char(*c)) {
            // Names become file names (offsets, DLQ) as they are; any other character would
            // have to be replaced, and `a/b` and `a_b` would then share files.
            errors.push(d.error(
                "name",
                format!(
                    "pipeline name `{}` has the character {bad:?}; use only letters, digits, `.`, `_` and `-`",
                    p.name
                ),
            ));
        } else if let Some(first) = seen.get(&p.name) {
            let (l, _) = first
                .locator
                .find(&format!("pipelines[{}].name", first.index))
                .unwrap_or((1, 1));
            errors.push(d.error(
                "name",
                format!(
                    "duplicate pipeline name `{}` (first declared at {}:{l})",
                    p.name,
                    first.file.display()
                ),
            ));
        } else {
            seen.insert(p.name.clone(), d);
        }
        if p.batch.max_events == 0 {
            errors.push(d_err(
                p,
                "batch.max_events",
                "max_events must be at least 1",
            ));
        }
        if p.batch.max_bytes == 0 {
            errors.push(d_err(
                p,
                "batch.max_bytes",
                "max_bytes must be at least 1 byte",
            ));
        }
        if p.retry.max_attempts == 0 {
            errors.push(d_err(
                p,
                "retry.max_attempts",
                "max_attempts must be at least 1",
            ));
        }
        if p.concurrency == Some(0) {
            errors.push(d_err(p, "concurrency", "concurrency must be at least 1"));
        }
        if let Some(r) = p.rate_limit {
            if r.events_per_second == 0 {
                errors.push(d_err(
                    p,
                    "rate_limit.events_per_second",
                    "must be at least 1",
                ));
            }
            if r.burst == Some(0) {
                errors.push(d_err(p, "rate_limit.burst", "must be at least 1"));
            }
        }
    }
    if errors.is_empty() && pipelines.is_empty() {
        errors.push(whole_file(&files[0], "no pipelines defined".into()));
    }
    if errors.is_empty() {
        Ok(Config {
            host: host.map(|(h, _)| h).unwrap_or_default(),
            pipelines,
        })
    } else {
        Err(errors)
    }
}

/// The characters a pipeline name may use: its offset and DLQ file names are the name itself.
pub fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

fn d_err(p: &PipelineConfig, path: &str, msg: &str) -> ConfigError {
    p.declared().error(path, msg)
}

#[cfg(test)]
impl PipelineConfig {
    /// A declaration with no file, for unit tests of pieces that report positioned errors.
    pub fn declared_for_tests() -> Declared {
        Declared {
            file: PathBuf::from("<test>"),
            index: 0,
            locator: Arc::new(Locator::default()),
            secrets: Arc::new(Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<Config, Vec<ConfigError>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, text).unwrap();
        load_with(&[path], &|n| {
            (n == "TOKEN").then(|| "abcd-secret".to_string())
        })
    }

    #[test]
    fn parses_a_full_pipeline() {
        let c = load_text(
            "host: { data_dir: /tmp/x }\npipelines:\n  - name: a\n    source: { type: generator, count: 3 }\n    transforms:\n      - { type: filter, field: event_type, one_of: [x, y] }\n      - { type: add_fields, fields: { tenant_id: acme } }\n    sink: { type: file, path: out.jsonl, token: \"${TOKEN}\" }\n    batch: { max_events: 10, max_bytes: 1MiB, linger: 50ms }\n",
        )
        .unwrap();
        let p = &c.pipelines[0];
        assert_eq!(p.source.type_name, "generator");
        assert_eq!(p.source.config["count"], 3);
        assert_eq!(p.sink.config["token"], "abcd-secret");
        assert_eq!(p.batch.max_bytes, 1 << 20);
        assert_eq!(p.transforms.len(), 2);
    }

    #[test]
    fn unknown_key_points_at_it() {
        let e = load_text("pipelines:\n  - name: a\n    source: { type: generator }\n    sink: { type: file }\n    batch: { max_event: 10 }\n").unwrap_err();
        assert_eq!((e[0].line, e[0].col), (5, 14), "{}", e[0]);
        assert!(
            e[0].message.contains("unknown field `max_event`"),
            "{}",
            e[0]
        );
    }

    #[test]
    fn wrong_type_and_duplicate_names() {
        let e = load_text("pipelines:\n  - name: a\n    source: { type: generator }\n    sink: { type: file }\n    batch:\n      max_events: lots\n").unwrap_err();
        assert_eq!(e[0].line, 6, "{}", e[0]);
        assert!(e[0].message.contains("invalid type"), "{}", e[0]);
        let e = load_text("pipelines:\n  - name: a\n    source: { type: generator }\n    sink: { type: file }\n  - name: a\n    source: { type: generator }\n    sink: { type: file }\n").unwrap_err();
        assert_eq!(e[0].line, 5);
        assert!(e[0].message.contains("duplicate pipeline name `a`"));
    }

    #[test]
    fn names_are_file_safe() {
        let e = load_text("pipelines:\n  - name: a/b\n    source: { type: generator }\n    sink: { type: file }\n  - name: a_b\n    source: { type: generator }\n    sink: { type: file }\n").unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!((e[0].line, e[0].col), (2, 5), "{}", e[0]);
        assert!(
            e[0].message.contains("`a/b` has the character '/'"),
            "{}",
            e[0]
        );
        assert!(load_text("pipelines:\n  - name: Audit.v2_x-1\n    source: { type: generator }\n    sink: { type: file }\n").is_ok());
    }

    #[test]
    fn secrets_are_redacted_from_errors() {
        let e = load_text("pipelines:\n  - name: a\n    source: { type: generator }\n    sink: { type: file }\n    concurrency: \"${TOKEN}\"\n").unwrap_err();
        assert!(!e[0].to_string().contains("abcd-secret"), "{}", e[0]);
    }
}
