//! `sinks:`, the named sinks of a pipeline: each a connector (`type` and its options) with the
//! host's own keys beside them (`batch`, `retry`, `rate_limit`, `concurrency`, `dead_letter`,
//! `route`, `transforms`, `fallback`), which default to the pipeline's.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use sluice_sdk::config::duration;
use sluice_sdk::{BuildContext, Registry};

use crate::integrity::IntegrityConfig;

use super::{
    default_data_dir, deserialize_all, join, BatchConfig, ConfigError, ConnectorSpec,
    PipelineConfig, RateLimitConfig, RetryConfig,
};

/// The name a pipeline's single `sink:` goes by in metrics and status.
pub const SINGLE_SINK: &str = "default";

/// One entry of `sinks:` as written.
#[derive(Debug, Clone)]
pub struct NamedSink {
    pub name: String,
    pub spec: ConnectorSpec,
    pub batch: Option<BatchConfig>,
    pub retry: Option<RetryConfig>,
    pub rate_limit: Option<RateLimitConfig>,
    pub concurrency: Option<usize>,
    pub dead_letter: Option<ConnectorSpec>,
    /// Which records go to this sink; `None`: every record.
    pub route: Option<RouteConfig>,
    /// Applied after routing, to this sink's copy only.
    pub transforms: Vec<ConnectorSpec>,
    pub fallback: Option<FallbackConfig>,
    pub integrity: Option<IntegrityConfig>,
}

/// `route:`: the filter's conditions on one field, or `all`/`any` of nested routes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    #[serde(default)]
    pub field: Option<String>,
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
    #[serde(default)]
    pub all: Option<Vec<RouteConfig>>,
    #[serde(default)]
    pub any: Option<Vec<RouteConfig>>,
}

/// `fallback:`: where a sink's batches go once it has been unavailable for `after`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FallbackConfig {
    #[serde(with = "duration")]
    pub after: Duration,
    pub sink: ConnectorSpec,
}

/// What happens to a record no route of a pipeline's named sinks takes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unrouted {
    /// Dead-lettered with kind `unrouted`.
    #[default]
    DeadLetter,
    /// Dropped, counted in `sluice_records_filtered_total`.
    Drop,
}

/// The host's keys of a named sink; everything else belongs to the connector.
const HOST_KEYS: [&str; 9] = [
    "batch",
    "retry",
    "rate_limit",
    "concurrency",
    "dead_letter",
    "route",
    "transforms",
    "fallback",
    "integrity",
];

/// Problems found: (path below the pipeline, message).
type Problems = Vec<(String, String)>;

/// Reads `sinks:` with every problem in it, each at its path below the pipeline. Each sink's
/// `transforms` are checked by building them from `registry`, as the pipeline's are.
pub fn parse(value: serde_yaml::Value, registry: &Registry) -> (Vec<NamedSink>, Problems) {
    let mut errors = Vec::new();
    let map = match value {
        serde_yaml::Value::Mapping(m) => m,
        _ => {
            let msg = "expected a map of named sinks (`sinks: { name: { type: ... } }`)";
            return (Vec::new(), vec![("sinks".into(), msg.into())]);
        }
    };
    if map.is_empty() {
        errors.push(("sinks".into(), "`sinks` needs at least one sink".into()));
    }
    let mut out = Vec::new();
    for (k, v) in map {
        let Some(name) = k.as_str().map(str::to_string) else {
            errors.push(("sinks".into(), "a sink's name must be a string".into()));
            continue;
        };
        let here = format!("sinks.{name}");
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            errors.push((
                here.clone(),
                format!("sink name `{name}`: use only letters, digits, `_` and `-`"),
            ));
            continue;
        }
        let (sink, errs) = parse_one(name, v, registry);
        errors.extend(errs.into_iter().map(|(p, m)| (join(&here, &p), m)));
        out.extend(sink);
    }
    (out, errors)
}

/// Reads one host key with every problem in it.
fn take<T: serde::de::DeserializeOwned>(
    m: &mut serde_yaml::Mapping,
    key: &str,
    errors: &mut Problems,
) -> Option<T> {
    let v = m.remove(key).filter(|v| !v.is_null())?;
    let (t, errs) = deserialize_all::<T>(v, &[]);
    errors.extend(errs.into_iter().map(|(p, msg)| (join(key, &p), msg)));
    t
}

