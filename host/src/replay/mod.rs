//! `sluice replay`: sends a range of a pipeline's source again (by time on Kafka, by position
//! on a file, by log offset or receive time on an `http_server`'s write-ahead log) through its
//! transforms and routing, or straight to one sink, without moving the pipeline's position:
//! the range is read by a source of its own (a Kafka consumer that is assigned, never
//! subscribed nor committed; a file reader between two byte positions; a reader of the log's
//! segments between two offsets, without the listener) whose progress is kept in a scratch
//! store, never in the pipeline's offset store.

pub mod progress;
pub mod range;
pub mod time;
#[cfg(feature = "http-server")]
pub mod wal;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;
use sluice_sdk::Registry;
use tokio_util::sync::CancellationToken;

use crate::config::{ConnectorSpec, PipelineConfig};
use crate::metrics::Metrics;
use crate::pipeline::{HostEnv, Input, PipelineDef, RunEnd};
use crate::status::PipelineStatus;

/// What `sluice replay` was asked.
pub struct Request<'a> {
    pub pipeline: &'a str,
    pub ask: range::Ask<'a>,
    pub filters: &'a [String],
    pub sink: Option<&'a str>,
    pub dry_run: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("no pipeline `{0}` in the configuration")]
    NoPipeline(String),
    #[error("--filter `{0}`: expected FIELD=VALUE")]
    Filter(String),
    #[error("--sink `{wanted}`: pipeline `{pipeline}` has the sinks {names:?}")]
    NoSink {
        wanted: String,
        pipeline: String,
        names: Vec<String>,
    },
    #[error("sink `{0}` has `integrity:`: a replay would restart its chains; replay into a sink without integrity")]
    Integrity(String),
    #[error("{0}")]
    Range(#[from] range::RangeError),
    #[error("invalid replay: {0}")]
    Invalid(String),
    #[error("cannot create the replay's scratch directory: {0}")]
    Scratch(std::io::Error),
    #[error("replay failed: {0}")]
    Failed(crate::pipeline::PipelineError),
}

/// A `filter` transform for `FIELD=VALUE`: VALUE is taken as JSON when it is a JSON scalar
/// (`200`, `true`, `"x"`), as text otherwise.
pub fn filter_spec(text: &str) -> Result<ConnectorSpec, ReplayError> {
    let (field, value) = text
        .split_once('=')
        .filter(|(f, _)| !f.trim().is_empty())
        .ok_or_else(|| ReplayError::Filter(text.to_string()))?;
    let value = match serde_json::from_str::<Value>(value) {
        Ok(v) if !v.is_object() && !v.is_array() => v,
        _ => Value::String(value.to_string()),
    };
    Ok(ConnectorSpec {
        type_name: "filter".into(),
        config: serde_json::json!({ "field": field.trim(), "equals": value }),
    })
}

