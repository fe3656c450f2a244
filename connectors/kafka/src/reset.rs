//! `sluice offsets reset` for a Kafka source: moves the consumer group's committed offsets
//! (to the earliest or latest record, the first record at a time, or a literal offset), only
//! while the group has no active member. The offsets are committed by a consumer carrying the
//! group id that never joins the group (`assign` + a synchronous commit), which the broker
//! accepts for an empty group.

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::config::SourceConfig;
use crate::positions::{self, ASK_TIMEOUT};

/// Where the group's offsets go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Earliest,
    Latest,
    /// The first record at or after this time (milliseconds since the epoch); the end when
    /// no record is that recent.
    Time(i64),
    /// This offset on every chosen partition.
    Offset(i64),
}

/// One partition's committed offset before and after the reset.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Move {
    pub topic: String,
    pub partition: i32,
    pub before: Option<i64>,
    pub after: i64,
    /// The partition's watermarks, for context.
    pub low: i64,
    pub high: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    #[error("kafka source configuration: {0}")]
    Config(#[from] sluice_sdk::ConfigError),
    #[error("kafka: {0}")]
    Broker(String),
    /// The group has members: a pipeline is running on it.
    #[error("consumer group `{group}` is {state} with {} member(s) ({}): stop the pipeline first", members.len(), members.join(", "))]
    Busy {
        group: String,
        state: String,
        members: Vec<String>,
    },
    #[error("no partition {partition} in topics {topics:?}")]
    UnknownPartition { partition: i32, topics: Vec<String> },
    #[error("offset {offset} is outside {topic}/{partition}'s records ({low}..{high})")]
    OutOfRange {
        offset: i64,
        topic: String,
        partition: i32,
        low: i64,
        high: i64,
    },
}

/// A consumer with the pipeline's group id that never subscribes, so never joins the group.
fn consumer(config: &SourceConfig, pipeline: &str) -> Result<BaseConsumer, ResetError> {
    let mut cfg = config.client_config(pipeline)?;
    cfg.set("enable.auto.commit", "false");
    cfg.create()
        .map_err(|e| ResetError::Broker(format!("consumer: {e}")))
}

/// Refuses unless the group is empty (or unknown to the broker: never used, or expired).
fn check_idle(consumer: &BaseConsumer, group: &str) -> Result<(), ResetError> {
    let list = consumer
        .fetch_group_list(Some(group), ASK_TIMEOUT)
        .map_err(|e| ResetError::Broker(format!("describe group `{group}`: {e}")))?;
    for g in list.groups().iter().filter(|g| g.name() == group) {
        let idle = matches!(g.state(), "Empty" | "Dead" | "") && g.members().is_empty();
        if !idle {
            return Err(ResetError::Busy {
                group: group.to_string(),
                state: g.state().to_string(),
                members: g
                    .members()
                    .iter()
                    .map(|m| format!("{}@{}", m.client_id(), m.client_host()))
                    .collect(),
            });
        }
    }
    Ok(())
}

/// The group's id, its committed offsets and where `target` puts them, per partition of the
/// source's topics (or only `only`). Refuses while the group has members. Blocks on the broker.
pub fn plan(
    config: &SourceConfig,
    pipeline: &str,
    target: Target,
    only: &[i32],
) -> Result<(String, Vec<Move>), ResetError> {
    let group = config.group_id(pipeline);
    let subscription = config.subscription()?;
    let consumer = consumer(config, pipeline)?;
    check_idle(&consumer, &group)?;
    let all = positions::partitions(&consumer, &subscription).map_err(ResetError::Broker)?;
    if let Some(p) = only
        .iter()
        .find(|p| !all.elements().iter().any(|e| e.partition() == **p))
    {
        return Err(ResetError::UnknownPartition {
            partition: *p,
            topics: subscription,
        });
    }
    let mut tpl = TopicPartitionList::new();
    for e in all.elements() {
        if only.is_empty() || only.contains(&e.partition()) {
            tpl.add_partition(e.topic(), e.partition());
        }
    }
    let committed = positions::committed(&consumer, &tpl).map_err(ResetError::Broker)?;
    let times = match target {
        Target::Time(ms) => {
            let mut ask = TopicPartitionList::with_capacity(tpl.count());
            for e in tpl.elements() {
                ask.add_partition_offset(e.topic(), e.partition(), Offset::Offset(ms))
                    .map_err(|err| ResetError::Broker(err.to_string()))?;
            }
            Some(
                consumer
                    .offsets_for_times(ask, ASK_TIMEOUT)
                    .map_err(|e| ResetError::Broker(format!("offsets for times: {e}")))?,
            )
        }
        _ => None,
    };
    let mut moves = Vec::with_capacity(committed.len());
    for positions::Committed {
        topic,
        partition,
        offset: before,
        ..
    } in committed
    {
        let (low, high) = consumer
            .fetch_watermarks(&topic, partition, ASK_TIMEOUT)
            .map_err(|e| ResetError::Broker(format!("watermarks of {topic}/{partition}: {e}")))?;
        let after = match target {
            Target::Earliest => low,
            Target::Latest => high,
            Target::Time(_) => times
                .as_ref()
                .and_then(|t| t.find_partition(&topic, partition))
                .and_then(|e| e.offset().to_raw())
                .filter(|o| *o >= 0)
                .map_or(high, |o| o.clamp(low, high)),
            Target::Offset(o) if o < low || o > high => {
                return Err(ResetError::OutOfRange {
                    offset: o,
                    topic,
                    partition,
                    low,
                    high,
                })
            }
            Target::Offset(o) => o,
        };
        moves.push(Move {
            topic,
            partition,
            before,
            after,
            low,
            high,
        });
    }
    moves.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Ok((group, moves))
}

/// Commits `moves` for the group, checking again that it has no member. Blocks on the broker.
pub fn apply(config: &SourceConfig, pipeline: &str, moves: &[Move]) -> Result<(), ResetError> {
    let group = config.group_id(pipeline);
    let consumer = consumer(config, pipeline)?;
    check_idle(&consumer, &group)?;
    let mut tpl = TopicPartitionList::with_capacity(moves.len());
    for m in moves {
        tpl.add_partition_offset(&m.topic, m.partition, Offset::Offset(m.after))
            .map_err(|e| ResetError::Broker(e.to_string()))?;
    }
    consumer
        .assign(&tpl)
        .map_err(|e| ResetError::Broker(format!("assign: {e}")))?;
    consumer
        .commit(&tpl, CommitMode::Sync)
        .map_err(|e| ResetError::Broker(format!("commit for group `{group}`: {e}")))?;
    Ok(())
}
