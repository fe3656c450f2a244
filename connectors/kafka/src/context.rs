//! The librdkafka client context shared by consumer and producers: routes librdkafka's logs
//! to `tracing`, turns its error events into [`Health`], and (for the consumer) reads lag and
//! broker states from the periodic statistics so no extra broker request is needed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, RebalanceProtocol};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{Offset, TopicPartitionList};
use serde::Deserialize;
use sluice_sdk::{Health, PartitionPosition};

use crate::fetch_queue::FetchQueue;
use crate::positions::{self, Start};

/// `u64::MAX` in [`ClientState::lag`] means "not known yet".
const LAG_UNKNOWN: u64 = u64::MAX;

/// What the context learned, readable from the connector.
#[derive(Debug)]
pub struct ClientState {
    health: Mutex<Option<Health>>,
    /// The current problem, and whether it is about reaching the brokers (cleared as soon as
    /// statistics show a broker up) or something else (cleared when records flow).
    problem: Mutex<Option<Problem>>,
    /// Partitions stopped at a damaged record batch, with what `/health` says of each: the
    /// first is shown while no other problem is, until the partition reads again, is
    /// revoked, or the pipeline restarts.
    stopped: Mutex<Vec<((String, i32), String)>>,
    lag: AtomicU64,
    role: &'static str,
    /// The configured `bootstrap.servers`, named in connectivity problems: librdkafka's
    /// "all brokers are down" does not say which brokers.
    brokers: String,
    /// Bumped on every assignment; the source then reads `assigned` to learn which partitions
    /// start over (checked per message with one atomic load).
    assign_generation: AtomicU64,
    assigned: Mutex<Vec<(String, i32)>>,
    /// Newly assigned partitions with the note committed with their position, as read when
    /// they were assigned; taken by the source.
    assigned_notes: Mutex<Vec<sluice_sdk::Resumed>>,
    /// `start_from: latest`: where a partition without a committed offset starts.
    start_latest: AtomicBool,
    /// Records deleted before they were read (retention passed the committed offset, or the
    /// position while reading), not yet reported.
    skipped: AtomicU64,
    /// Assigned partitions with committed offset and end, from the last statistics.
    positions: Mutex<Vec<PartitionPosition>>,
    /// Where the source reads its partitions' messages; each partition is forwarded there
    /// before it is assigned.
    fetch_queue: Mutex<Option<Arc<FetchQueue>>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Problem {
    Connectivity,
    Other,
}

impl ClientState {
    pub fn new(role: &'static str, brokers: &str) -> Arc<Self> {
        Arc::new(ClientState {
            health: Mutex::new(None),
            problem: Mutex::new(None),
            stopped: Mutex::new(Vec::new()),
            lag: AtomicU64::new(LAG_UNKNOWN),
            role,
            brokers: brokers.to_string(),
            assign_generation: AtomicU64::new(0),
            assigned: Mutex::new(Vec::new()),
            assigned_notes: Mutex::new(Vec::new()),
            start_latest: AtomicBool::new(false),
            skipped: AtomicU64::new(0),
            positions: Mutex::new(Vec::new()),
            fetch_queue: Mutex::new(None),
        })
    }

    /// The queue newly assigned partitions are forwarded to.
    pub fn set_fetch_queue(&self, queue: Arc<FetchQueue>) {
        *self.fetch_queue.lock() = Some(queue);
    }

    /// The fetch queue, taken out to be dropped before the consumer (a queue must not
    /// outlive its client).
    pub fn take_fetch_queue(&self) -> Option<Arc<FetchQueue>> {
        self.fetch_queue.lock().take()
    }

    /// Forwards the partitions about to be assigned to the fetch queue.
    pub fn adopt(&self, tpl: &TopicPartitionList) {
        if let Some(q) = &*self.fetch_queue.lock() {
            for e in tpl.elements() {
                if !q.adopt(e.topic(), e.partition()) {
                    tracing::debug!(
                        topic = e.topic(),
                        partition = e.partition(),
                        "kafka partition read from the consumer queue"
                    );
                }
            }
        }
    }

    /// Partitions without a committed offset start at the end instead of the beginning.
    pub fn set_start_latest(&self, latest: bool) {
        self.start_latest.store(latest, Ordering::Relaxed);
    }

    /// Counts records deleted before they were read.
    pub fn add_skipped(&self, n: u64) {
        self.skipped.fetch_add(n, Ordering::Relaxed);
    }

    /// Records skipped since the last call.
    pub fn take_skipped(&self) -> u64 {
        self.skipped.swap(0, Ordering::Relaxed)
    }

