//! Shared, readable state of each pipeline, for `/health` and `/pipelines`.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::Serialize;
use sluice_sdk::Health;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Starting,
    Running,
    /// Paused through the admin API: not reading, position kept.
    Paused,
    /// The source is exhausted and everything was delivered.
    Finished,
    /// The last run failed; a restart is scheduled.
    Failed,
    Stopped,
}

#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub name: String,
    pub state: State,
    pub healthy: bool,
    /// Why it is not healthy, if it is not.
    pub problem: Option<String>,
    /// Running, but a sink's records go to its fallback: which sink, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub degraded: Option<String>,
    pub restarts: u64,
    /// Why the last failed run ended (an error, a panic's text), kept after the restart.
    pub last_failure: Option<String>,
    /// Saved positions by partition, as in the offset store.
    pub committed: BTreeMap<i32, String>,
    pub lag: Option<u64>,
    /// The source's partitions with committed offset and lag, when it reports them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<sluice_sdk::PartitionPosition>,
    /// Each sink's state.
    pub sinks: Vec<SinkSnapshot>,
}

/// What a sink is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkState {
    /// Taking batches.
    Ok,
    /// Cannot take batches; they wait (and hold the commit).
    Unavailable,
    /// Unavailable for longer than its fallback's `after`: its batches go to the fallback.
    Fallback,
}

#[derive(Debug, Clone, Serialize)]
pub struct SinkSnapshot {
    pub name: String,
    pub state: SinkState,
    pub problem: Option<String>,
}

/// One sink's status: the connector reports through `health`, delivery through the setters.
pub struct SinkStatus {
    pub name: String,
    /// Declared under `sinks:`: problems name it.
    pub named: bool,
    pub health: Health,
    inner: Mutex<(Option<String>, bool)>,
}

impl SinkStatus {
    /// Set while a batch cannot be delivered.
    pub fn set_problem(&self, problem: Option<String>) {
        let mut i = self.inner.lock();
        if i.0 != problem {
            i.0 = problem;
        }
    }

    /// Whether the sink's batches go to its fallback.
    pub fn set_fallback(&self, on: bool) {
        self.inner.lock().1 = on;
    }

    pub fn snapshot(&self) -> SinkSnapshot {
        let i = self.inner.lock();
        let problem = self.health.problem().or_else(|| i.0.clone());
        let state = match (&problem, i.1) {
            (_, true) => SinkState::Fallback,
            (Some(_), false) => SinkState::Unavailable,
            (None, false) => SinkState::Ok,
        };
        SinkSnapshot {
            name: self.name.clone(),
            state,
            problem,
        }
    }

    fn label(&self) -> String {
        if self.named {
            format!("sink `{}`", self.name)
        } else {
            "sink".into()
        }
    }
}

struct Inner {
    state: State,
    failure: Option<String>,
    last_failure: Option<String>,
    restarts: u64,
    committed: BTreeMap<i32, String>,
    lag: Option<u64>,
    partitions: Vec<sluice_sdk::PartitionPosition>,
    /// Set while the digest copy (`integrity.digests_to`) cannot be written: commits wait.
    integrity_problem: Option<String>,
}

/// What an operator asks of a running pipeline through the admin API.
pub struct Control {
    /// `true` while paused; the source loop waits on it.
    paused: tokio::sync::watch::Sender<bool>,
    restart: tokio::sync::Notify,
}

impl Control {
    fn new() -> Self {
        Control {
            paused: tokio::sync::watch::channel(false).0,
            restart: tokio::sync::Notify::new(),
        }
    }

    /// Asks the pipeline to stop reading (`true`) or to read again (`false`).
    pub fn set_paused(&self, paused: bool) {
        self.paused.send_replace(paused);
    }

    pub fn is_paused(&self) -> bool {
        *self.paused.borrow()
    }

    /// Waits until the pipeline is no longer asked to pause.
    pub async fn resumed(&self) {
        let mut rx = self.paused.subscribe();
        // `wait_for` fails only when the sender is gone, and `self` holds it.
        let _ = rx.wait_for(|p| !*p).await;
    }

    /// Asks the supervisor to stop the current run gracefully and start a new one.
    pub fn request_restart(&self) {
        self.restart.notify_one();
    }

