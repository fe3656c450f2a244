//! Helpers for the kafka crate tests: build connectors through the registry as the host does,
//! drive a source like the host (poll, track done records, commit the contiguous prefix), and
//! produce / read back with plain rdkafka clients.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::message::{Header as KHeader, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::Value;
use sluice_sdk::{
    BuildContext, DeadLetterWriter, Health, Origin, Polled, Record, Registry, Sink, SinkContext,
    Source, SourceContext,
};
// Each test binary uses some of these.
#[allow(unused_imports)]
pub use sluice_testkit::kafka::{create_topic, read_topic, real_broker, unique, ReadBack};

/// Shows connector and librdkafka logs when RUST_LOG is set (e.g. `RUST_LOG=librdkafka=debug`
/// with the `debug` librdkafka option).
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

pub fn registry() -> Registry {
    init_logs();
    let mut r = Registry::new();
    sluice_kafka::register(&mut r);
    r
}

pub fn build_ctx(pipeline: &str) -> BuildContext {
    BuildContext {
        pipeline: pipeline.into(),
        data_dir: std::env::temp_dir(),
    }
}

pub async fn open_source(config: Value, pipeline: &str) -> (Box<dyn Source>, Health) {
    let mut source = registry()
        .build_source("kafka", config, &build_ctx(pipeline))
        .expect("kafka source config");
    let health = Health::new();
    source
        .open(SourceContext {
            pipeline: pipeline.into(),
            checkpoints: Default::default(),
            health: health.clone(),
        })
        .await
        .expect("open kafka source");
    (source, health)
}

pub async fn open_sink(config: Value, pipeline: &str) -> (Box<dyn Sink>, Health) {
    let mut sink = registry()
        .build_sink("kafka", config, &build_ctx(pipeline))
        .expect("kafka sink config");
    let health = Health::new();
    sink.open(SinkContext {
        pipeline: pipeline.into(),
        health: health.clone(),
    })
    .await
    .expect("open kafka sink");
    (sink, health)
}

pub fn dead_letter(config: Value, pipeline: &str) -> Arc<dyn DeadLetterWriter> {
    registry()
        .build_dead_letter("kafka", config, &build_ctx(pipeline))
        .expect("kafka dlq config")
}

/// Polls until `want` records arrived or `timeout` passed; returns what arrived.
pub async fn poll_records(source: &mut dyn Source, want: usize, timeout: Duration) -> Vec<Record> {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < want && Instant::now() < deadline {
        match source.poll(500).await {
            Ok(Polled::Records(rs)) => out.extend(rs),
            Ok(Polled::Idle) => {}
            Ok(Polled::Finished) => panic!("kafka source never finishes"),
            Err(e) => {
                eprintln!("poll error (retried): {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    out
}

/// Polls for `quiet` and returns whatever came (to show nothing more arrives).
pub async fn poll_for(source: &mut dyn Source, quiet: Duration) -> Vec<Record> {
    poll_records(source, usize::MAX, quiet).await
}

/// Polls until `health` reports a problem, for up to `timeout`; what arrives meanwhile goes
/// to `seen`. The problem, or `None` if there was none.
pub async fn poll_until_unhealthy(
    source: &mut dyn Source,
    health: &Health,
    timeout: Duration,
    seen: &mut Vec<Record>,
) -> Option<String> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        seen.extend(poll_for(source, Duration::from_millis(200)).await);
        if let Some(p) = health.problem() {
            return Some(p);
        }
    }
    None
}

/// What the host does: per partition, the last record of the contiguous done prefix.
pub fn contiguous_through(seen: &[Record], done: impl Fn(&Record) -> bool) -> Vec<Origin> {
    let mut by_partition: BTreeMap<(String, i32), Vec<&Record>> = BTreeMap::new();
    for r in seen {
        by_partition
            .entry((r.origin.stream.to_string(), r.origin.partition))
            .or_default()
            .push(r);
    }
    let mut through = Vec::new();
    for (_, mut rs) in by_partition {
        rs.sort_by_key(|r| r.origin.offset);
        let mut last = None;
        for r in rs {
            if !done(r) {
                break;
            }
            last = Some(r.origin.clone());
        }
        through.extend(last);
    }
    through
}

/// A plain producer that batches as applications do (many records per batch, 20 ms linger),
/// so committed offsets fall inside batches and resuming there is exercised.
pub fn producer(brokers: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("message.timeout.ms", "300000")
        .set("linger.ms", "20")
        .create()
        .expect("test producer")
}

/// Produces `n` JSON events `{"seq": i, ...}` keyed `k<i>` round-robin over `partitions`, with
/// one header each; returns after every delivery report.
pub async fn produce_json(brokers: &str, topic: &str, partitions: i32, n: usize) {
    let p = producer(brokers);
    let mut futures = Vec::with_capacity(n);
    for i in 0..n {
        let value = format!(r#"{{"seq":{i},"event_type":"control.evaluated","note":"n{i}"}}"#);
        let key = format!("k{i}");
        let rec = FutureRecord::to(topic)
            .payload(value.as_bytes())
            .key(key.as_bytes())
            .partition((i as i32) % partitions)
            .timestamp(1_700_000_000_000 + i as i64)
            .headers(OwnedHeaders::new().insert(KHeader {
                key: "trace",
                value: Some(format!("t{i}").as_bytes()),
            }));
        futures.push(p.send_result(rec).map_err(|(e, _)| e).expect("enqueue"));
    }
    for f in futures {
        f.await
            .expect("delivery")
            .map_err(|(e, _)| e)
            .expect("delivered");
    }
}

/// Produces raw values (already encoded) to one partition.
pub async fn produce_values(brokers: &str, topic: &str, partition: i32, values: &[Vec<u8>]) {
    let p = producer(brokers);
    for v in values {
        let rec = FutureRecord::<(), _>::to(topic)
            .payload(v)
            .partition(partition);
        p.send(rec, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .expect("delivered");
    }
}

/// `seq` of a JSON event record.
pub fn seq(r: &Record) -> u64 {
    r.json().expect("json value")["seq"]
        .as_u64()
        .expect("seq field")
}

/// Every seq in 0..n exactly at least once; returns the number of duplicates.
pub fn assert_all_present(records: &[Record], n: usize) -> usize {
    let seqs: Vec<u64> = records.iter().map(seq).collect();
    let unique: BTreeSet<u64> = seqs.iter().copied().collect();
    let missing: Vec<u64> = (0..n as u64).filter(|s| !unique.contains(s)).collect();
    assert!(
        missing.is_empty(),
        "{} of {n} events missing, first: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    seqs.len() - unique.len()
}
