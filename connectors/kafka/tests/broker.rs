//! Source, sink and DLQ against a real Kafka broker (Apache Kafka at SLUICE_TEST_KAFKA, started
//! by scripts/start-kafka.sh).

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::json;
use sluice_sdk::dead_letter::headers as dlq;
use sluice_sdk::{views, DeadLetter, ErrorContext, Header, Origin, Outcome, Polled, Record, Stage};

const SECS: Duration = Duration::from_secs(1);

fn source_config(brokers: &str, topic: &str, group: &str) -> serde_json::Value {
    json!({"brokers": brokers, "topics": [topic], "group_id": group,
           "options": {"auto.commit.interval.ms": 500}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_reads_all_partitions_and_resumes_after_commit() {
    let brokers = real_broker();
    let topic = unique("events");
    let group = unique("g");
    create_topic(&brokers, &topic, 4);
    produce_json(&brokers, &topic, 4, 2000).await;

    let (mut source, health) = open_source(source_config(&brokers, &topic, &group), "p").await;
    let rs = poll_records(&mut *source, 2000, 60 * SECS).await;
    assert_eq!(rs.len(), 2000);
    assert_eq!(assert_all_present(&rs, 2000), 0);
    let parts: BTreeSet<i32> = rs.iter().map(|r| r.origin.partition).collect();
    assert_eq!(parts, (0..4).collect());
    let r = rs.iter().find(|r| seq(r) == 7).unwrap();
    assert_eq!(r.key.as_deref(), Some(&b"k7"[..]));
    assert_eq!(
        r.header("trace").and_then(|h| h.value.as_deref()),
        Some(&b"t7"[..])
    );
    assert_eq!(r.timestamp, Some(1_700_000_000_007));
    assert_eq!(health.problem(), None);
    // Everything done except seq 9 (partition 1, offset 2): partition 1 holds at offset 2,
    // which lies inside a record batch (the producer batches), so resuming there is tested.
    let through = contiguous_through(&rs, |r| seq(r) != 9);
    source.commit(&through).await.unwrap();
    source.close().await.unwrap();

    let (mut source, _) = open_source(source_config(&brokers, &topic, &group), "p").await;
    let again = poll_records(&mut *source, 498, 60 * SECS).await;
    let offsets: BTreeSet<(i32, i64)> = again
        .iter()
        .map(|r| (r.origin.partition, r.origin.offset))
        .collect();
    assert_eq!(offsets, (2..500).map(|o| (1, o)).collect());
    assert!(poll_for(&mut *source, 2 * SECS).await.is_empty());
    source.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_split_partitions_and_lose_nothing_on_rebalance() {
    let brokers = real_broker();
    let topic = unique("split");
    let group = unique("g");
    create_topic(&brokers, &topic, 4);
    produce_json(&brokers, &topic, 4, 400).await;

    let (mut a, _) = open_source(source_config(&brokers, &topic, &group), "a").await;
    // A reads some, commits nothing: all of it is in flight when B joins.
    let mut seen_a = poll_records(&mut *a, 100, 60 * SECS).await;
    assert!(!seen_a.is_empty());
    let (mut b, _) = open_source(source_config(&brokers, &topic, &group), "b").await;
    produce_json(&brokers, &topic, 4, 400).await; // seq 0..400 again: 800 messages in all
    let mut seen_b = Vec::new();
    let covered = |a: &[sluice_sdk::Record], b: &[sluice_sdk::Record]| {
        a.iter()
            .chain(b)
            .map(|r| (r.origin.partition, r.origin.offset))
            .collect::<BTreeSet<_>>()
            .len()
    };
    let deadline = std::time::Instant::now() + 60 * SECS;
    // Both members poll (rebalance callbacks run inside poll) until B has partitions and
    // every message was read by one of them.
    while (seen_b.is_empty() || covered(&seen_a, &seen_b) < 800)
        && std::time::Instant::now() < deadline
    {
        if let Ok(Polled::Records(rs)) = a.poll(100).await {
            seen_a.extend(rs);
        }
        if let Ok(Polled::Records(rs)) = b.poll(100).await {
            seen_b.extend(rs);
        }
    }
    // Offsets strictly increase per partition within each member.
    for seen in [&seen_a, &seen_b] {
        for p in 0..4 {
            let offs: Vec<i64> = seen
                .iter()
                .filter(|r| r.origin.partition == p)
                .map(|r| r.origin.offset)
                .collect();
            assert!(
                offs.windows(2).all(|w| w[0] < w[1]),
                "partition {p}: {offs:?}"
            );
        }
    }
    let all: BTreeSet<(i32, i64)> = seen_a
        .iter()
        .chain(&seen_b)
        .map(|r| (r.origin.partition, r.origin.offset))
        .collect();
    assert_eq!(
        all.len(),
        800,
        "every message read by one member or the other"
    );
    let b_parts: BTreeSet<i32> = seen_b.iter().map(|r| r.origin.partition).collect();
    assert!(!b_parts.is_empty(), "the second member got partitions");
    eprintln!(
        "member a: {} records, member b: {} records on partitions {b_parts:?}",
        seen_a.len(),
        seen_b.len()
    );
    a.close().await.unwrap();
    b.close().await.unwrap();
}

fn record(value: &str, key: Option<&str>) -> Record {
    let mut r = Record::new(value.as_bytes().to_vec(), Origin::new("src".into(), 0, 0));
    r.key = key.map(|k| k.as_bytes().to_vec().into());
    r.headers = vec![Header::new("h", b"v".to_vec())];
    r.timestamp = Some(1_700_000_000_321);
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_delivers_with_an_idempotent_producer() {
    let brokers = real_broker();
    let topic = unique("out");
    create_topic(&brokers, &topic, 4);
    let (sink, health) = open_sink(json!({"brokers": brokers, "topic": topic}), "p").await;
    let batch: Vec<Record> = (0..300)
        .map(|i| record(&format!(r#"{{"n":{i}}}"#), Some(&format!("key{}", i % 7))))
        .collect();
    let outcomes = sink.send(&views(&batch)).await.unwrap();
    assert!(
        outcomes.iter().all(|o| *o == Outcome::Delivered),
        "{outcomes:?}"
    );
    assert_eq!(health.problem(), None);
    let back = read_topic(&brokers, &topic, 300, 30 * SECS);
    assert_eq!(back.len(), 300);
    assert!(back.iter().all(|m| m.header("h").as_deref() == Some("v")));
    assert!(back.iter().all(|m| m.timestamp == Some(1_700_000_000_321)));
    // Same key, same partition.
    for k in 0..7 {
        let key = format!("key{k}");
        let parts: BTreeSet<i32> = back
            .iter()
            .filter(|m| m.key.as_deref() == Some(key.as_bytes()))
            .map(|m| m.partition)
            .collect();
        assert_eq!(parts.len(), 1, "{key} spread over {parts:?}");
    }
    sink.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_readable_with_connect_headers() {
    let brokers = real_broker();
    let source_topic = unique("assessment.events");
    let dlq_topic = format!("{source_topic}.dlq");
    create_topic(&brokers, &dlq_topic, 1);
    let writer = dead_letter(json!({"brokers": brokers}), "audit");
    let mut rec = Record::new(
        &b"\xff not json"[..],
        Origin::new(source_topic.as_str().into(), 2, 41),
    );
    rec.key = Some((&b"k"[..]).into());
    rec.timestamp = Some(1_700_000_000_555);
    let err = ErrorContext {
        pipeline: Arc::from("audit"),
        stage: Stage::Sink,
        kind: "splunk.hec.code=6".into(),
        message: "Invalid data format".into(),
        attempts: 8,
    };
    writer
        .write(&[DeadLetter {
            record: &rec,
            error: &err,
        }])
        .await
        .unwrap();
    let back = read_topic(&brokers, &dlq_topic, 1, 30 * SECS);
    assert_eq!(back.len(), 1);
    let m = &back[0];
    assert_eq!(m.value, b"\xff not json");
    assert_eq!(m.key.as_deref(), Some(&b"k"[..]));
    assert_eq!(m.timestamp, Some(1_700_000_000_555));
    assert_eq!(m.header(dlq::TOPIC).as_deref(), Some(source_topic.as_str()));
    assert_eq!(m.header(dlq::PARTITION).as_deref(), Some("2"));
    assert_eq!(m.header(dlq::OFFSET).as_deref(), Some("41"));
    assert_eq!(m.header(dlq::STAGE).as_deref(), Some("TASK_PUT"));
    assert_eq!(
        m.header(dlq::EXCEPTION_CLASS).as_deref(),
        Some("splunk.hec.code=6")
    );
    assert_eq!(m.header(dlq::ATTEMPTS).as_deref(), Some("8"));
}
