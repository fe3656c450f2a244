//! Pipelines: building them from configuration, running one instance (source loop +
//! delivery), and supervising restarts.

mod batch;
mod dead;
mod delivery;
mod fallback;
mod fanout;
mod fault;
mod route;
mod runtime;
pub mod tracker;

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use sluice_sdk::{BuildContext, DeadLetterWriter, Registry, RegistryError, Sink, Source};
use tokio_util::sync::CancellationToken;

use crate::config::{ConfigError, ConnectorSpec, PipelineConfig};
use crate::metrics::{Metrics, PipelineMetrics};
use crate::status::{PipelineStatus, State};
use crate::transform::Chain;
use sluice_sdk::retry::Backoff;

pub use dead::ReplayLookup;
pub use fault::panic_text;
use route::place;
pub use route::SinkDef;
pub use runtime::{run_once, RunEnd};

/// Why a pipeline run ended in failure.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("source: {0}")]
    Source(String),
    #[error("sink: {0}")]
    Sink(String),
    #[error("{0}")]
    DeadLetter(String),
    #[error("{0}")]
    Offsets(#[from] crate::offsets::OffsetError),
    #[error("building connectors: {0}")]
    Build(String),
    /// A stage panicked; the text is the panic's message.
    #[error("{stage} panicked: {message}")]
    Panic {
        stage: &'static str,
        message: String,
    },
    /// The shutdown ran out of time: the work in hand was abandoned, uncommitted.
    #[error("abandoned at the shutdown timeout")]
    Aborted,
}

/// A validated pipeline: configuration plus what is needed to build fresh connector
/// instances on every (re)start.
pub struct PipelineDef {
    pub cfg: PipelineConfig,
    pub name: Arc<str>,
    pub chain: Chain,
    pub build: BuildContext,
    /// The pipeline's dead-letter queue: transform failures, unrouted records, and the
    /// sinks without their own.
    pub dead_letter: ConnectorSpec,
    /// At least one; the single `sink:` is one named `default`.
    pub sinks: Vec<SinkDef>,
}

impl PipelineDef {
    /// Checks everything that can be checked without I/O: connector types and options,
    /// transforms. Every problem is reported with its position.
    pub fn validate(
        cfg: &PipelineConfig,
        registry: &Registry,
        data_dir: &std::path::Path,
    ) -> Result<PipelineDef, Vec<ConfigError>> {
        let at = cfg.declared();
        let mut errors = Vec::new();
        let build = BuildContext {
            pipeline: cfg.name.as_str().into(),
            data_dir: data_dir.to_path_buf(),
        };
        let dead_letter = cfg.dead_letter.clone().unwrap_or(ConnectorSpec {
            type_name: "file".into(),
            config: serde_json::json!({}),
        });
        if let Err(e) =
            registry.build_source(&cfg.source.type_name, cfg.source.config.clone(), &build)
        {
            errors.push(place(&at, "source", &cfg.source.type_name, e));
        }
        let mut sinks = Vec::new();
        for plan in cfg.sink_plans() {
            sinks.extend(SinkDef::validate(
                plan,
                &dead_letter,
                registry,
                &build,
                &at,
                &mut errors,
            ));
        }
        if let Err(e) =
            registry.build_dead_letter(&dead_letter.type_name, dead_letter.config.clone(), &build)
        {
            errors.push(place(&at, "dead_letter", &dead_letter.type_name, e));
        }
        let chain = match Chain::compile(&cfg.transforms, registry, &build, &at) {
            Ok(c) => Some(c),
            Err(mut e) => {
                errors.append(&mut e);
                None
            }
        };
        match chain {
            Some(chain) if errors.is_empty() => Ok(PipelineDef {
                name: cfg.name.as_str().into(),
                cfg: cfg.clone(),
                chain,
                build,
                dead_letter,
                sinks,
            }),
            _ => Err(errors),
        }
    }

    fn connectors(&self, registry: &Registry, input: &Input) -> Result<Connectors, PipelineError> {
        let b = |e: RegistryError| PipelineError::Build(e.to_string());
        let source = match &input.source {
            Some(build) => build()?,
            None => registry
                .build_source(
                    &self.cfg.source.type_name,
                    self.cfg.source.config.clone(),
                    &self.build,
                )
                .map_err(b)?,
        };
        let dlq: Arc<dyn DeadLetterWriter> = registry
            .build_dead_letter(
                &self.dead_letter.type_name,
                self.dead_letter.config.clone(),
                &self.build,
            )
            .map_err(b)?;
        let mut sinks = Vec::with_capacity(self.sinks.len());
        for s in &self.sinks {
            let spec = &s.plan.spec;
            let sink = registry
                .build_sink(&spec.type_name, spec.config.clone(), &self.build)
                .map_err(b)?;
            let own_dlq = if s.dead_letter == self.dead_letter {
                dlq.clone()
            } else {
                registry
                    .build_dead_letter(
                        &s.dead_letter.type_name,
                        s.dead_letter.config.clone(),
                        &self.build,
                    )
                    .map_err(b)?
            };
            let fallback = match &s.plan.fallback {
                Some(f) => Some(
                    registry
                        .build_sink(&f.sink.type_name, f.sink.config.clone(), &self.build)
                        .map_err(b)?,
                ),
                None => None,
            };
            sinks.push(SinkParts {
                sink,
                dlq: own_dlq,
                fallback,
            });
        }
        Ok((source, sinks, dlq))
    }
}