fn parse_one(
    name: String,
    value: serde_yaml::Value,
    registry: &Registry,
) -> (Option<NamedSink>, Problems) {
    let mut errors = Vec::new();
    let mut m = match value {
        serde_yaml::Value::Mapping(m) => m,
        _ => {
            let msg = "expected a sink: a mapping with `type` and its options";
            return (None, vec![(String::new(), msg.into())]);
        }
    };
    let mut transforms = Vec::new();
    match m.remove("transforms") {
        None | Some(serde_yaml::Value::Null) => {}
        Some(serde_yaml::Value::Sequence(items)) => {
            // Transform factories do no I/O and need no more than this to check options.
            let ctx = BuildContext {
                pipeline: "?".into(),
                data_dir: default_data_dir(),
            };
            for (j, item) in items.into_iter().enumerate() {
                let (t, errs) = deserialize_all::<ConnectorSpec>(item, &[]);
                let here = format!("transforms[{j}]");
                errors.extend(errs.into_iter().map(|(p, msg)| (join(&here, &p), msg)));
                let Some(t) = t else { continue };
                match crate::transform::build(j, &t, registry, &ctx) {
                    Ok(_) => transforms.push(t),
                    Err(e) => errors.push(e),
                }
            }
        }
        Some(_) => errors.push(("transforms".into(), "expected a list of transforms".into())),
    }
    // `batch` as a mapping is the host's batching; as a word it is the connector's own
    // option (the `http` sink's `batch: ndjson`), as it is under a single `sink:`. A named
    // sink in that mode takes its batch size from the pipeline's `batch:`.
    let connector_batch = m.get("batch").is_some_and(|v| v.is_string());
    let batch = if connector_batch {
        None
    } else {
        take::<BatchConfig>(&mut m, "batch", &mut errors)
    };
    let retry = take::<RetryConfig>(&mut m, "retry", &mut errors);
    let rate_limit = take::<RateLimitConfig>(&mut m, "rate_limit", &mut errors);
    let concurrency = take::<usize>(&mut m, "concurrency", &mut errors);
    let dead_letter = take::<ConnectorSpec>(&mut m, "dead_letter", &mut errors);
    let route = take::<RouteConfig>(&mut m, "route", &mut errors);
    let fallback = take::<FallbackConfig>(&mut m, "fallback", &mut errors);
    let integrity = take::<IntegrityConfig>(&mut m, "integrity", &mut errors);
    debug_assert!(HOST_KEYS
        .iter()
        .all(|k| !m.contains_key(*k) || (*k == "batch" && connector_batch)));
    let (spec, errs) = deserialize_all::<ConnectorSpec>(serde_yaml::Value::Mapping(m), &[]);
    errors.extend(errs);
    let sink = spec.filter(|_| errors.is_empty()).map(|spec| NamedSink {
        name,
        spec,
        batch,
        retry,
        rate_limit,
        concurrency,
        dead_letter,
        route,
        transforms,
        fallback,
        integrity,
    });
    (sink, errors)
}

/// A sink as a run sees it, the pipeline's defaults applied: the single `sink:` is one
/// named [`SINGLE_SINK`] with no route.
#[derive(Debug, Clone)]
pub struct SinkPlan {
    pub name: String,
    /// Declared under `sinks:` (its dead letters then name it).
    pub named: bool,
    /// Its section in the configuration, for error positions (`sink`, `sinks.db`).
    pub section: String,
    pub spec: ConnectorSpec,
    pub batch: BatchConfig,
    pub retry: RetryConfig,
    pub rate_limit: Option<RateLimitConfig>,
    pub concurrency: Option<usize>,
    pub dead_letter: Option<ConnectorSpec>,
    pub route: Option<RouteConfig>,
    pub transforms: Vec<ConnectorSpec>,
    pub fallback: Option<FallbackConfig>,
    pub integrity: Option<IntegrityConfig>,
}

