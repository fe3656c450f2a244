//! Destination-wide failures of the sink and the dead-letter queue (an ACL refusing a topic, a
//! broker gone) are never turned into record retries or dead letters: only a record the
//! broker refuses for good is. Faults are injected in librdkafka's mock cluster.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use serde_json::json;
use sluice_sdk::{views, DeadLetter, ErrorContext, Origin, Outcome, Record, SinkError, Stage};

const SECS: Duration = Duration::from_secs(1);

fn to(topic: &str, n: u32) -> Record {
    Record::new(
        json!({"t": topic, "n": n}).to_string().into_bytes(),
        Origin::new("src".into(), 0, n.into()),
    )
}

fn ns(back: &[ReadBack]) -> Vec<u64> {
    let mut v: Vec<u64> = back
        .iter()
        .map(|m| {
            serde_json::from_slice::<serde_json::Value>(&m.value).unwrap()["n"]
                .as_u64()
                .unwrap()
        })
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Two topics led by two brokers, so one half of a batch can fail while the other is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_and_unreachable_topics_are_destination_problems_never_record_retries() {
    let cluster = MockCluster::new(2).unwrap();
    let brokers = cluster.bootstrap_servers();
    let a = unique("a");
    let b = unique("b");
    cluster.create_topic(&a, 1, 1).unwrap();
    cluster.create_topic(&b, 1, 1).unwrap();
    cluster.partition_leader(&a, 0, Some(1)).unwrap();
    cluster.partition_leader(&b, 0, Some(2)).unwrap();
    let (sink, health) = open_sink(
        json!({"brokers": brokers, "topic": "{{ t }}",
               "options": {"message.timeout.ms": 2000, "linger.ms": 20}}),
        "p",
    )
    .await;
    let warm = [to(&a, 1), to(&b, 1)];
    assert_eq!(
        sink.send(&views(&warm)).await.unwrap(),
        vec![Outcome::Delivered, Outcome::Delivered]
    );

    // One produce request (one of the two topics) is refused by the ACL: the batch is
    // unauthorised, whatever happened to the other topic. Never a record retry, never a DLQ.
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED],
    );
    let batch = [to(&a, 2), to(&b, 2)];
    match sink.send(&views(&batch)).await {
        Err(SinkError::Unauthorized(m)) => assert!(m.contains("uthoriz"), "{m}"),
        other => panic!("an ACL refusal is the destination's problem: {other:?}"),
    }
    // Fixed: the same batch goes through (the host resends it until it does).
    let mut delivered = false;
    for _ in 0..40 {
        if let Ok(o) = sink.send(&views(&batch)).await {
            assert!(o.iter().all(|o| matches!(o, Outcome::Delivered)), "{o:?}");
            delivered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(delivered, "delivered once the ACL allows it");

    // Topic b's leader goes away: its record times out while a's is delivered. The timed-out
    // record is resent without counting an attempt, never dead-lettered.
    cluster.broker_down(2).unwrap();
    let batch = [to(&a, 3), to(&b, 3)];
    let outcomes = sink.send(&views(&batch)).await.unwrap();
    assert_eq!(outcomes[0], Outcome::Delivered);
    assert!(
        matches!(&outcomes[1], Outcome::Unavailable(_)),
        "a timeout is not a record retry: {outcomes:?}"
    );
    cluster.broker_up(2).unwrap();
    let mut delivered = false;
    for _ in 0..20 {
        if let Ok(o) = sink.send(&views(&batch[1..])).await {
            if o == vec![Outcome::Delivered] {
                delivered = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(delivered, "delivered once the broker is back");
    assert_eq!(ns(&read_topic(&brokers, &a, 10, 5 * SECS)), vec![1, 2, 3]);
    assert_eq!(ns(&read_topic(&brokers, &b, 10, 5 * SECS)), vec![1, 2, 3]);
    let _ = health;
    sink.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_the_broker_refuses_fails_the_write_instead_of_vanishing() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let dlq_topic = unique("dlq");
    cluster.create_topic(&dlq_topic, 1, 1).unwrap();
    let dlq = dead_letter(json!({"brokers": brokers, "topic": dlq_topic}), "p");
    let rec = Record::new(&b"x"[..], Origin::new("t".into(), 0, 1));
    let err = ErrorContext {
        pipeline: Arc::from("p"),
        stage: Stage::Sink,
        kind: "k".into(),
        message: "m".into(),
        attempts: 1,
        sink: None,
        replay: None,
    };
    let letters = [DeadLetter {
        record: &rec,
        error: &err,
    }];
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED],
    );
    let e = dlq.write(&letters).await.unwrap_err();
    assert!(e.0.contains(&dlq_topic), "{e}");
    let mut written = false;
    for _ in 0..40 {
        if dlq.write(&letters).await.is_ok() {
            written = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(written);
    assert_eq!(read_topic(&brokers, &dlq_topic, 1, 20 * SECS).len(), 1);
}