    /// Assigned partitions as of the last statistics.
    pub fn positions(&self) -> Vec<PartitionPosition> {
        self.positions.lock().clone()
    }

    /// Starts reporting into the host's health handle.
    pub fn attach(&self, health: Health) {
        *self.health.lock() = Some(health);
    }

    /// Records or a delivery came through: whatever was wrong is over.
    pub fn mark_working(&self) {
        let mut p = self.problem.lock();
        if p.take().is_some() {
            self.show_healthy();
        }
    }

    /// Healthy, unless a partition is stopped.
    fn show_healthy(&self) {
        if let Some(h) = &*self.health.lock() {
            match self.stopped.lock().first() {
                Some((_, text)) => h.set_unhealthy(text.clone()),
                None => h.set_healthy(),
            }
        }
    }

    /// A partition stopped for good (a damaged record batch): on `/health` until
    /// [`Self::clear_stopped`] or its revocation, whatever records other partitions
    /// deliver meanwhile.
    pub fn report_stopped(&self, topic: &str, partition: i32, text: &str) {
        let text = format!("kafka {}: {text}", self.role);
        {
            let mut stopped = self.stopped.lock();
            stopped.retain(|((t, p), _)| !(t == topic && *p == partition));
            stopped.push(((topic.to_string(), partition), text));
        }
        if self.problem.lock().is_none() {
            self.show_healthy();
        }
    }

    /// These partitions are no longer stopped: one reads again, or they were revoked (their
    /// next owner finds the damaged batch and says so itself).
    pub fn clear_stopped<'a>(&self, partitions: impl IntoIterator<Item = (&'a str, i32)>) {
        // Locks taken one at a time: elsewhere `problem` is held while `stopped` is read.
        let cleared = {
            let mut stopped = self.stopped.lock();
            let before = stopped.len();
            for (topic, partition) in partitions {
                stopped.retain(|((t, p), _)| !(t == topic && *p == partition));
            }
            stopped.len() != before
        };
        if cleared && self.problem.lock().is_none() {
            self.show_healthy();
        }
    }

    /// A broker answered (statistics show it up): connectivity problems are over.
    fn mark_connected(&self) {
        let mut p = self.problem.lock();
        if *p == Some(Problem::Connectivity) {
            *p = None;
            self.show_healthy();
        }
    }

    pub fn report(&self, error: &KafkaError, reason: &str) {
        let kind = if is_connectivity(error) {
            Problem::Connectivity
        } else {
            Problem::Other
        };
        let mut text = if reason.is_empty() {
            format!("kafka {}: {error}", self.role)
        } else {
            format!("kafka {}: {reason}", self.role)
        };
        if kind == Problem::Connectivity && !self.brokers.is_empty() {
            text.push_str(&format!(" (brokers: {})", self.brokers));
        }
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

    /// Partitions assigned since the last call, with their committed notes.
    pub fn take_assigned_notes(&self) -> Vec<sluice_sdk::Resumed> {
        std::mem::take(&mut *self.assigned_notes.lock())
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
            let mut positions: Vec<PartitionPosition> = stats
                .topics
                .iter()
                .flat_map(|(name, t)| t.partitions.values().map(move |p| (name, p)))
                .filter(|(_, p)| p.partition >= 0 && p.desired)
                .map(|(name, p)| {
                    let committed = (p.committed_offset >= 0).then_some(p.committed_offset);
                    let end = (p.hi_offset >= 0).then_some(p.hi_offset);
                    PartitionPosition {
                        stream: name.clone(),
                        partition: p.partition,
                        committed,
                        end,
                        lag: end.map(|h| {
                            (h - committed.unwrap_or(p.lo_offset).max(p.lo_offset).max(0)).max(0)
                                as u64
                        }),
                    }
                })
                .collect();
            positions.sort_by(|a, b| (&a.stream, a.partition).cmp(&(&b.stream, b.partition)));
            *self.positions.lock() = positions;
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

impl Context {
    /// Sets where each newly assigned partition starts: its committed offset while readable;
    /// past a gap (retention deleted records after the committed offset) the earliest record,
    /// with a WARN naming the gap and the records counted as skipped; without a committed
    /// offset, where `start_from` says. Asking fails open: librdkafka then resumes at the
    /// committed offset and resets to the earliest record if it is out of range.
    fn choose_starts(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        let committed = match positions::committed(consumer, tpl) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "kafka: cannot check committed offsets on assignment");
                return;
            }
        };
        self.state
            .assigned_notes
            .lock()
            .extend(committed.iter().map(|c| sluice_sdk::Resumed {
                stream: c.topic.as_str().into(),
                partition: c.partition,
                offset: c.offset,
                note: c.note.clone(),
            }));
        let latest = self.state.start_latest.load(Ordering::Relaxed);
        for positions::Committed {
            topic,
            partition,
            offset: committed,
            ..
        } in committed
        {
            let (low, high) = match consumer.fetch_watermarks(
                &topic,
                partition,
                Duration::from_secs(10),
            ) {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!(topic = %topic, partition, error = %e, "kafka: cannot read watermarks on assignment");
                    continue;
                }
            };
            let offset = match positions::start(committed, low, high) {
                Start::Committed => continue,
                Start::Default if latest => Offset::End,
                Start::Default => Offset::Beginning,
                Start::Gap {
                    committed,
                    low,
                    skipped,
                } => {
                    tracing::warn!(
                        topic = %topic,
                        partition,
                        committed,
                        earliest = low,
                        skipped,
                        "kafka: committed offset is no longer readable (retention passed it); {skipped} records skipped, reading from the earliest record"
                    );
                    self.state.add_skipped(skipped);
                    Offset::Offset(low)
                }
            };
            let _ = tpl.set_partition_offset(&topic, partition, offset);
        }
    }
}

