//! Shared, readable state of each pipeline, for `/health` and `/pipelines`.

use std::collections::BTreeMap;

use parking_lot::Mutex;
use serde::Serialize;
use sluice_sdk::Health;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Starting,
    Running,
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
    pub restarts: u64,
    /// Why the last failed run ended (an error, a panic's text), kept after the restart.
    pub last_failure: Option<String>,
    /// Saved positions by partition, as in the offset store.
    pub committed: BTreeMap<i32, String>,
    pub lag: Option<u64>,
    /// The source's partitions with committed offset and lag, when it reports them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<sluice_sdk::PartitionPosition>,
}

struct Inner {
    state: State,
    failure: Option<String>,
    last_failure: Option<String>,
    delivery_problem: Option<String>,
    restarts: u64,
    committed: BTreeMap<i32, String>,
    lag: Option<u64>,
    partitions: Vec<sluice_sdk::PartitionPosition>,
}

/// One pipeline's status; connectors report through the two `Health` handles, the runtime
/// through the setters.
pub struct PipelineStatus {
    pub name: String,
    pub source_health: Health,
    pub sink_health: Health,
    inner: Mutex<Inner>,
}

impl PipelineStatus {
    pub fn new(name: &str) -> Self {
        PipelineStatus {
            name: name.to_string(),
            source_health: Health::new(),
            sink_health: Health::new(),
            inner: Mutex::new(Inner {
                state: State::Starting,
                failure: None,
                last_failure: None,
                delivery_problem: None,
                restarts: 0,
                committed: BTreeMap::new(),
                lag: None,
                partitions: Vec::new(),
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

    /// The host's own view of the sink: set while a batch cannot be delivered.
    pub fn set_delivery_problem(&self, problem: Option<String>) {
        let mut i = self.inner.lock();
        if i.delivery_problem != problem {
            i.delivery_problem = problem;
        }
    }

    pub fn set_committed(&self, committed: &BTreeMap<i32, String>) {
        self.inner.lock().committed.clone_from(committed);
    }

    pub fn set_lag(&self, lag: Option<u64>) {
        self.inner.lock().lag = lag;
    }

    pub fn set_partitions(&self, partitions: Vec<sluice_sdk::PartitionPosition>) {
        self.inner.lock().partitions = partitions;
    }

    pub fn snapshot(&self) -> Snapshot {
        let i = self.inner.lock();
        let problem = i
            .failure
            .clone()
            .map(|f| format!("pipeline failed: {f}"))
            .or_else(|| self.sink_health.problem().map(|p| format!("sink: {p}")))
            .or_else(|| i.delivery_problem.clone().map(|p| format!("sink: {p}")))
            .or_else(|| self.source_health.problem().map(|p| format!("source: {p}")));
        let healthy = matches!(i.state, State::Running | State::Finished | State::Starting)
            && problem.is_none();
        Snapshot {
            name: self.name.clone(),
            state: i.state,
            healthy,
            problem,
            restarts: i.restarts,
            last_failure: i.last_failure.clone(),
            committed: i.committed.clone(),
            lag: i.lag,
            partitions: i.partitions.clone(),
        }
    }
}
