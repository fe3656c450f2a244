//! The YAML configuration: what ops write, loaded with `${VAR}` expansion in its values,
//! strict keys and errors that point at `file:line:col`. Every problem of every file and
//! pipeline is reported, not just the first.

mod env;
mod locate;
mod options;
pub mod sinks;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use sluice_sdk::config::{byte_size, duration, humanize};
use sluice_sdk::{BuildContext, Registry};

pub use locate::Locator;
pub use sinks::{NamedSink, RouteConfig, Unrouted};

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
    /// Path below the pipeline that `error` paths are relative to (`sinks.db`).
    prefix: String,
}

impl Declared {
    /// An error at `path` below this pipeline whose message starts with that key's full path
    /// (`pipelines[0].transforms[1].field: ...`), as the problems found while parsing do.
    pub fn keyed_error(&self, path: &str, message: impl Into<String>) -> ConfigError {
        let message = message.into();
        let full = format!("pipelines[{}].{path}", self.index);
        if message.contains(&full) {
            self.error(path, message)
        } else {
            self.error(path, format!("{full}: {message}"))
        }
    }

    /// An error at `path` below this pipeline (`source.type`, `sink.tls.ca_file`).
    pub fn error(&self, path: &str, message: impl Into<String>) -> ConfigError {
        let path = join(&self.prefix, path);
        let path = path.as_str();
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

    /// The same declaration with error paths relative to `path` (a named sink's section).
    pub fn below(&self, path: &str) -> Declared {
        Declared {
            prefix: join(&self.prefix, path),
            ..self.clone()
        }
    }
}

/// Replaces every value that came from the environment with `***`. A value of four
/// characters or more is replaced wherever it appears; a shorter one wherever it stands
/// alone (not inside a longer word), so `"ab"` is hidden but `about` is left readable.
fn redact(mut message: String, secrets: &[String]) -> String {
    let mut by_length: Vec<&String> = secrets.iter().filter(|s| !s.is_empty()).collect();
    by_length.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for s in by_length {
        if s.chars().count() >= 4 {
            if message.contains(s.as_str()) {
                message = message.replace(s.as_str(), "***");
            }
            continue;
        }
        let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        let mut out = String::with_capacity(message.len());
        let mut rest = message.as_str();
        while let Some(i) = rest.find(s.as_str()) {
            let before = rest[..i].chars().next_back().or(out.chars().next_back());
            let after = rest[i + s.len()..].chars().next();
            out.push_str(&rest[..i]);
            if word(before) || word(after) {
                out.push_str(s);
            } else {
                out.push_str("***");
            }
            rest = &rest[i + s.len()..];
        }
        out.push_str(rest);
        message = out;
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

/// `source:`, `sink:`, `dead_letter:` or one entry of `transforms:`: a `type` and the
/// connector's or transform's own options.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectorSpec {
    pub type_name: String,
    pub config: Value,
}

impl<'de> Deserialize<'de> for ConnectorSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Value::Object(mut map) = options::Options::deserialize(d)?.0 else {
            return Err(D::Error::custom(
                "expected a mapping with `type` and its options",
            ));
        };
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

/// One pipeline as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    pub name: String,
    pub source: ConnectorSpec,
    /// Applied in order; each is built by the transform its `type` names in the registry.
    #[serde(default)]
    pub transforms: Vec<ConnectorSpec>,
    /// The one sink of a simple pipeline; `sinks` names several instead.
    #[serde(default)]
    pub sink: Option<ConnectorSpec>,
    /// Named sinks (read by [`sinks::parse`]); empty when `sink` is given.
    #[serde(skip)]
    pub sinks: Vec<NamedSink>,
    /// What happens to a record none of the named sinks' routes takes.
    #[serde(default)]
    pub unrouted: Unrouted,
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
    /// Tamper evidence for the single `sink:` (a named sink has its own `integrity:`).
    #[serde(default)]
    pub integrity: Option<crate::integrity::IntegrityConfig>,
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
            prefix: String::new(),
        })
    }
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

/// `prefix` and a path below it, in [`Locator`]'s notation.
fn join(prefix: &str, rel: &str) -> String {
    if rel.is_empty() {
        prefix.to_string()
    } else if prefix.is_empty() {
        rel.to_string()
    } else if rel.starts_with('[') {
        format!("{prefix}{rel}")
    } else {
        format!("{prefix}.{rel}")
    }
}

