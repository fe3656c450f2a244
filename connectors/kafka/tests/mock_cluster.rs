//! Source, sink and DLQ against librdkafka's in-process mock cluster: fast, and able to
//! inject broker failures and request errors.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use serde_json::json;
use sluice_sdk::dead_letter::headers as dlq;
use sluice_sdk::{
    views, DeadLetter, ErrorContext, Header, Origin, Outcome, Record, SinkError, Stage,
};

const SECS: Duration = Duration::from_secs(1);

fn source_config(brokers: &str, topic: &str, group: &str) -> serde_json::Value {
    json!({
        "brokers": brokers,
        "topics": [topic],
        "group_id": group,
        "options": {"auto.commit.interval.ms": 200, "session.timeout.ms": 6000}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumes_everything_with_key_headers_timestamp_and_origin() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let topic = unique("events");
    cluster.create_topic(&topic, 2, 1).unwrap();
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
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let topic = unique("mixed");
    cluster.create_topic(&topic, 1, 1).unwrap();
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
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let topic = unique("resume");
    let group = unique("g");
    cluster.create_topic(&topic, 2, 1).unwrap();
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
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let topic = unique("batched");
    let group = unique("g");
    cluster.create_topic(&topic, 1, 1).unwrap();
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
async fn broker_down_and_request_errors_lose_nothing() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let topic = unique("faults");
    let group = unique("g");
    cluster.create_topic(&topic, 2, 1).unwrap();
    produce_json(&brokers, &topic, 2, 100).await;

    let mut cfg = source_config(&brokers, &topic, &group);
    cfg["options"]["statistics.interval.ms"] = json!(200);
    cfg["options"]["max.partition.fetch.bytes"] = json!(1000);
    let (mut source, health) = open_source(cfg, "p").await;
    let mut seen = poll_records(&mut *source, 20, 30 * SECS).await;
    assert!(seen.len() >= 20);

    // Fetch and commit requests fail transiently, then the broker goes away.
    cluster.request_errors(
        RDKafkaApiKey::Fetch,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
        ],
    );
    cluster.request_errors(
        RDKafkaApiKey::OffsetCommit,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE],
    );
    let through = contiguous_through(&seen, |_| true);
    source.commit(&through).await.unwrap();
    seen.extend(poll_records(&mut *source, 10, 10 * SECS).await);

    cluster.broker_down(1).unwrap();
    let mut unhealthy = None;
    let deadline = std::time::Instant::now() + 20 * SECS;
    while std::time::Instant::now() < deadline && unhealthy.is_none() {
        seen.extend(poll_for(&mut *source, Duration::from_millis(200)).await);
        unhealthy = health.problem();
    }
    let reason = unhealthy.expect("health reports the broker outage");
    assert!(reason.starts_with("kafka consumer:"), "{reason}");

    cluster.broker_up(1).unwrap();
    seen.extend(poll_records(&mut *source, 100 - seen.len(), 60 * SECS).await);
    let mut tries = 0;
    while health.problem().is_some() && tries < 50 {
        seen.extend(poll_for(&mut *source, Duration::from_millis(200)).await);
        tries += 1;
    }
    assert_eq!(
        health.problem(),
        None,
        "healthy again once the broker is back"
    );
    let dups = assert_all_present(&seen, 100);
    eprintln!("duplicates after faults: {dups}");

    // Commit everything; a restarted member has nothing left to read.
    source
        .commit(&contiguous_through(&seen, |_| true))
        .await
        .unwrap();
    source.close().await.unwrap();
    let (mut source, _) = open_source(source_config(&brokers, &topic, &group), "p").await;
    assert!(poll_for(&mut *source, 2 * SECS).await.is_empty());
    source.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_comes_from_statistics() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let topic = unique("lag");
    cluster.create_topic(&topic, 1, 1).unwrap();
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

fn record(topic: &str, value: &str, key: Option<&str>) -> Record {
    let mut r = Record::new(value.as_bytes().to_vec(), Origin::new(topic.into(), 0, 0));
    r.key = key.map(|k| k.as_bytes().to_vec().into());
    r.headers = vec![Header::new("h", b"v".to_vec())];
    r.timestamp = Some(1_700_000_000_123);
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_delivers_with_headers_and_reports_per_record() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let out = unique("out");
    cluster.create_topic(&out, 1, 1).unwrap();
    let (sink, health) = open_sink(
        json!({"brokers": brokers, "topic": out, "options": {"message.max.bytes": 2000}}),
        "p",
    )
    .await;
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(5000));
    let batch = vec![
        record("src", r#"{"n":1}"#, Some("a")),
        record("src", &big, None),
        record("src", r#"{"n":3}"#, None),
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
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let tenant = unique("t");
    let topic = format!("audit.{tenant}");
    cluster.create_topic(&topic, 1, 1).unwrap();
    let (sink, _) = open_sink(
        json!({"brokers": brokers, "topic": "audit.{{ tenant }}", "key_field": "user.id"}),
        "p",
    )
    .await;
    let ok = record(
        "src",
        &format!(r#"{{"tenant":"{tenant}","user":{{"id":42}}}}"#),
        None,
    );
    let no_tenant = record("src", r#"{"user":{"id":1}}"#, None);
    let not_json = record("src", "plain text", None);
    let outcomes = sink.send(&views(&[ok, no_tenant, not_json])).await.unwrap();
    assert_eq!(outcomes[0], Outcome::Delivered);
    assert!(matches!(&outcomes[1], Outcome::Reject(r) if r.kind == "kafka.topic_field_missing"));
    assert!(matches!(&outcomes[2], Outcome::Reject(r) if r.kind == "kafka.value_not_json"));
    let back = read_topic(&brokers, &topic, 1, 20 * SECS);
    assert_eq!(back[0].key.as_deref(), Some(&b"42"[..]));
    sink.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_retries_broker_errors_and_is_unavailable_when_the_broker_is_down() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let out = unique("out");
    cluster.create_topic(&out, 1, 1).unwrap();
    let (sink, health) = open_sink(
        json!({"brokers": brokers, "topic": out,
               "options": {"message.timeout.ms": 3000}}),
        "p",
    )
    .await;
    // Warm up (metadata, producer id).
    assert_eq!(
        sink.send(&[record("s", "{}", None).view()]).await.unwrap(),
        vec![Outcome::Delivered]
    );

    // A transient produce error is retried inside librdkafka (idempotence) and delivered.
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS],
    );
    let outcomes = sink
        .send(&[record("s", "{\"n\":2}", None).view()])
        .await
        .unwrap();
    assert!(
        matches!(outcomes[0], Outcome::Delivered | Outcome::Retry(_)),
        "{outcomes:?}"
    );

    cluster.broker_down(1).unwrap();
    let err = sink
        .send(&views(&[
            record("s", "{\"n\":3}", None),
            record("s", "{\"n\":4}", None),
        ]))
        .await
        .unwrap_err();
    assert!(matches!(err, SinkError::Unavailable { .. }), "{err:?}");
    assert!(health.problem().is_some(), "producer errors reach /health");
    cluster.broker_up(1).unwrap();
    let mut delivered = false;
    for _ in 0..10 {
        match sink.send(&[record("s", "{\"n\":3}", None).view()]).await {
            Ok(o) if o == vec![Outcome::Delivered] => {
                delivered = true;
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
    assert!(delivered, "delivers again once the broker is back");
    assert_eq!(health.problem(), None);
    sink.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_keep_the_record_and_add_connect_headers() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let source_topic = unique("assessment.events");
    let dlq_topic = format!("{source_topic}.dlq");
    cluster.create_topic(&dlq_topic, 1, 1).unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_write_fails_when_nothing_was_acknowledged() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let dlq_topic = unique("dlq");
    cluster.create_topic(&dlq_topic, 1, 1).unwrap();
    let dlq = dead_letter(
        json!({"brokers": brokers, "topic": dlq_topic, "options": {"message.timeout.ms": 2000}}),
        "p",
    );
    cluster.broker_down(1).unwrap();
    let rec = Record::new(&b"x"[..], Origin::new("t".into(), 0, 1));
    let err = ErrorContext {
        pipeline: Arc::from("p"),
        stage: Stage::Sink,
        kind: "k".into(),
        message: "m".into(),
        attempts: 3,
    };
    let e = dlq
        .write(&[DeadLetter {
            record: &rec,
            error: &err,
        }])
        .await
        .unwrap_err();
    assert!(e.0.contains(&dlq_topic), "{e}");
}

#[test]
fn factories_reject_bad_configs_without_connecting() {
    let r = registry();
    let ctx = build_ctx("p");
    assert!(r
        .build_source("kafka", json!({"brokers": "x:1", "topics": []}), &ctx)
        .is_err());
    assert!(r
        .build_source(
            "kafka",
            json!({"brokers": "x:1", "topics": ["a"], "start_from": "middle"}),
            &ctx
        )
        .is_err());
    assert!(r
        .build_sink(
            "kafka",
            json!({"brokers": "x:1", "topic": "{{ unclosed"}),
            &ctx
        )
        .is_err());
    assert!(r
        .build_dead_letter(
            "kafka",
            json!({"brokers": "x:1", "options": {"acks": "sometimes"}}),
            &ctx
        )
        .is_err());
    // Valid configs build without a reachable broker.
    assert!(r
        .build_source(
            "kafka",
            json!({"brokers": "127.0.0.1:1", "topic_pattern": "audit\\..*"}),
            &ctx
        )
        .is_ok());
    assert!(r
        .build_dead_letter("kafka", json!({"brokers": "127.0.0.1:1"}), &ctx)
        .is_ok());
}
