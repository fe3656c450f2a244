//! The librdkafka client context shared by consumer and producers: routes librdkafka's logs
//! to `tracing`, turns its error events into [`Health`], and (for the consumer) reads lag and
//! broker states from the periodic statistics so no extra broker request is needed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::TopicPartitionList;
use serde::Deserialize;
use sluice_sdk::Health;

/// `u64::MAX` in [`ClientState::lag`] means "not known yet".
const LAG_UNKNOWN: u64 = u64::MAX;

/// What the context learned, readable from the connector.
#[derive(Debug)]
pub struct ClientState {
    health: Mutex<Option<Health>>,
    /// The current problem, and whether it is about reaching the brokers (cleared as soon as
    /// statistics show a broker up) or something else (cleared when records flow).
    problem: Mutex<Option<Problem>>,
    lag: AtomicU64,
    role: &'static str,
    /// Bumped on every assignment; the source then reads `assigned` to learn which partitions
    /// start over (checked per message with one atomic load).
    assign_generation: AtomicU64,
    assigned: Mutex<Vec<(String, i32)>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Problem {
    Connectivity,
    Other,
}

impl ClientState {
    pub fn new(role: &'static str) -> Arc<Self> {
        Arc::new(ClientState {
            health: Mutex::new(None),
            problem: Mutex::new(None),
            lag: AtomicU64::new(LAG_UNKNOWN),
            role,
            assign_generation: AtomicU64::new(0),
            assigned: Mutex::new(Vec::new()),
        })
    }

    /// Starts reporting into the host's health handle.
    pub fn attach(&self, health: Health) {
        *self.health.lock() = Some(health);
    }

    /// Records or a delivery came through: whatever was wrong is over.
    pub fn mark_working(&self) {
        let mut p = self.problem.lock();
        if p.take().is_some() {
            if let Some(h) = &*self.health.lock() {
                h.set_healthy();
            }
        }
    }

    /// A broker answered (statistics show it up): connectivity problems are over.
    fn mark_connected(&self) {
        let mut p = self.problem.lock();
        if *p == Some(Problem::Connectivity) {
            *p = None;
            if let Some(h) = &*self.health.lock() {
                h.set_healthy();
            }
        }
    }

    pub fn report(&self, error: &KafkaError, reason: &str) {
        let kind = if is_connectivity(error) {
            Problem::Connectivity
        } else {
            Problem::Other
        };
        let text = if reason.is_empty() {
            format!("kafka {}: {error}", self.role)
        } else {
            format!("kafka {}: {reason}", self.role)
        };
        let mut p = self.problem.lock();
        // A non-connectivity problem is not hidden by a later connectivity one.
        if *p != Some(Problem::Other) || kind == Problem::Other {
            *p = Some(kind);
        }
        if let Some(h) = &*self.health.lock() {
            h.set_unhealthy(text);
        }
    }

    /// Current assignment generation.
    pub fn assign_generation(&self) -> u64 {
        self.assign_generation.load(Ordering::Acquire)
    }

    /// Partitions assigned since the last call.
    pub fn take_assigned(&self) -> Vec<(String, i32)> {
        std::mem::take(&mut *self.assigned.lock())
    }

    fn on_assign(&self, tpl: &TopicPartitionList) {
        let mut a = self.assigned.lock();
        a.extend(
            tpl.elements()
                .iter()
                .map(|e| (e.topic().to_string(), e.partition())),
        );
        self.assign_generation.fetch_add(1, Ordering::Release);
    }

    /// A problem found outside librdkafka (the schema registry); cleared when records flow.
    pub fn report_text(&self, text: &str) {
        *self.problem.lock() = Some(Problem::Other);
        if let Some(h) = &*self.health.lock() {
            h.set_unhealthy(format!("kafka {}: {text}", self.role));
        }
    }

    /// Records available upstream but not yet read, from the last statistics.
    pub fn lag(&self) -> Option<u64> {
        match self.lag.load(Ordering::Relaxed) {
            LAG_UNKNOWN => None,
            n => Some(n),
        }
    }

    fn on_stats(&self, raw: &[u8]) {
        let stats: Stats = match serde_json::from_slice(raw) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "unreadable librdkafka statistics");
                return;
            }
        };
        if stats
            .brokers
            .values()
            .any(|b| b.nodeid >= 0 && b.state == "UP")
        {
            self.mark_connected();
        }
        if self.role == "consumer" {
            let lag = stats
                .topics
                .values()
                .flat_map(|t| t.partitions.values())
                .filter(|p| p.partition >= 0 && p.desired && p.hi_offset >= 0)
                .map(|p| {
                    // Position is what was handed out; before the first message it is the
                    // committed offset.
                    let pos = if p.app_offset >= 0 {
                        p.app_offset
                    } else {
                        p.committed_offset.max(p.lo_offset).max(0)
                    };
                    (p.hi_offset - pos).max(0) as u64
                })
                .sum();
            self.lag.store(lag, Ordering::Relaxed);
        }
    }
}