/// Removes the node at `path` (serde_path_to_error's notation, relative to `value`). A
/// sequence item takes its whole sequence with it, so later items keep their indices.
fn remove_at(value: &mut serde_yaml::Value, path: &str) -> bool {
    let path = match path.rfind('[') {
        Some(i) if path.ends_with(']') => &path[..i],
        _ => path,
    };
    let (parent, last) = match path.rsplit_once('.') {
        Some((p, l)) => (Some(p), l),
        None => (None, path),
    };
    let mut cur = value;
    if let Some(parent) = parent {
        for seg in parent.split('.') {
            let next = match seg.split_once('[') {
                None => cur.get_mut(seg),
                Some(_) => None,
            };
            match next {
                Some(n) => cur = n,
                None => return false,
            }
        }
    }
    cur.as_mapping_mut()
        .is_some_and(|m| m.remove(last).is_some())
}

/// Deserializes `value` as `T`, collecting every problem in it: after an error, the
/// offending node is removed and the rest tried again. `placeholders` stand in for required
/// keys found missing, so the others are still checked. Problems are (path relative to
/// `value`, message); `T` only when there were none.
fn deserialize_all<T: DeserializeOwned>(
    mut value: serde_yaml::Value,
    placeholders: &[(&str, serde_yaml::Value)],
) -> (Option<T>, Vec<(String, String)>) {
    let mut errors = Vec::new();
    let mut removed: Vec<String> = Vec::new();
    for _ in 0..100 {
        let e = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(t) => return (errors.is_empty().then_some(t), errors),
            Err(e) => e,
        };
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let message = e.into_inner().to_string();
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|r| r.strip_suffix('`'))
            .map(str::to_string);
        // A required key removed after its own error is then missing: already reported.
        let consequence = missing
            .as_ref()
            .is_some_and(|k| removed.contains(&join(&path, k)));
        if !consequence {
            errors.push((path.clone(), humanize(&message)));
        }
        if path.is_empty() {
            let stand_in = missing.and_then(|k| placeholders.iter().find(|(n, _)| *n == k));
            match (stand_in, value.as_mapping_mut()) {
                (Some((k, v)), Some(m)) => {
                    m.insert((*k).into(), v.clone());
                }
                _ => break,
            }
        } else if remove_at(&mut value, &path) {
            removed.push(path);
        } else {
            break;
        }
    }
    (None, errors)
}

/// Where a YAML syntax error is, pointing at the tab when a tab is the problem.
fn syntax_error(file: &Path, raw: &str, e: &serde_yaml::Error) -> ConfigError {
    let (mut line, mut col) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
    let mut message = e.to_string();
    if let Some(i) = message.find(" at line ") {
        message.truncate(i);
    }
    // libyaml reports a tab in indentation where the structure breaks, often on a later
    // line; the tab itself is what to fix.
    let upto: Vec<&str> = raw.lines().take(line).collect();
    if let Some((n, text)) = upto
        .iter()
        .enumerate()
        .rev()
        .find(|(_, l)| l.trim_start_matches(' ').starts_with('\t'))
    {
        line = n + 1;
        col = text.find('\t').map_or(1, |c| c + 1);
        message = format!(
            "a tab is used for indentation here; YAML indents with spaces only ({message})"
        );
    }
    ConfigError {
        file: file.to_path_buf(),
        line,
        col,
        message,
    }
}

