//! Faults a real broker cannot produce on demand, injected with librdkafka's in-process mock
//! cluster: request errors on chosen requests and a broker going down and up. Everything else
//! is tested against the real broker (`broker.rs`).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use serde_json::json;
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
    let reason = poll_until_unhealthy(&mut *source, &health, 20 * SECS, &mut seen)
        .await
        .expect("health reports the broker outage");
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

/// A partition whose fetches are refused (here: not authorized for its topic) shows on
/// `/health` with librdkafka's reason, and clears once the partition reads again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_whose_fetches_fail_is_reported_until_it_reads_again() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let topic = unique("denied");
    cluster.create_topic(&topic, 1, 1).unwrap();
    produce_json(&brokers, &topic, 1, 10).await;
    let (mut source, health) =
        open_source(source_config(&brokers, &topic, &unique("g")), "p").await;
    let mut seen = poll_records(&mut *source, 10, 30 * SECS).await;
    assert_eq!(seen.len(), 10);

    cluster.request_errors(
        RDKafkaApiKey::Fetch,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 30],
    );
    let reason = poll_until_unhealthy(&mut *source, &health, 20 * SECS, &mut seen)
        .await
        .expect("health reports the partition that cannot be fetched");
    assert!(
        reason.contains(&format!("fetching {topic}/0 failed")) && reason.contains("authorization"),
        "{reason}"
    );

    cluster.clear_request_errors(RDKafkaApiKey::Fetch);
    produce_json(&brokers, &topic, 1, 10).await;
    seen.extend(poll_records(&mut *source, 10, 30 * SECS).await);
    assert_eq!(seen.len(), 20, "every record, once");
    assert_eq!(
        health.problem(),
        None,
        "healthy once the partition reads again"
    );
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
        sink: None,
        replay: None,
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
