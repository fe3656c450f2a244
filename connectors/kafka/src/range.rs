//! A bounded read of a Kafka source's topics for `sluice replay`: per partition, the offsets
//! between two times (offsets for timestamps, or the partition's end as of the start), read
//! with `assign` under a replay-only group id that never commits, so the pipeline's consumer
//! group and its committed offsets are untouched.

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::config::SourceConfig;
use crate::positions::{self, ASK_TIMEOUT};

/// The offsets one partition is read between: `start` included, `end` excluded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PartitionRange {
    pub topic: String,
    pub partition: i32,
    pub start: i64,
    pub end: i64,
}

impl PartitionRange {
    /// Offsets in the range (records, unless the topic is compacted or transactional).
    pub fn count(&self) -> u64 {
        (self.end - self.start).max(0) as u64
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RangeError {
    #[error("kafka source configuration: {0}")]
    Config(#[from] sluice_sdk::ConfigError),
    #[error("kafka: {0}")]
    Broker(String),
    #[error("no partition {partition} in topics {topics:?}")]
    UnknownPartition { partition: i32, topics: Vec<String> },
    #[error("no partitions found for topics {0:?}")]
    NoPartitions(Vec<String>),
}

/// The client configuration of a range read: the source's own settings (brokers, security,
/// fetch tuning) under a replay-only group id that never commits. Partition ends are
/// reported so a partition that ends on a gap (compaction, transaction markers) still ends.
pub fn client_config(config: &SourceConfig, pipeline: &str) -> Result<ClientConfig, RangeError> {
    let mut cfg = config.client_config(pipeline)?;
    cfg.set("group.id", replay_group(pipeline))
        .set("client.id", format!("sluice-replay-{pipeline}"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true");
    Ok(cfg)
}

/// The group id a replay's consumer carries; it never joins nor commits it.
pub fn replay_group(pipeline: &str) -> String {
    format!("sluice-replay-{pipeline}")
}

/// Resolves the range of every partition of the source's topics (or only `only`): from the
/// first offset whose timestamp is at or after `from_ms`, to the first at or after `to_ms`
/// (or the partition's end as of now when `to_ms` is `None`). Blocks on the broker.
pub fn resolve(
    config: &SourceConfig,
    pipeline: &str,
    from_ms: i64,
    to_ms: Option<i64>,
    only: &[i32],
) -> Result<Vec<PartitionRange>, RangeError> {
    let subscription = config.subscription()?;
    let consumer: BaseConsumer = client_config(config, pipeline)?
        .create()
        .map_err(|e| RangeError::Broker(format!("consumer: {e}")))?;
    let all = positions::partitions(&consumer, &subscription).map_err(RangeError::Broker)?;
    let mut tpl = TopicPartitionList::new();
    for e in all.elements() {
        if only.is_empty() || only.contains(&e.partition()) {
            tpl.add_partition(e.topic(), e.partition());
        }
    }
    if let Some(p) = only
        .iter()
        .find(|p| !all.elements().iter().any(|e| e.partition() == **p))
    {
        return Err(RangeError::UnknownPartition {
            partition: *p,
            topics: subscription,
        });
    }
    if tpl.count() == 0 {
        return Err(RangeError::NoPartitions(subscription));
    }
    let starts = at_time(&consumer, &tpl, from_ms)?;
    let ends = match to_ms {
        Some(t) => Some(at_time(&consumer, &tpl, t)?),
        None => None,
    };
    let mut out = Vec::with_capacity(tpl.count());
    for (i, e) in tpl.elements().iter().enumerate() {
        let (low, high) = consumer
            .fetch_watermarks(e.topic(), e.partition(), ASK_TIMEOUT)
            .map_err(|err| {
                RangeError::Broker(format!(
                    "watermarks of {}/{}: {err}",
                    e.topic(),
                    e.partition()
                ))
            })?;
        let start = bound(starts[i], low, high);
        let end = ends.as_ref().map_or(high, |ends| bound(ends[i], low, high));
        out.push(PartitionRange {
            topic: e.topic().to_string(),
            partition: e.partition(),
            start,
            end: end.max(start),
        });
    }
    out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    // Dropping a client joins its threads, which can take a tenth of a second; the replay
    // does not wait for it.
    std::thread::spawn(move || drop(consumer));
    Ok(out)
}

/// The offset the broker gave for a time, within the watermarks: no record at or after the
/// time means the partition's end.
fn bound(found: Option<i64>, low: i64, high: i64) -> i64 {
    match found {
        Some(o) => o.clamp(low, high),
        None => high,
    }
}

/// Per partition of `tpl` in order: the first offset whose timestamp is at or after `ms`.
fn at_time(
    consumer: &BaseConsumer,
    tpl: &TopicPartitionList,
    ms: i64,
) -> Result<Vec<Option<i64>>, RangeError> {
    let mut ask = TopicPartitionList::with_capacity(tpl.count());
    for e in tpl.elements() {
        ask.add_partition_offset(e.topic(), e.partition(), Offset::Offset(ms))
            .map_err(|err| RangeError::Broker(err.to_string()))?;
    }
    let got = consumer
        .offsets_for_times(ask, ASK_TIMEOUT)
        .map_err(|e| RangeError::Broker(format!("offsets for times: {e}")))?;
    Ok(tpl
        .elements()
        .iter()
        .map(|e| {
            got.find_partition(e.topic(), e.partition())
                .and_then(|g| g.offset().to_raw())
                .filter(|o| *o >= 0)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_past_the_last_record_is_the_end() {
        assert_eq!(bound(None, 5, 10), 10);
        assert_eq!(bound(Some(7), 5, 10), 7);
        assert_eq!(bound(Some(2), 5, 10), 5);
        assert_eq!(bound(Some(12), 5, 10), 10);
        let r = PartitionRange {
            topic: "t".into(),
            partition: 0,
            start: 4,
            end: 9,
        };
        assert_eq!(r.count(), 5);
    }
}