/// Errors that mean "cannot reach or talk to the brokers" rather than a problem with data.
fn is_connectivity(error: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        error.rdkafka_error_code(),
        Some(
            C::BrokerTransportFailure
                | C::AllBrokersDown
                | C::Resolve
                | C::RequestTimedOut
                | C::OperationTimedOut
                | C::NetworkException
                | C::BrokerNotAvailable
                | C::LeaderNotAvailable
                | C::NotCoordinator
                | C::CoordinatorNotAvailable
                | C::CoordinatorLoadInProgress
        )
    )
}

/// The subset of librdkafka's statistics JSON this connector reads.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Stats {
    brokers: HashMap<String, StatsBroker>,
    topics: HashMap<String, StatsTopic>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct StatsBroker {
    nodeid: i32,
    state: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct StatsTopic {
    partitions: HashMap<String, StatsPartition>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct StatsPartition {
    partition: i32,
    desired: bool,
    app_offset: i64,
    committed_offset: i64,
    lo_offset: i64,
    hi_offset: i64,
}

/// librdkafka context for every client this crate creates.
#[derive(Clone)]
pub struct Context {
    pub state: Arc<ClientState>,
}

impl Context {
    pub fn new(state: Arc<ClientState>) -> Self {
        Context { state }
    }
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        use RDKafkaLogLevel as L;
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error => {
                tracing::error!(target: "librdkafka", facility = fac, "{message}")
            }
            L::Warning => tracing::warn!(target: "librdkafka", facility = fac, "{message}"),
            L::Notice | L::Info => {
                tracing::info!(target: "librdkafka", facility = fac, "{message}")
            }
            L::Debug => tracing::debug!(target: "librdkafka", facility = fac, "{message}"),
        }
    }

    fn stats_raw(&self, statistics: &[u8]) {
        self.state.on_stats(statistics);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", role = self.state.role, "{reason} ({error})");
        self.state.report(&error, reason);
    }
}

impl ConsumerContext for Context {
    fn pre_rebalance(
        &self,
        _consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &Rebalance<'_>,
    ) {
        // With enable.auto.commit librdkafka commits the stored offsets of revoked partitions
        // before it lets them go; records of those partitions still in flight are read again
        // by the next owner.
        match rebalance {
            Rebalance::Revoke(tpl) => {
                tracing::info!(partitions = %describe(tpl), "kafka partitions revoked")
            }
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = %describe(tpl), "kafka partitions assigned");
                self.state.on_assign(tpl);
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "kafka rebalance error"),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => tracing::debug!(offsets = %describe(offsets), "kafka offsets committed"),
            // Nothing stored since the last commit: not a failure.
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => tracing::warn!(error = %e, "kafka offset commit failed"),
        }
    }
}

fn describe(tpl: &TopicPartitionList) -> String {
    let mut out = String::new();
    for e in tpl.elements() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(e.topic());
        out.push('/');
        out.push_str(&e.partition().to_string());
        if let Some(o) = e.offset().to_raw() {
            if o >= 0 {
                out.push('@');
                out.push_str(&o.to_string());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_and_connectivity_from_statistics() {
        let state = ClientState::new("consumer");
        let health = Health::new();
        state.attach(health.clone());
        assert_eq!(state.lag(), None);
        state.report(
            &KafkaError::Global(RDKafkaErrorCode::AllBrokersDown),
            "1/1 brokers are down",
        );
        assert_eq!(
            health.problem().as_deref(),
            Some("kafka consumer: 1/1 brokers are down")
        );
        let stats = br#"{"brokers": {"b:9092/1": {"nodeid": 1, "state": "UP"},
            "b:9092/bootstrap": {"nodeid": -1, "state": "UP"}},
          "topics": {"t": {"partitions": {
            "0": {"partition": 0, "desired": true, "app_offset": 40, "hi_offset": 100,
                  "committed_offset": 10, "lo_offset": 0},
            "1": {"partition": 1, "desired": true, "app_offset": -1001, "hi_offset": 50,
                  "committed_offset": 20, "lo_offset": 0},
            "2": {"partition": 2, "desired": false, "app_offset": 0, "hi_offset": 500},
            "-1": {"partition": -1, "desired": false, "hi_offset": -1}}}}}"#;
        state.on_stats(stats);
        assert_eq!(state.lag(), Some(60 + 30));
        assert_eq!(health.problem(), None);
    }

    #[test]
    fn data_problems_wait_for_records() {
        let state = ClientState::new("consumer");
        let health = Health::new();
        state.attach(health.clone());
        state.report(
            &KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownTopicOrPartition),
            "Subscribed topic not available: x",
        );
        state.on_stats(br#"{"brokers": {"b/1": {"nodeid": 1, "state": "UP"}}}"#);
        assert!(health.problem().is_some());
        state.mark_working();
        assert_eq!(health.problem(), None);
    }
}