/// Parses one file's text (already read) into its host section and pipelines, with every
/// problem found; a pipeline with problems is left out.
fn parse_file(
    file: &Path,
    raw: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    registry: &Registry,
) -> (ParsedFile, Vec<ConfigError>) {
    let protected = env::protect(raw);
    let mut root: serde_yaml::Value = match serde_yaml::from_str(&protected) {
        Ok(v) => v,
        Err(e) => return ((None, Vec::new()), vec![syntax_error(file, raw, &e)]),
    };
    let locator = Arc::new(Locator::new(&protected));
    let mut substituted = Vec::new();
    let mut env_errors = Vec::new();
    env::expand_tree(
        &mut root,
        "",
        &locator,
        lookup,
        &mut substituted,
        &mut env_errors,
    );
    let secrets = Arc::new(substituted);
    let at = |path: &str, message: String, value: bool| {
        let found = if value {
            locator.value(path)
        } else {
            locator.find(path)
        };
        let (line, col) = found.unwrap_or((1, 1));
        let message = if path.is_empty() || message.contains(path) {
            message
        } else {
            format!("{path}: {message}")
        };
        ConfigError {
            file: file.to_path_buf(),
            line,
            col,
            message: redact(message, &secrets),
        }
    };
    let mut errors: Vec<ConfigError> = env_errors
        .into_iter()
        .map(|e| at(&e.path, e.message, true))
        .collect();

    let mut top = match root {
        serde_yaml::Value::Null => serde_yaml::Mapping::new(),
        serde_yaml::Value::Mapping(m) => m,
        _ => {
            errors.push(at(
                "",
                "expected a mapping with `host` and `pipelines`".into(),
                false,
            ));
            return ((None, Vec::new()), errors);
        }
    };
    let host_value = top.remove("host");
    let pipelines_value = top.remove("pipelines");
    for (k, _) in top {
        let k = k.as_str().map_or_else(|| "?".to_string(), str::to_string);
        let message = humanize(&format!(
            "unknown field `{k}`, expected `host` or `pipelines`"
        ));
        errors.push(at(&k, message, false));
    }

    let mut host = None;
    if let Some(v) = host_value.filter(|v| !v.is_null()) {
        let (h, errs) = deserialize_all::<HostConfig>(v, &[]);
        errors.extend(
            errs.into_iter()
                .map(|(p, m)| at(&join("host", &p), m, false)),
        );
        host = h.map(|h| (h, locator.find("host").unwrap_or((1, 1))));
    }

    let items = match pipelines_value {
        None | Some(serde_yaml::Value::Null) => Vec::new(),
        Some(serde_yaml::Value::Sequence(items)) => items,
        Some(_) => {
            errors.push(at(
                "pipelines",
                "expected a list of pipelines".into(),
                false,
            ));
            Vec::new()
        }
    };
    let mut pipelines = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let prefix = format!("pipelines[{i}]");
        let (p, errs) = parse_pipeline(item, registry);
        errors.extend(
            errs.into_iter()
                .map(|(p, m)| at(&join(&prefix, &p), m, false)),
        );
        if let Some(mut p) = p {
            p.declared = Some(Declared {
                file: file.to_path_buf(),
                index: i,
                locator: locator.clone(),
                secrets: secrets.clone(),
                prefix: String::new(),
            });
            pipelines.push(p);
        }
    }
    ((host, pipelines), errors)
}