    /// Waits for a restart request (one stored request is taken at once).
    pub async fn restart_requested(&self) {
        self.restart.notified().await;
    }
}

/// One pipeline's status; connectors report through the two `Health` handles, the runtime
/// through the setters.
pub struct PipelineStatus {
    pub name: String,
    pub source_health: Health,
    pub sink_health: Health,
    pub control: Control,
    sinks: Mutex<Vec<Arc<SinkStatus>>>,
    inner: Mutex<Inner>,
}

impl PipelineStatus {
    pub fn new(name: &str) -> Self {
        PipelineStatus {
            name: name.to_string(),
            source_health: Health::new(),
            sink_health: Health::new(),
            control: Control::new(),
            sinks: Mutex::new(Vec::new()),
            inner: Mutex::new(Inner {
                state: State::Starting,
                failure: None,
                last_failure: None,
                restarts: 0,
                committed: BTreeMap::new(),
                lag: None,
                partitions: Vec::new(),
                integrity_problem: None,
            }),
        }
    }

    pub fn set_state(&self, state: State) {
        let mut i = self.inner.lock();
        i.state = state;
        if state == State::Running {
            i.failure = None;
        }
    }

    pub fn set_failed(&self, reason: String) {
        let mut i = self.inner.lock();
        i.state = State::Failed;
        i.last_failure = Some(reason.clone());
        i.failure = Some(reason);
        i.restarts += 1;
    }

    /// The status of the sink `name`, kept across runs. The single sink of a pipeline
    /// reports through `sink_health`.
    pub fn sink(&self, name: &str, named: bool) -> Arc<SinkStatus> {
        let mut sinks = self.sinks.lock();
        if let Some(s) = sinks.iter().find(|s| s.name == name) {
            return s.clone();
        }
        let s = Arc::new(SinkStatus {
            name: name.to_string(),
            named,
            health: if named {
                Health::new()
            } else {
                self.sink_health.clone()
            },
            inner: Mutex::new((None, false)),
        });
        sinks.push(s.clone());
        s
    }

    pub fn set_committed(&self, committed: &BTreeMap<i32, String>) {
        self.inner.lock().committed.clone_from(committed);
    }

    /// The digest copy's problem (commits wait while it is set), or `None` once written.
    pub fn set_integrity_problem(&self, problem: Option<String>) {
        self.inner.lock().integrity_problem = problem;
    }

    pub fn set_lag(&self, lag: Option<u64>) {
        self.inner.lock().lag = lag;
    }

    pub fn set_partitions(&self, partitions: Vec<sluice_sdk::PartitionPosition>) {
        self.inner.lock().partitions = partitions;
    }

    pub fn snapshot(&self) -> Snapshot {
        let sinks: Vec<(SinkSnapshot, String)> = self
            .sinks
            .lock()
            .iter()
            .map(|s| (s.snapshot(), s.label()))
            .collect();
        let sink_problem = || {
            sinks
                .iter()
                .find_map(|(s, label)| match (s.state, &s.problem) {
                    (SinkState::Unavailable, Some(p)) => Some(format!("{label}: {p}")),
                    _ => None,
                })
        };
        let degraded = sinks.iter().find_map(|(s, label)| {
            (s.state == SinkState::Fallback).then(|| {
                let why = s.problem.as_deref().unwrap_or("unavailable");
                format!("{label} is unavailable ({why}); its records go to its fallback")
            })
        });
        let i = self.inner.lock();
        let problem = i
            .failure
            .clone()
            .map(|f| format!("pipeline failed: {f}"))
            .or_else(sink_problem)
            .or_else(|| {
                i.integrity_problem
                    .clone()
                    .map(|p| format!("integrity: {p}"))
            })
            .or_else(|| self.source_health.problem().map(|p| format!("source: {p}")));
        // Paused is what the operator asked for, not a fault: still healthy.
        let healthy = matches!(
            i.state,
            State::Running | State::Finished | State::Starting | State::Paused
        ) && problem.is_none();
        Snapshot {
            name: self.name.clone(),
            state: i.state,
            healthy,
            problem,
            degraded,
            restarts: i.restarts,
            last_failure: i.last_failure.clone(),
            committed: i.committed.clone(),
            lag: i.lag,
            partitions: i.partitions.clone(),
            sinks: sinks.into_iter().map(|(s, _)| s).collect(),
        }
    }
}
