//! A Kafka topic: every partition from its earliest record to its end as of the start, with
//! no consumer group and no commits. Order holds within a partition only, so each partition
//! is a lane of its own.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use sluice_kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use sluice_kafka::rdkafka::error::KafkaError;
use sluice_kafka::rdkafka::message::{Headers, Message};
use sluice_kafka::rdkafka::{Offset, TopicPartitionList};
use sluice_kafka::Options;

use super::{Entry, ReadError, RecordReader};
use crate::integrity::chain::STAMP_HEADER;

const TIMEOUT: Duration = Duration::from_secs(30);

pub struct KafkaReader {
    consumer: BaseConsumer,
    topic: String,
    /// Partition -> the end offset (exclusive) to read up to; removed once reached.
    remaining: BTreeMap<i32, i64>,
    queue: VecDeque<Entry>,
}

fn kafka_error(e: impl std::fmt::Display) -> ReadError {
    ReadError::Kafka(e.to_string())
}

impl KafkaReader {
    /// Reads `topic` with `options` (TLS, SASL: librdkafka properties) on top of the
    /// reader's own settings.
    pub fn open(brokers: &str, topic: &str, options: &Options) -> Result<Self, ReadError> {
        let consumer: BaseConsumer = sluice_kafka::reader_config(brokers, options)
            .map_err(|e| ReadError::Kafka(format!("--kafka-option: {e}")))?
            .set("group.id", "sluice-verify")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("isolation.level", "read_committed")
            .create()
            .map_err(kafka_error)?;
        let meta = consumer
            .fetch_metadata(Some(topic), TIMEOUT)
            .map_err(|e| ReadError::Kafka(format!("metadata of {topic} from {brokers}: {e}")))?;
        let partitions: Vec<i32> = meta
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(ReadError::Kafka(format!(
                "topic {topic} does not exist on {brokers}"
            )));
        }
        let mut list = TopicPartitionList::new();
        let mut remaining = BTreeMap::new();
        for p in partitions {
            let (low, high) = consumer
                .fetch_watermarks(topic, p, TIMEOUT)
                .map_err(|e| ReadError::Kafka(format!("offsets of {topic}/{p}: {e}")))?;
            if high > low {
                list.add_partition_offset(topic, p, Offset::Offset(low))
                    .map_err(kafka_error)?;
                remaining.insert(p, high);
            }
        }
        consumer.assign(&list).map_err(kafka_error)?;
        Ok(KafkaReader {
            consumer,
            topic: topic.to_string(),
            remaining,
            queue: VecDeque::new(),
        })
    }

    /// Polls until a record arrives or every partition reached its end.
    fn poll(&mut self) -> Result<(), ReadError> {
        let mut idle_since = Instant::now();
        while self.queue.is_empty() && !self.remaining.is_empty() {
            match self.consumer.poll(Duration::from_millis(200)) {
                None => {
                    if idle_since.elapsed() > TIMEOUT {
                        return Err(ReadError::Kafka(format!(
                            "no record from {} for {}s with partitions {:?} unfinished",
                            self.topic,
                            TIMEOUT.as_secs(),
                            self.remaining.keys().collect::<Vec<_>>()
                        )));
                    }
                }
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    self.remaining.remove(&p);
                }
                Some(Err(e)) => return Err(kafka_error(e)),
                Some(Ok(m)) => {
                    idle_since = Instant::now();
                    let (p, offset) = (m.partition(), m.offset());
                    let Some(&end) = self.remaining.get(&p) else {
                        continue;
                    };
                    if offset >= end {
                        self.remaining.remove(&p);
                        continue;
                    }
                    if offset + 1 >= end {
                        self.remaining.remove(&p);
                    }
                    // A tombstone holds no record.
                    if let Some(v) = m.payload() {
                        let stamp = m.headers().and_then(|hs| {
                            hs.iter()
                                .find(|h| h.key == STAMP_HEADER)
                                .and_then(|h| h.value.map(<[u8]>::to_vec))
                        });
                        self.queue.push_back(Entry {
                            value: v.to_vec(),
                            at: format!("partition {p} offset {offset}").into(),
                            lane: p,
                            stamp,
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

impl RecordReader for KafkaReader {
    fn next_entry(&mut self) -> Result<Option<Entry>, ReadError> {
        if self.queue.is_empty() {
            self.poll()?;
        }
        Ok(self.queue.pop_front())
    }

    fn describe(&self) -> String {
        format!("topic {}", self.topic)
    }
}
