//! Plain rdkafka clients for tests against the real broker (Apache Kafka at
//! `SLUICE_TEST_KAFKA`, started by scripts/start-kafka.sh): finding it, creating topics (the
//! broker does not auto-create them), unique names, and reading a topic back as a downstream
//! consumer would see it.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::ClientConfig;

/// The real broker from `SLUICE_TEST_KAFKA` (Apache Kafka, started by scripts/start-kafka.sh).
/// Panics with instructions when it does not answer: a missing service is a failure.
pub fn real_broker() -> String {
    let brokers = crate::env::kafka_brokers();
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .expect("probe client");
    if let Err(e) = probe.fetch_metadata(None, Duration::from_secs(10)) {
        panic!(
            "no Kafka broker at {brokers} ({e}); start one with scripts/start-kafka.sh \
             or point SLUICE_TEST_KAFKA at a broker"
        );
    }
    brokers
}

/// A unique name per call, so tests never share topics or groups.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Creates a topic with the admin API. The admin client's futures are completed by
/// librdkafka's own threads, so blocking on them is fine in sync and async tests alike.
pub fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin client");
    let results = futures::executor::block_on(admin.create_topics(
        &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
    ))
    .expect("create topics request");
    for r in results {
        r.unwrap_or_else(|(t, e)| panic!("create topic {t}: {e}"));
    }
}

/// One message as read back by a plain consumer.
#[derive(Debug, Clone)]
pub struct ReadBack {
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    /// In the order they were written.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub timestamp: Option<i64>,
    pub partition: i32,
}

impl ReadBack {
    /// The first header of that name, as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_ref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

/// Reads up to `want` messages of a topic from the beginning with a fresh group, giving up
/// after `timeout`.
pub fn read_topic(brokers: &str, topic: &str, want: usize, timeout: Duration) -> Vec<ReadBack> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("readback"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("readback consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < want && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => out.push(ReadBack {
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().unwrap_or_default().to_vec(),
                headers: m
                    .headers()
                    .map(|hs| {
                        hs.iter()
                            .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                            .collect()
                    })
                    .unwrap_or_default(),
                timestamp: m.timestamp().to_millis(),
                partition: m.partition(),
            }),
            Some(Err(e)) => eprintln!("readback: {e}"),
            None => {}
        }
    }
    out
}