/// Builds the source of one run in place of the configured one.
pub type SourceFactory = dyn Fn() -> Result<Box<dyn Source>, PipelineError> + Send + Sync;

/// What a run reads and where it keeps its position. `sluice run` reads the configured source
/// into the pipeline's offset store; a replay reads another source (dead letters, a range of
/// the source) and keeps its progress elsewhere, so the pipeline's own position never moves.
#[derive(Default, Clone)]
pub struct Input {
    /// `None`: the pipeline's configured source.
    pub source: Option<Arc<SourceFactory>>,
    /// Where positions are saved; `None`: the pipeline's offset store.
    pub store: Option<PathBuf>,
    /// A dead-letter replay's letters, so a record that fails again keeps its first failure.
    pub replayed: Option<Arc<ReplayLookup>>,
}

/// Fresh instances of one sink's connectors for one run.
struct SinkParts {
    sink: Box<dyn Sink>,
    dlq: Arc<dyn DeadLetterWriter>,
    fallback: Option<Box<dyn Sink>>,
}

/// Fresh connector instances for one run: the source, each sink, the pipeline's DLQ.
type Connectors = (Box<dyn Source>, Vec<SinkParts>, Arc<dyn DeadLetterWriter>);

/// What every pipeline run shares with the host.
pub struct HostEnv {
    pub registry: Registry,
    pub metrics: Arc<Metrics>,
    pub data_dir: PathBuf,
    pub shutdown_timeout: Duration,
}

/// Runs a pipeline until it finishes or the host stops, restarting it with backoff after a
/// failure. Other pipelines are unaffected by its failures.
pub async fn supervise(
    def: Arc<PipelineDef>,
    env: Arc<HostEnv>,
    status: Arc<PipelineStatus>,
    stop: CancellationToken,
    abort: CancellationToken,
) {
    let metrics: PipelineMetrics = env.metrics.pipeline(&def.name);
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    let input = Input::default();
    loop {
        status.set_state(State::Starting);
        let started = Instant::now();
        // A restart asked through the admin API stops this run like a shutdown does (drained,
        // committed), then the loop starts the next one.
        let run_stop = stop.child_token();
        let restart = {
            let status = status.clone();
            let run_stop = run_stop.clone();
            tokio::spawn(async move {
                status.control.restart_requested().await;
                run_stop.cancel();
            })
        };
        // A panic outside the stages that catch their own (building or opening a connector,
        // the last commit, closing) fails this run like any other error: it is restarted.
        let run = runtime::run_once(&def, &env, &status, &metrics, &run_stop, &abort, &input);
        let result = AssertUnwindSafe(run)
            .catch_unwind()
            .await
            .unwrap_or_else(|p| {
                Err(PipelineError::Panic {
                    stage: "pipeline run",
                    message: panic_text(&*p),
                })
            });
        restart.abort();
        if run_stop.is_cancelled() && !stop.is_cancelled() {
            match result {
                Ok(_) => tracing::info!(pipeline = %def.name, "pipeline restarting on request"),
                Err(e) => {
                    tracing::warn!(pipeline = %def.name, error = %e, "pipeline restarting on request; the stopped run ended with an error")
                }
            }
            backoff.reset();
            continue;
        }
        match result {
            Ok(RunEnd::Finished) => {
                tracing::info!(pipeline = %def.name, "pipeline finished: source exhausted and everything delivered");
                status.set_state(State::Finished);
                return;
            }
            Ok(RunEnd::Stopped) => {
                tracing::info!(pipeline = %def.name, "pipeline stopped");
                status.set_state(State::Stopped);
                return;
            }
            Err(PipelineError::Aborted) => {
                tracing::warn!(pipeline = %def.name, "pipeline stopped at the shutdown timeout; what was not delivered is read again on the next start");
                status.set_state(State::Stopped);
                return;
            }
            Err(e) => {
                if started.elapsed() > Duration::from_secs(120) {
                    backoff.reset();
                }
                let wait = backoff.next_delay().max(Duration::from_millis(500));
                tracing::error!(pipeline = %def.name, error = %e, "pipeline failed; restarting in {}", humantime::format_duration(Duration::from_millis(wait.as_millis() as u64)));
                status.set_failed(e.to_string());
                metrics.restarts.inc();
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = status.control.restart_requested() => {
                        tracing::info!(pipeline = %def.name, "pipeline restarting on request");
                        backoff.reset();
                    }
                    _ = stop.cancelled() => {
                        status.set_state(State::Stopped);
                        return;
                    }
                }
            }
        }
    }
}