impl ConsumerContext for Context {
    /// librdkafka's default handling, with each assigned partition's start chosen first
    /// ([`Context::choose_starts`]).
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.choose_starts(consumer, tpl);
                self.state.adopt(tpl);
                self.pre_rebalance(consumer, &Rebalance::Assign(tpl));
                let r = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                if let Err(e) = r {
                    tracing::warn!(error = %e, "kafka assign failed");
                }
                self.post_rebalance(consumer, &Rebalance::Assign(tpl));
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.pre_rebalance(consumer, &Rebalance::Revoke(tpl));
                let r = if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                if let Err(e) = r {
                    tracing::warn!(error = %e, "kafka unassign failed");
                }
                self.post_rebalance(consumer, &Rebalance::Revoke(tpl));
            }
            other => {
                let code: RDKafkaErrorCode = other.into();
                self.pre_rebalance(consumer, &Rebalance::Error(KafkaError::Rebalance(code)));
                // As librdkafka's default: drop the assignment on a rebalance error.
                let _ = if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
            }
        }
    }

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
                tracing::info!(partitions = %describe(tpl), "kafka partitions revoked");
                self.state
                    .clear_stopped(tpl.elements().iter().map(|e| (e.topic(), e.partition())));
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
    fn each_stopped_partition_is_shown_until_it_reads_again_or_is_revoked() {
        let state = ClientState::new("consumer", "127.0.0.1:9");
        let health = Health::new();
        state.attach(health.clone());
        state.report_stopped("t", 0, "t/0 stopped at offset 10");
        state.report_stopped("t", 1, "t/1 stopped at offset 7");
        let problem = || health.problem();
        assert_eq!(
            problem().as_deref(),
            Some("kafka consumer: t/0 stopped at offset 10")
        );
        // Partition 0 reads again: partition 1 is still stopped.
        state.clear_stopped([("t", 0)]);
        assert_eq!(
            problem().as_deref(),
            Some("kafka consumer: t/1 stopped at offset 7")
        );
        // Another topic's partition 1 is not this one.
        state.clear_stopped([("u", 1)]);
        assert!(problem().is_some());
        // Revoked: its next owner says so, not this member.
        let mut revoked = TopicPartitionList::new();
        revoked.add_partition("t", 1);
        state.clear_stopped(
            revoked
                .elements()
                .iter()
                .map(|e| (e.topic(), e.partition())),
        );
        assert_eq!(problem(), None);
        // A connectivity problem shows first; the stop shows again once it passes.
        state.report_stopped("t", 2, "t/2 stopped at offset 3");
        state.report(
            &KafkaError::Global(RDKafkaErrorCode::AllBrokersDown),
            "1/1 brokers are down",
        );
        assert!(problem().is_some_and(|p| p.contains("brokers are down")));
        state.mark_connected();
        assert_eq!(
            problem().as_deref(),
            Some("kafka consumer: t/2 stopped at offset 3")
        );
    }

    #[test]
    fn lag_and_connectivity_from_statistics() {
        let state = ClientState::new("consumer", "127.0.0.1:9");
        let health = Health::new();
        state.attach(health.clone());
        assert_eq!(state.lag(), None);
        state.report(
            &KafkaError::Global(RDKafkaErrorCode::AllBrokersDown),
            "1/1 brokers are down",
        );
        assert_eq!(
            health.problem().as_deref(),
            Some("kafka consumer: 1/1 brokers are down (brokers: 127.0.0.1:9)")
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
        let state = ClientState::new("consumer", "127.0.0.1:9");
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