/// One pipeline, with every problem in it. Transforms are read one by one, so a problem in
/// one does not hide those of the others, and each is checked by building it from
/// `registry`: a pipeline with other problems still has its transforms checked. A type
/// `registry` does not know may come from a plugin, which is not loaded yet: it is kept and
/// checked, with its options, when the pipeline is validated against the registry with the
/// plugins (`PipelineDef::validate`), which reports an unknown type there.
fn parse_pipeline(
    mut value: serde_yaml::Value,
    registry: &Registry,
) -> (Option<PipelineConfig>, Vec<(String, String)>) {
    let transforms = value.as_mapping_mut().and_then(|m| m.remove("transforms"));
    let named = value.as_mapping_mut().and_then(|m| m.remove("sinks"));
    let single = value
        .as_mapping()
        .is_some_and(|m| m.get("sink").is_some_and(|v| !v.is_null()));
    let spec = || {
        let mut m = serde_yaml::Mapping::new();
        m.insert("type".into(), "?".into());
        serde_yaml::Value::Mapping(m)
    };
    let placeholders = [("name", serde_yaml::Value::from("?")), ("source", spec())];
    let (p, mut errors) = deserialize_all::<PipelineConfig>(value, &placeholders);
    let mut named_sinks = Vec::new();
    match (named, single) {
        (Some(v), false) => {
            let (s, errs) = sinks::parse(v, registry);
            named_sinks = s;
            errors.extend(errs);
        }
        (Some(_), true) => errors.push((
            "sinks".into(),
            "`sink` and `sinks` cannot both be given: name the single sink under `sinks`".into(),
        )),
        (None, true) => {}
        (None, false) => errors.push((
            String::new(),
            "missing field `sink` (or a `sinks:` map of named sinks)".into(),
        )),
    }
    let mut chain = Vec::new();
    match transforms {
        None | Some(serde_yaml::Value::Null) => {}
        Some(serde_yaml::Value::Sequence(items)) => {
            // Transform factories do no I/O and need no more than this to check options.
            let ctx = BuildContext {
                pipeline: p.as_ref().map_or("?", |p| p.name.as_str()).into(),
                data_dir: default_data_dir(),
            };
            for (j, item) in items.into_iter().enumerate() {
                let (t, errs) = deserialize_all::<ConnectorSpec>(item, &[]);
                let here = format!("transforms[{j}]");
                errors.extend(errs.into_iter().map(|(p, m)| (join(&here, &p), m)));
                let Some(t) = t else { continue };
                if registry.transform(&t.type_name).is_none() {
                    chain.push(t);
                    continue;
                }
                match crate::transform::build(j, &t, registry, &ctx) {
                    Ok(_) => chain.push(t),
                    Err(e) => errors.push(e),
                }
            }
        }
        Some(_) => errors.push(("transforms".into(), "expected a list of transforms".into())),
    }
    match p {
        Some(mut p) if errors.is_empty() => {
            p.transforms = chain;
            p.sinks = named_sinks;
            (Some(p), errors)
        }
        _ => (None, errors),
    }
}

/// Loads and merges configuration files; every problem found is returned, not just the first.
/// Transforms are checked against the transform types of `registry`.
pub fn load(paths: &[PathBuf], registry: &Registry) -> Result<Config, Vec<ConfigError>> {
    load_with(paths, &|name| std::env::var(name).ok(), registry)
}

pub fn load_with(
    paths: &[PathBuf],
    lookup: &dyn Fn(&str) -> Option<String>,
    registry: &Registry,
) -> Result<Config, Vec<ConfigError>> {
    let (config, errors) = load_all_with(paths, lookup, registry);
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(errors)
    }
}

/// Everything that could be read, with every problem found: pipelines with problems are
/// left out of the configuration, so the rest can still be checked further.
pub fn load_all(paths: &[PathBuf], registry: &Registry) -> (Config, Vec<ConfigError>) {
    load_all_with(paths, &|name| std::env::var(name).ok(), registry)
}