impl PipelineConfig {
    /// Every sink of the pipeline, in the order declared.
    pub fn sink_plans(&self) -> Vec<SinkPlan> {
        if let Some(spec) = &self.sink {
            return vec![SinkPlan {
                name: SINGLE_SINK.into(),
                named: false,
                section: "sink".into(),
                spec: spec.clone(),
                batch: self.batch,
                retry: self.retry,
                // The pipeline's rate limit applies at the source already.
                rate_limit: None,
                concurrency: self.concurrency,
                dead_letter: self.dead_letter.clone(),
                route: None,
                transforms: Vec::new(),
                fallback: None,
                integrity: self.integrity.clone(),
            }];
        }
        self.sinks
            .iter()
            .map(|s| SinkPlan {
                name: s.name.clone(),
                named: true,
                section: format!("sinks.{}", s.name),
                spec: s.spec.clone(),
                batch: s.batch.unwrap_or(self.batch),
                retry: s.retry.unwrap_or(self.retry),
                rate_limit: s.rate_limit,
                concurrency: s.concurrency.or(self.concurrency),
                dead_letter: s.dead_letter.clone().or_else(|| self.dead_letter.clone()),
                route: s.route.clone(),
                transforms: s.transforms.clone(),
                fallback: s.fallback.clone(),
                integrity: s.integrity.clone(),
            })
            .collect()
    }
}

/// Value checks of the named sinks' own keys.
pub fn check(p: &PipelineConfig) -> Vec<ConfigError> {
    let d = p.declared();
    let mut errors = Vec::new();
    let mut integrity = |section: &str, c: &IntegrityConfig| {
        if let Err((key, e)) = c.keys() {
            let path = join(section, &format!("integrity.{key}"));
            errors.push(d.error(&path, e.to_string()));
        }
    };
    if let Some(c) = &p.integrity {
        if p.sinks.is_empty() {
            integrity("", c);
        }
    }
    for s in &p.sinks {
        if let Some(c) = &s.integrity {
            integrity(&format!("sinks.{}", s.name), c);
        }
    }
    // One digest log per pipeline: its copy has one destination.
    let copies: Vec<(String, &crate::integrity::DigestsTo)> = match &p.integrity {
        Some(c) if p.sinks.is_empty() => c.digests_to.iter().map(|d| (String::new(), d)).collect(),
        _ => p
            .sinks
            .iter()
            .filter_map(|s| {
                let d = s.integrity.as_ref()?.digests_to.as_ref()?;
                Some((format!("sinks.{}", s.name), d))
            })
            .collect(),
    };
    for (section, to) in &copies {
        if let Err((key, message)) = to.check() {
            errors.push(d.error(
                &join(section, &format!("integrity.digests_to.{key}")),
                message,
            ));
        }
    }
    if let Some((section, first)) = copies.first() {
        if let Some((other, _)) = copies.iter().find(|(_, to)| to != first) {
            errors.push(d.error(
                &join(other, "integrity.digests_to"),
                format!(
                    "the pipeline's digests go to one place: `{}` already names {}",
                    join(section, "integrity.digests_to"),
                    first.describe()
                ),
            ));
        }
    }
    if p.integrity.is_some() && !p.sinks.is_empty() {
        errors.push(d.error(
            "integrity",
            "with `sinks:`, give `integrity:` to each named sink that needs it",
        ));
    }
    for s in &p.sinks {
        let at = |key: &str, msg: &str| d.error(&format!("sinks.{}.{key}", s.name), msg);
        if let Some(b) = s.batch {
            if b.max_events == 0 {
                errors.push(at("batch.max_events", "max_events must be at least 1"));
            }
            if b.max_bytes == 0 {
                errors.push(at("batch.max_bytes", "max_bytes must be at least 1 byte"));
            }
        }
        if s.retry.is_some_and(|r| r.max_attempts == 0) {
            errors.push(at("retry.max_attempts", "max_attempts must be at least 1"));
        }
        if s.concurrency == Some(0) {
            errors.push(at("concurrency", "concurrency must be at least 1"));
        }
        if let Some(r) = s.rate_limit {
            if r.events_per_second == 0 {
                errors.push(at(
                    "rate_limit.events_per_second",
                    "events_per_second must be at least 1",
                ));
            }
            if r.burst == Some(0) {
                errors.push(at("rate_limit.burst", "burst must be at least 1"));
            }
        }
        if let Some(f) = &s.fallback {
            if f.after.is_zero() {
                errors.push(at("fallback.after", "after must be longer than 0s"));
            }
        }
    }
    errors
}
