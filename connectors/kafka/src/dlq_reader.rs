//! Reading a Kafka DLQ topic back (`sluice dlq list|show|replay`): every partition from the
//! replay group's committed offset (or the earliest letter) up to its end as of opening, so
//! letters written meanwhile (those a replay sends back) are left for the next reader.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use crate::config::DeadLetterConfig;

/// How long one broker question (metadata, watermarks, committed offsets) may take.
const ASK_TIMEOUT: Duration = Duration::from_secs(10);

/// One letter as stored in the topic.
#[derive(Debug, Clone)]
pub struct DlqMessage {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
    pub timestamp: Option<i64>,
}

struct Part {
    /// Where reading started: the group's committed offset or the earliest letter.
    start: i64,
    /// The next offset to read.
    next: i64,
    /// The partition's end (high watermark) at open.
    end: i64,
}

/// Reads one DLQ topic up to its end as of opening. Blocking: call it off the async threads.
pub struct DlqReader {
    consumer: BaseConsumer,
    topic: String,
    parts: BTreeMap<i32, Part>,
}

impl DlqReader {
    /// Opens the topic for the consumer group `group` (never joined: partitions are assigned
    /// directly, so nothing rebalances and several readers do not disturb each other), from
    /// the group's committed offsets, or from the earliest letter when `from_start`.
    pub fn open(config: &DeadLetterConfig, group: &str, from_start: bool) -> Result<Self, String> {
        let topic = config
            .topic
            .clone()
            .ok_or("the kafka dead_letter has no `topic`: its letters go to `<source topic>.dlq`, which cannot be read back as one DLQ; set `topic`")?;
        let consumer: BaseConsumer = config
            .reader_config(group)
            .map_err(|e| e.to_string())?
            .create()
            .map_err(|e| format!("kafka consumer: {e}"))?;
        let metadata = consumer
            .fetch_metadata(Some(&topic), ASK_TIMEOUT)
            .map_err(|e| format!("kafka metadata of `{topic}`: {e}"))?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(format!("kafka DLQ topic `{topic}` does not exist"));
        }
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            tpl.add_partition(&topic, *p);
        }
        let committed = consumer
            .committed_offsets(tpl, ASK_TIMEOUT)
            .map_err(|e| format!("kafka committed offsets of `{group}`: {e}"))?;
        let mut parts = BTreeMap::new();
        let mut assign = TopicPartitionList::new();
        for p in partitions {
            let (low, high) = consumer
                .fetch_watermarks(&topic, p, ASK_TIMEOUT)
                .map_err(|e| format!("kafka watermarks of `{topic}` [{p}]: {e}"))?;
            let done = committed
                .find_partition(&topic, p)
                .and_then(|e| e.offset().to_raw())
                .filter(|o| *o >= 0);
            let start = match done {
                Some(c) if !from_start => c.clamp(low, high),
                _ => low,
            };
            if start < high {
                assign
                    .add_partition_offset(&topic, p, Offset::Offset(start))
                    .map_err(|e| e.to_string())?;
            }
            parts.insert(
                p,
                Part {
                    start,
                    next: start,
                    end: high,
                },
            );
        }
        consumer
            .assign(&assign)
            .map_err(|e| format!("kafka assign `{topic}`: {e}"))?;
        Ok(DlqReader {
            consumer,
            topic,
            parts,
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Where each partition's reading started, by partition.
    pub fn starts(&self) -> BTreeMap<i32, i64> {
        self.parts.iter().map(|(p, s)| (*p, s.start)).collect()
    }

    /// Whether every partition has been read to its end.
    pub fn at_end(&self) -> bool {
        self.parts.values().all(|p| p.next >= p.end)
    }

    /// Letters read and letters to read in all, for progress.
    pub fn progress(&self) -> (u64, u64) {
        self.parts.values().fold((0, 0), |(r, t), p| {
            (
                r + (p.next.min(p.end) - p.start).max(0) as u64,
                t + (p.end - p.start).max(0) as u64,
            )
        })
    }

    /// Up to `max` letters, waiting at most `wait` for the first; `None` once every
    /// partition is at its end.
    pub fn read(&mut self, max: usize, wait: Duration) -> Result<Option<Vec<DlqMessage>>, String> {
        let mut out = Vec::new();
        let mut timeout = wait;
        while out.len() < max {
            if self.at_end() {
                break;
            }
            let Some(polled) = self.consumer.poll(timeout) else {
                break;
            };
            timeout = Duration::ZERO;
            let m = match polled {
                Ok(m) => m,
                Err(KafkaError::PartitionEOF(p)) => {
                    // The end as the broker has it now; anything beyond the end at open
                    // is for a later reader anyway.
                    if let Some(part) = self.parts.get_mut(&p) {
                        part.next = part.end;
                    }
                    continue;
                }
                Err(KafkaError::MessageConsumption(RDKafkaErrorCode::BadMessage)) => {
                    return Err(format!(
                        "kafka DLQ `{}`: a record batch failed its checksum (CRC-32C) or could \
                         not be decoded: its letters are not read, nor any after it in its \
                         partition, until it is repaired on the broker (read up to {})",
                        self.topic,
                        self.positions()
                    ))
                }
                Err(e) => return Err(format!("kafka DLQ `{}`: {e}", self.topic)),
            };
            let Some(part) = self.parts.get_mut(&m.partition()) else {
                continue;
            };
            if m.offset() >= part.end {
                part.next = part.end;
                continue;
            }
            part.next = m.offset() + 1;
            let headers = m
                .headers()
                .map(|hs| {
                    hs.iter()
                        .map(|h| (h.key.to_string(), h.value.map(Bytes::copy_from_slice)))
                        .collect()
                })
                .unwrap_or_default();
            out.push(DlqMessage {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(Bytes::copy_from_slice),
                value: m.payload().map(Bytes::copy_from_slice),
                headers,
                timestamp: m.timestamp().to_millis(),
            });
        }
        if out.is_empty() && self.at_end() {
            return Ok(None);
        }
        Ok(Some(out))
    }

    /// Where each partition not yet read to its end stands: `<topic>/<partition> offset <next>`.
    fn positions(&self) -> String {
        let pending: Vec<String> = self
            .parts
            .iter()
            .filter(|(_, p)| p.next < p.end)
            .map(|(n, p)| format!("{}/{n} offset {}", self.topic, p.next))
            .collect();
        pending.join(", ")
    }

    /// Commits the replay group at `offsets` (partition, next offset to read): every letter
    /// below is replayed, so the group's lag is what is left.
    pub fn commit(&self, offsets: &[(i32, i64)]) -> Result<(), String> {
        let mut tpl = TopicPartitionList::new();
        for (p, o) in offsets {
            tpl.add_partition_offset(&self.topic, *p, Offset::Offset(*o))
                .map_err(|e| e.to_string())?;
        }
        self.consumer
            .commit(&tpl, CommitMode::Sync)
            .map_err(|e| format!("kafka commit of the replay group: {e}"))
    }
}
