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

/// A record whose origin is `stream`, with the timestamp the sink tests check.
fn record_at(stream: &str, value: &str, key: Option<&str>) -> Record {
    let mut r = record(value, key);
    r.origin = Origin::new(stream.into(), 0, 0);
    r.timestamp = Some(1_700_000_000_123);
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
        sink: None,
        replay: None,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumes_everything_with_key_headers_timestamp_and_origin() {
    let brokers = real_broker();
    let topic = unique("events");
    create_topic(&brokers, &topic, 2);
    produce_json(&brokers, &topic, 2, 50).await;

    let (mut source, health) =
        open_source(source_config(&brokers, &topic, &unique("g")), "p").await;
    let records = poll_records(&mut *source, 50, 30 * SECS).await;
    assert_eq!(records.len(), 50);
    assert_eq!(assert_all_present(&records, 50), 0);
    for r in &records {
        let s = seq(r);
        assert_eq!(r.key.as_deref(), Some(format!("k{s}").as_bytes()));
        assert_eq!(
            r.headers,
            vec![Header::new("trace", format!("t{s}").into_bytes())]
        );
        assert_eq!(r.timestamp, Some(1_700_000_000_000 + s as i64));
        assert_eq!(&*r.origin.stream, topic.as_str());
        assert_eq!(r.origin.partition, (s % 2) as i32);
        assert_eq!(r.origin.offset, (s / 2) as i64);
        assert!(r.decode_error.is_none());
    }
    // Offsets strictly increase per partition.
    for p in 0..2 {
        let offs: Vec<i64> = records
            .iter()
            .filter(|r| r.origin.partition == p)
            .map(|r| r.origin.offset)
            .collect();
        assert!(offs.windows(2).all(|w| w[0] < w[1]), "{offs:?}");
    }
    assert_eq!(health.problem(), None);
    source.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_json_is_marked_for_the_dlq_and_raw_passes_it() {
    let brokers = real_broker();
    let topic = unique("mixed");
    create_topic(&brokers, &topic, 1);
    produce_values(
        &brokers,
        &topic,
        0,
        &[
            b"{\"ok\":1}".to_vec(),
            b"not json".to_vec(),
            b"[1,2]".to_vec(),
        ],
    )
    .await;
    let (mut source, _) = open_source(source_config(&brokers, &topic, &unique("g")), "p").await;
    let rs = poll_records(&mut *source, 3, 30 * SECS).await;
    let errors: Vec<bool> = rs.iter().map(|r| r.decode_error.is_some()).collect();
    assert_eq!(errors, vec![false, true, false]);
    assert!(rs[1]
        .decode_error
        .as_deref()
        .unwrap()
        .contains("not valid JSON"));
    assert_eq!(
        &rs[1].value[..],
        b"not json",
        "original bytes kept for the DLQ"
    );
    source.close().await.unwrap();

    let mut raw = source_config(&brokers, &topic, &unique("g"));
    raw["format"] = json!("raw");
    let (mut source, _) = open_source(raw, "p").await;
    let rs = poll_records(&mut *source, 3, 30 * SECS).await;
    assert!(rs.iter().all(|r| r.decode_error.is_none()));
    source.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_after_the_committed_prefix_and_holds_at_a_gap() {
    let brokers = real_broker();
    let topic = unique("resume");
    let group = unique("g");
    create_topic(&brokers, &topic, 2);
    produce_json(&brokers, &topic, 2, 40).await; // 20 per partition

    let (mut source, _) = open_source(source_config(&brokers, &topic, &group), "p").await;
    let first = poll_records(&mut *source, 40, 30 * SECS).await;
    assert_eq!(first.len(), 40);
    // Partition 0: offset 7 failed and is still retrying; 8.. succeeded. Partition 1: all done.
    let through = contiguous_through(&first, |r| {
        !(r.origin.partition == 0 && r.origin.offset == 7)
    });
    assert_eq!(
        through
            .iter()
            .map(|o| (o.partition, o.offset))
            .collect::<Vec<_>>(),
        vec![(0, 6), (1, 19)]
    );
    source.commit(&through).await.unwrap();
    source.close().await.unwrap();

    produce_json(&brokers, &topic, 2, 4).await; // seq 0..4 again at offsets 20, 21
    let (mut source, _) = open_source(source_config(&brokers, &topic, &group), "p").await;
    let again = poll_records(&mut *source, 13 + 2 + 2, 30 * SECS).await;
    let got: BTreeSet<(i32, i64)> = again
        .iter()
        .map(|r| (r.origin.partition, r.origin.offset))
        .collect();
    let want: BTreeSet<(i32, i64)> = (7..22).map(|o| (0, o)).chain([(1, 20), (1, 21)]).collect();
    assert_eq!(
        got, want,
        "resumes at the held record on p0 and after the prefix on p1"
    );
    assert!(poll_for(&mut *source, SECS).await.is_empty());
    source.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_only_stores_and_librdkafka_commits_on_close() {
    // Many commit calls send no OffsetCommit each: offsets are stored in memory and committed
    // by librdkafka on its interval (here: far away), on revoke and on close.
    let brokers = real_broker();
    let topic = unique("batched");
    let group = unique("g");
    create_topic(&brokers, &topic, 1);
    produce_json(&brokers, &topic, 1, 200).await;
    let mut cfg = source_config(&brokers, &topic, &group);
    cfg["options"]["auto.commit.interval.ms"] = json!(60_000);
    let (mut source, _) = open_source(cfg, "p").await;
    let rs = poll_records(&mut *source, 200, 30 * SECS).await;
    assert_eq!(rs.len(), 200);
    for r in &rs {
        source
            .commit(std::slice::from_ref(&r.origin))
            .await
            .unwrap();
    }
    tokio::time::sleep(SECS).await;
    assert_eq!(
        committed(&brokers, &group, &topic, 0),
        None,
        "nothing committed per call"
    );
    source.close().await.unwrap();
    assert_eq!(
        committed(&brokers, &group, &topic, 0),
        Some(200),
        "close committed offset+1"
    );
}

/// The group's committed offset for one partition, read without joining the group.
fn committed(brokers: &str, group: &str, topic: &str, partition: i32) -> Option<i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    let got = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    got.find_partition(topic, partition)
        .and_then(|e| e.offset().to_raw())
        .filter(|o| *o >= 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_comes_from_statistics() {
    let brokers = real_broker();
    let topic = unique("lag");
    create_topic(&brokers, &topic, 1);
    produce_json(&brokers, &topic, 1, 40).await;
    let mut cfg = source_config(&brokers, &topic, &unique("g"));
    cfg["options"]["statistics.interval.ms"] = json!(100);
    let (mut source, _) = open_source(cfg, "p").await;
    // Read one record at a time, slowly, so statistics see records not yet handed out.
    let mut read = 0;
    let mut max_lag = 0;
    let deadline = std::time::Instant::now() + 30 * SECS;
    while read < 40 && std::time::Instant::now() < deadline {
        if let Ok(sluice_sdk::Polled::Records(rs)) = source.poll(1).await {
            read += rs.len();
        }
        max_lag = max_lag.max(source.lag().unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert_eq!(read, 40);
    assert!(max_lag > 0 && max_lag <= 40, "lag while reading: {max_lag}");
    let mut tries = 0;
    while source.lag() != Some(0) && tries < 50 {
        let _ = poll_for(&mut *source, Duration::from_millis(100)).await;
        tries += 1;
    }
    assert_eq!(source.lag(), Some(0), "no lag once everything was read");
    source.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_delivers_with_headers_and_reports_per_record() {
    let brokers = real_broker();
    let out = unique("out");
    create_topic(&brokers, &out, 1);
    let (sink, health) = open_sink(
        json!({"brokers": brokers, "topic": out, "options": {"message.max.bytes": 2000}}),
        "p",
    )
    .await;
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(5000));
    let batch = vec![
        record_at("src", r#"{"n":1}"#, Some("a")),
        record_at("src", &big, None),
        record_at("src", r#"{"n":3}"#, None),
    ];
    let outcomes = sink.send(&views(&batch)).await.unwrap();
    assert_eq!(outcomes[0], Outcome::Delivered);
    match &outcomes[1] {
        Outcome::Reject(r) => assert_eq!(r.kind, "kafka.MessageSizeTooLarge"),
        other => panic!("too large must be rejected: {other:?}"),
    }
    assert_eq!(outcomes[2], Outcome::Delivered);
    assert_eq!(health.problem(), None);

    let back = read_topic(&brokers, &out, 2, 20 * SECS);
    assert_eq!(back.len(), 2);
    assert_eq!(back[0].value, br#"{"n":1}"#);
    assert_eq!(back[0].key.as_deref(), Some(&b"a"[..]));
    assert_eq!(back[0].header("h").as_deref(), Some("v"));
    assert_eq!(back[0].timestamp, Some(1_700_000_000_123));
    assert_eq!(back[1].key, None);
    sink.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_topic_template_and_key_field() {
    let brokers = real_broker();
    let tenant = unique("t");
    let topic = format!("audit.{tenant}");
    create_topic(&brokers, &topic, 1);
    let (sink, _) = open_sink(
        json!({"brokers": brokers, "topic": "audit.{{ tenant }}", "key_field": "user.id"}),
        "p",
    )
    .await;
    let ok = record_at(
        "src",
        &format!(r#"{{"tenant":"{tenant}","user":{{"id":42}}}}"#),
        None,
    );
    let no_tenant = record_at("src", r#"{"user":{"id":1}}"#, None);
    let not_json = record_at("src", "plain text", None);
    let outcomes = sink.send(&views(&[ok, no_tenant, not_json])).await.unwrap();
    assert_eq!(outcomes[0], Outcome::Delivered);
    assert!(matches!(&outcomes[1], Outcome::Reject(r) if r.kind == "kafka.topic_field_missing"));
    assert!(matches!(&outcomes[2], Outcome::Reject(r) if r.kind == "kafka.value_not_json"));
    let back = read_topic(&brokers, &topic, 1, 20 * SECS);
    assert_eq!(back[0].key.as_deref(), Some(&b"42"[..]));
    sink.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_keep_the_record_and_add_connect_headers() {
    let brokers = real_broker();
    let source_topic = unique("assessment.events");
    let dlq_topic = format!("{source_topic}.dlq");
    create_topic(&brokers, &dlq_topic, 1);
    let dlq = dead_letter(json!({"brokers": brokers}), "audit");

    let mut rec = Record::new(
        &b"not json"[..],
        Origin::new(source_topic.as_str().into(), 3, 10452),
    );
    rec.key = Some((&b"k1"[..]).into());
    rec.headers = vec![Header::new("trace", &b"abc"[..])];
    rec.timestamp = Some(1_700_000_000_999);
    let err = ErrorContext {
        pipeline: Arc::from("audit"),
        stage: Stage::Conversion,
        kind: "decode.json".into(),
        message: "value is not valid JSON".into(),
        attempts: 0,
        sink: None,
        replay: None,
    };
    dlq.write(&[DeadLetter {
        record: &rec,
        error: &err,
    }])
    .await
    .unwrap();

    let back = read_topic(&brokers, &dlq_topic, 1, 20 * SECS);
    assert_eq!(back.len(), 1);
    let m = &back[0];
    assert_eq!(m.value, b"not json");
    assert_eq!(m.key.as_deref(), Some(&b"k1"[..]));
    assert_eq!(m.timestamp, Some(1_700_000_000_999));
    assert_eq!(m.header("trace").as_deref(), Some("abc"));
    assert_eq!(m.headers[0].0, "trace", "original headers first");
    assert_eq!(m.header(dlq::TOPIC).as_deref(), Some(source_topic.as_str()));
    assert_eq!(m.header(dlq::PARTITION).as_deref(), Some("3"));
    assert_eq!(m.header(dlq::OFFSET).as_deref(), Some("10452"));
    assert_eq!(m.header(dlq::CONNECTOR_NAME).as_deref(), Some("audit"));
    assert_eq!(m.header(dlq::STAGE).as_deref(), Some("VALUE_CONVERTER"));
    assert_eq!(
        m.header(dlq::EXCEPTION_CLASS).as_deref(),
        Some("decode.json")
    );
    assert_eq!(
        m.header(dlq::EXCEPTION_MESSAGE).as_deref(),
        Some("value is not valid JSON")
    );
    assert_eq!(m.header(dlq::ATTEMPTS).as_deref(), Some("0"));
}