/// The pipeline as the replay runs it: the filters before its transforms (or before nothing,
/// with `--sink`), and with `--sink` that sink alone, unrouted.
fn replay_def(
    p: &PipelineConfig,
    req: &Request<'_>,
    registry: &Registry,
    data_dir: &Path,
) -> Result<PipelineDef, ReplayError> {
    let mut cfg = p.clone();
    let filters = req
        .filters
        .iter()
        .map(|f| filter_spec(f))
        .collect::<Result<Vec<_>, _>>()?;
    cfg.transforms = match req.sink {
        Some(_) => filters,
        None => filters.into_iter().chain(p.transforms.clone()).collect(),
    };
    let mut def = PipelineDef::validate(&cfg, registry, data_dir).map_err(|errors| {
        ReplayError::Invalid(
            errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    if let Some(wanted) = req.sink {
        let names = def.sinks.iter().map(|s| s.name.to_string()).collect();
        def.sinks.retain(|s| &*s.name == wanted);
        let Some(s) = def.sinks.first_mut() else {
            return Err(ReplayError::NoSink {
                wanted: wanted.to_string(),
                pipeline: p.name.clone(),
                names,
            });
        };
        s.route = None;
    }
    if let Some(s) = def.sinks.iter().find(|s| s.plan.integrity.is_some()) {
        return Err(ReplayError::Integrity(s.name.to_string()));
    }
    Ok(def)
}

/// Where a replay keeps its own progress (removed at the end): never the pipeline's store.
fn scratch_store(data_dir: &Path, pipeline: &str) -> PathBuf {
    data_dir.join("replay").join(format!(
        "{}.{}.json",
        crate::offsets::file_name(pipeline).trim_end_matches(".json"),
        std::process::id()
    ))
}

/// Runs `sluice replay`; the exit status: 0 when the range was sent to its end (dead letters
/// are counted in the summary), 1 on a fatal error or when stopped before the end.
pub async fn run(
    cfg: &crate::config::Config,
    registry: Registry,
    req: Request<'_>,
) -> Result<bool, ReplayError> {
    let p = cfg
        .pipelines
        .iter()
        .find(|p| p.name == req.pipeline)
        .ok_or_else(|| ReplayError::NoPipeline(req.pipeline.to_string()))?;
    let def = replay_def(p, &req, &registry, &cfg.host.data_dir)?;
    // Resolving a Kafka range asks the broker and blocks.
    let plan = tokio::task::block_in_place(|| {
        range::resolve(
            &p.source.type_name,
            &p.source.config,
            &p.name,
            &cfg.host.data_dir,
            &req.ask,
        )
    })?;
    if req.dry_run {
        print!("{}", plan.describe());
        println!("dry run: nothing sent");
        return Ok(true);
    }
    eprint!("{}", plan.describe());
    sluice_sdk::fs::create_private_dir(&cfg.host.data_dir.join("replay"))
        .map_err(ReplayError::Scratch)?;
    let store = scratch_store(&cfg.host.data_dir, &p.name);
    let _ = std::fs::remove_file(&store);
    let input = Input {
        source: Some(plan.factory(&p.name)),
        store: Some(store.clone()),
        replayed: None,
    };
    let metrics = Arc::new(Metrics::new());
    let env = HostEnv {
        registry,
        metrics: metrics.clone(),
        data_dir: cfg.host.data_dir.clone(),
        shutdown_timeout: cfg.host.shutdown_timeout,
    };
    let status = Arc::new(PipelineStatus::new(&def.name));
    let pm = metrics.pipeline(&def.name);
    let stop = CancellationToken::new();
    let abort = CancellationToken::new();
    let signals = {
        let (stop, abort) = (stop.clone(), abort.clone());
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            eprintln!("stopping the replay: finishing the batches in flight");
            stop.cancel();
            let _ = tokio::signal::ctrl_c().await;
            abort.cancel();
        })
    };
    let shown = CancellationToken::new();
    let bar = tokio::spawn(progress::run(
        metrics.clone(),
        def.name.to_string(),
        plan.total(),
        shown.clone(),
    ));
    let started = Instant::now();
    let result = crate::pipeline::run_once(&def, &env, &status, &pm, &stop, &abort, &input).await;
    shown.cancel();
    let _ = bar.await;
    signals.abort();
    let _ = std::fs::remove_file(&store);
    let counts = progress::Counts::of(&metrics, &def.name);
    eprint!(
        "{}",
        progress::summary(&def.name, counts, started.elapsed())
    );
    match result {
        Ok(RunEnd::Finished) => Ok(true),
        Ok(RunEnd::Stopped) => {
            eprintln!("error: the replay stopped before the end of its range");
            Ok(false)
        }
        Err(e) => Err(ReplayError::Failed(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_take_json_scalars_or_text() {
        let f = filter_spec("a.b=200").unwrap();
        assert_eq!(f.type_name, "filter");
        assert_eq!(f.config, serde_json::json!({"field": "a.b", "equals": 200}));
        let f = filter_spec("kind=gap.identified").unwrap();
        assert_eq!(f.config["equals"], "gap.identified");
        let f = filter_spec("ok=true").unwrap();
        assert_eq!(f.config["equals"], true);
        let f = filter_spec("x=[1]").unwrap();
        assert_eq!(f.config["equals"], "[1]");
        let f = filter_spec("x=a=b").unwrap();
        assert_eq!(f.config["equals"], "a=b");
        assert!(filter_spec("novalue").is_err());
        assert!(filter_spec("=v").is_err());
    }
}