pub fn load_all_with(
    paths: &[PathBuf],
    lookup: &dyn Fn(&str) -> Option<String>,
    registry: &Registry,
) -> (Config, Vec<ConfigError>) {
    let files = match config_files(paths) {
        Ok(f) => f,
        Err(e) => return (Config::default(), e),
    };
    let mut errors = Vec::new();
    let mut host: Option<(HostConfig, PathBuf)> = None;
    let mut pipelines: Vec<PipelineConfig> = Vec::new();
    if files.is_empty() {
        let error = whole_file(
            paths.first().map_or(Path::new("."), |p| p.as_path()),
            "no configuration files found".into(),
        );
        return (Config::default(), vec![error]);
    }
    for file in &files {
        let raw = match std::fs::read_to_string(file) {
            Ok(r) => r,
            Err(e) => {
                errors.push(whole_file(file, format!("cannot read: {e}")));
                continue;
            }
        };
        let ((h, ps), mut file_errors) = parse_file(file, &raw, lookup, registry);
        errors.append(&mut file_errors);
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
        errors.extend(sinks::check(p));
        if let Some(r) = p.rate_limit {
            if r.events_per_second == 0 {
                errors.push(d_err(
                    p,
                    "rate_limit.events_per_second",
                    "events_per_second must be at least 1",
                ));
            }
            if r.burst == Some(0) {
                errors.push(d_err(p, "rate_limit.burst", "burst must be at least 1"));
            }
        }
    }
    if errors.is_empty() && pipelines.is_empty() {
        errors.push(whole_file(&files[0], "no pipelines defined".into()));
    }
    let config = Config {
        host: host.map(|(h, _)| h).unwrap_or_default(),
        pipelines,
    };
    (config, errors)
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
            prefix: String::new(),
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
        load_with(
            &[path],
            &|n| (n == "TOKEN").then(|| "abcd-secret".to_string()),
            &crate::registry::compiled_in(),
        )
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
        assert_eq!(p.sink.as_ref().unwrap().config["token"], "abcd-secret");
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

    fn load_env(text: &str, vars: &[(&str, &str)]) -> Result<Config, Vec<ConfigError>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, text).unwrap();
        load_with(
            &[path],
            &|n| {
                vars.iter()
                    .find(|(k, _)| *k == n)
                    .map(|(_, v)| v.to_string())
            },
            &crate::registry::compiled_in(),
        )
    }

    #[test]
    fn every_problem_of_every_pipeline_is_reported() {
        let e = load_text("pipelines:\n  - name: a\n    source: { type: generator }\n    sink: { type: file }\n    bach: { max_events: 10 }\n    retry: { max_attempts: many }\n    transforms:\n      - { type: drop, feilds: [x] }\n      - { type: set, field: y }\n  - name: b\n    source: { type: generator }\n    batch: { max_events: 0, linger: soon }\n").unwrap_err();
        let got: Vec<(usize, usize, &str)> = e
            .iter()
            .map(|e| (e.line, e.col, e.message.as_str()))
            .collect();
        let has = |line: usize, text: &str| {
            assert!(
                got.iter().any(|(l, _, m)| *l == line && m.contains(text)),
                "no `{text}` at line {line}: {got:#?}"
            )
        };
        has(5, "unknown field `bach`");
        has(5, "did you mean `batch`?");
        has(6, "expected a whole number");
        has(8, "did you mean `fields`?");
        has(9, "missing field `value`");
        has(10, "missing field `sink`");
        has(12, "invalid duration `soon`");
        assert!(!got.iter().any(|(_, _, m)| m.contains("u32")), "{got:#?}");
    }

    #[test]
    fn a_zero_names_its_field_and_a_tab_is_pointed_at() {
        let e = load_text("pipelines:\n  - name: a\n    source: { type: generator }\n    sink: { type: file }\n    rate_limit: { events_per_second: 0 }\n").unwrap_err();
        assert_eq!(e[0].message, "events_per_second must be at least 1");
        let e =
            load_text("pipelines:\n  - name: a\n    source:\n    \ttype: generator\n").unwrap_err();
        assert_eq!((e[0].line, e[0].col), (4, 5), "{}", e[0]);
        assert!(e[0].message.contains("tab"), "{}", e[0]);
    }

    #[test]
    fn environment_values_are_literal_and_lists_split() {
        let nasty = "pa\"ss \\ # x\nextra_key: 1";
        let c = load_env("pipelines:\n  - name: a\n    source: { type: generator, topics: ${T}, n: ${N} }\n    sink: { type: file, password: ${P}, quoted: \"${P}\" }\n", &[("P", nasty), ("T", "a,b"), ("N", "3")]).unwrap();
        let sink = &c.pipelines[0].sink.as_ref().unwrap().config;
        assert_eq!(sink["password"], nasty);
        assert_eq!(sink["quoted"], nasty);
        assert_eq!(sink.as_object().unwrap().len(), 2, "{sink}");
        assert_eq!(c.pipelines[0].source.config["n"], 3);
        assert_eq!(c.pipelines[0].source.config["topics"], "a,b");
    }

    #[test]
    fn short_secrets_are_redacted_too() {
        let e = load_env("pipelines:\n  - name: a\n    source: { type: generator }\n    sink: { type: file }\n    concurrency: ${C}\n", &[("C", "zq")]).unwrap_err();
        assert!(!e[0].message.contains("zq"), "{}", e[0]);
        assert!(e[0].message.contains("***"), "{}", e[0]);
        assert_eq!(
            redact("about a: \"ab\" ab".into(), &["ab".into()]),
            "about a: \"***\" ***"
        );
    }

    #[test]
    fn secrets_are_redacted_from_errors() {
        let e = load_text("pipelines:\n  - name: a\n    source: { type: generator }\n    sink: { type: file }\n    concurrency: \"${TOKEN}\"\n").unwrap_err();
        assert!(!e[0].to_string().contains("abcd-secret"), "{}", e[0]);
    }
}
