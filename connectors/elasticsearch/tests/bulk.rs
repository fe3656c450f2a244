//! The sink against the Elasticsearch emulator, through the SDK's `Sink` trait.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::json;
use sluice_elasticsearch::{EsConfig, EsSink};
use sluice_sdk::{config, views, Health, Origin, Outcome, Record, Sink, SinkContext, SinkError};
use sluice_testkit::drive::drive;
use sluice_testkit::elasticsearch::{EsAuth, EsEmulator, EsOptions, StoredDoc};

const TOPIC: &str = "assessment.events";
/// 2024-06-10T00:00:00Z
const DAY0_MS: i64 = 1_717_977_600_000;

fn record(i: usize) -> Record {
    let partition = (i % 3) as i32;
    let offset = (i / 3) as i64;
    let severity = if i.is_multiple_of(25) { "high" } else { "low" };
    let value = json!({
        "event_type": "control.evaluated",
        "control": format!("AC.L2-3.1.{}", i % 22),
        "severity": severity,
        "tenant": if i.is_multiple_of(2) { "acme" } else { "globex" },
        "n": i,
    });
    let mut r = Record::new(
        serde_json::to_vec(&value).unwrap(),
        Origin::new(TOPIC.into(), partition, offset),
    );
    // Spread over three days.
    r.timestamp = Some(DAY0_MS + (i as i64 % 3) * 86_400_000 + 1000);
    r
}

/// The document written for record `i`: its id is its position and a digest of its content.
fn doc_at(es: &EsEmulator, index: &str, i: usize) -> Option<StoredDoc> {
    let prefix = format!("{TOPIC}-{}-{}-", i % 3, i / 3);
    let mut found: Vec<StoredDoc> = es
        .documents(index)
        .into_iter()
        .filter(|(id, _)| id.starts_with(&prefix))
        .map(|(_, d)| d)
        .collect();
    assert!(found.len() <= 1, "{} documents for record {i}", found.len());
    found.pop()
}

fn sink_config(url: &str, extra: serde_json::Value) -> EsConfig {
    let mut cfg = json!({"endpoints": [url], "index": "audit-%Y.%m.%d"});
    if let (Some(base), Some(more)) = (cfg.as_object_mut(), extra.as_object()) {
        for (k, v) in more {
            base.insert(k.clone(), v.clone());
        }
    }
    config::from_value(cfg).expect("valid config")
}

async fn open_sink(url: &str, extra: serde_json::Value) -> Arc<dyn Sink> {
    let mut sink = EsSink::new(sink_config(url, extra)).expect("sink");
    sink.open(SinkContext {
        pipeline: "test".into(),
        health: Health::new(),
    })
    .await
    .expect("open");
    Arc::new(sink)
}

#[tokio::test]
async fn indexes_50k_records_once_each_under_daily_indices() {
    let es = EsEmulator::start().await;
    let sink = open_sink(&es.url(), json!({"op_type": "create"})).await;
    assert_eq!(
        sink.default_concurrency(),
        2,
        "ids from origins: batches may land in any order"
    );
    let records: Vec<Record> = (0..50_000).map(record).collect();
    let d = drive(&sink, records, 500, 2).await;

    assert_eq!(d.delivered.len(), 50_000);
    assert!(d.rejected.is_empty());
    assert_eq!(d.retried, 0);
    assert_eq!(es.items_seen(), 50_000, "every record sent exactly once");
    assert_eq!(es.document_count(), 50_000);
    let indices = es.indices();
    let expected: HashMap<String, usize> = [
        ("audit-2024.06.10".to_string(), 16_667),
        ("audit-2024.06.11".to_string(), 16_667),
        ("audit-2024.06.12".to_string(), 16_666),
    ]
    .into();
    assert_eq!(indices, expected);
    for i in [0, 1, 2, 3, 49_999] {
        let day = 10 + i % 3;
        let doc = doc_at(&es, &format!("audit-2024.06.{day}"), i)
            .unwrap_or_else(|| panic!("record {i} indexed"));
        assert_eq!(doc.source["n"], json!(i));
        assert_eq!(doc.version, 1);
    }
    let requests = es.bulk_requests();
    assert_eq!(requests.len(), 100);
    assert!(requests
        .iter()
        .all(|r| r.content_type == "application/x-ndjson" && !r.gzip));
}

#[tokio::test]
async fn only_429_items_are_retried_and_mapping_errors_are_rejected_with_their_reason() {
    let es = EsEmulator::start().await;
    // 100 items answered 429 once each; 40 documents that never map.
    es.reject_items_with_429(1, |_, _, doc| doc["n"].as_u64().unwrap() % 10 == 3);
    es.mapper_parsing_exception_when(|_, _, doc| doc["severity"] == "high");
    let sink = open_sink(&es.url(), json!({})).await;
    let records: Vec<Record> = (0..1000).map(record).collect();

    let outcomes = sink
        .send(&views(&records))
        .await
        .expect("bulk answered 200");
    let mut retry = Vec::new();
    for (i, o) in outcomes.iter().enumerate() {
        match o {
            Outcome::Delivered => assert!(i % 10 != 3 && i % 25 != 0, "record {i} delivered"),
            Outcome::Retry(reason) => {
                assert_eq!(i % 10, 3, "record {i} retried");
                assert!(
                    reason.contains("429") && reason.contains("es_rejected_execution_exception")
                );
                retry.push(records[i].clone());
            }
            Outcome::Unavailable(m) => panic!("record {i}: {m}"),
            Outcome::Reject(r) => {
                assert_eq!(i % 25, 0, "record {i} rejected");
                assert_eq!(r.kind, "es.bulk.item.mapper_parsing_exception");
                assert!(
                    r.message.contains("failed to parse field [severity]"),
                    "{}",
                    r.message
                );
            }
        }
    }
    assert_eq!(retry.len(), 100);
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Reject(_)))
            .count(),
        40
    );

    // The host resends only the retried records; now they are taken.
    let again = sink.send(&views(&retry)).await.expect("resend");
    assert!(again.iter().all(|o| *o == Outcome::Delivered));
    assert_eq!(es.items_seen(), 1100, "only the 429 items were sent twice");
    assert_eq!(es.document_count(), 960);
}

#[tokio::test]
async fn replaying_the_same_range_creates_no_duplicates() {
    for op in ["create", "index"] {
        let es = EsEmulator::start().await;
        let sink = open_sink(&es.url(), json!({"op_type": op})).await;
        let records: Vec<Record> = (0..2000).map(record).collect();
        let first = drive(&sink, records.clone(), 500, 1).await;
        let replay = drive(&sink, records, 250, 1).await;
        assert_eq!(first.delivered.len(), 2000, "{op}");
        assert_eq!(
            replay.delivered.len(),
            2000,
            "{op}: a replayed record counts as delivered"
        );
        assert!(replay.rejected.is_empty(), "{op}");
        assert_eq!(es.items_seen(), 4000, "{op}");
        assert_eq!(es.document_count(), 2000, "{op}: no duplicate documents");
        let v = doc_at(&es, "audit-2024.06.10", 0).unwrap().version;
        assert_eq!(v, if op == "create" { 1 } else { 2 }, "{op}");
    }
}

#[tokio::test]
async fn refuses_a_server_that_is_not_elasticsearch() {
    let impostor = EsEmulator::start_with(EsOptions {
        product_header: false,
        ..EsOptions::default()
    })
    .await;
    let mut sink = EsSink::new(sink_config(&impostor.url(), json!({}))).unwrap();
    let health = Health::new();
    let err = sink
        .open(SinkContext {
            pipeline: "test".into(),
            health: health.clone(),
        })
        .await
        .expect_err("an impostor must be refused");
    match &err {
        SinkError::Fatal(m) => {
            assert!(m.contains("is not Elasticsearch"), "{m}");
            assert!(m.contains("X-Elastic-Product"), "{m}");
        }
        other => panic!("expected Fatal, got {other:?}"),
    }
    assert!(health.problem().is_some());

    // A plain HTTP server that is not a cluster at all.
    let other = sluice_testkit::http::serve(axum::Router::new()).await;
    let mut sink = EsSink::new(sink_config(&other.url(), json!({}))).unwrap();
    let err = sink
        .open(SinkContext {
            pipeline: "test".into(),
            health: Health::new(),
        })
        .await
        .expect_err("refused");
    assert!(matches!(err, SinkError::Fatal(_)), "{err:?}");

    // Nothing listening: retryable.
    let mut sink = EsSink::new(sink_config("http://127.0.0.1:9", json!({}))).unwrap();
    let err = sink
        .open(SinkContext {
            pipeline: "test".into(),
            health: Health::new(),
        })
        .await
        .expect_err("refused");
    assert!(matches!(err, SinkError::Unavailable { .. }), "{err:?}");
}

#[tokio::test]
async fn whole_request_answers_become_sink_errors() {
    let es = EsEmulator::start_with(EsOptions {
        auth: Some(EsAuth::ApiKey("aWQ6c2VjcmV0".into())),
        max_content_length: 4096,
        ..EsOptions::default()
    })
    .await;

    // Missing credentials: refused at open, unauthorized (retried slowly by the host).
    let mut sink = EsSink::new(sink_config(&es.url(), json!({}))).unwrap();
    let err = sink
        .open(SinkContext {
            pipeline: "test".into(),
            health: Health::new(),
        })
        .await
        .expect_err("no credentials");
    assert!(matches!(err, SinkError::Unauthorized(_)), "{err:?}");

    // The raw id and key are encoded as base64(id:key).
    let sink = open_sink(
        &es.url(),
        json!({"auth": {"type": "api_key", "id": "id", "key": "secret"}}),
    )
    .await;
    let batch: Vec<Record> = (0..5).map(record).collect();
    assert!(sink
        .send(&views(&batch))
        .await
        .unwrap()
        .iter()
        .all(|o| *o == Outcome::Delivered));

    es.fail_next_requests(429, 1);
    assert!(matches!(
        sink.send(&views(&batch)).await,
        Err(SinkError::Unavailable { .. })
    ));
    es.fail_next_requests(503, 1);
    assert!(matches!(
        sink.send(&views(&batch)).await,
        Err(SinkError::Unavailable { .. })
    ));
    es.fail_next_requests(403, 1);
    assert!(matches!(
        sink.send(&views(&batch)).await,
        Err(SinkError::Unauthorized(_))
    ));
    // A proxy asking for credentials is not the records' fault: retried, never dead-lettered.
    es.fail_next_requests(407, 1);
    assert!(matches!(
        sink.send(&views(&batch)).await,
        Err(SinkError::Unauthorized(_))
    ));

    // Over http.max_content_length: 413, the host splits.
    let big: Vec<Record> = (0..100).map(record).collect();
    assert!(matches!(
        sink.send(&views(&big)).await,
        Err(SinkError::TooLarge(_))
    ));
    let d = drive(&sink, big, 100, 1).await;
    assert_eq!(d.delivered.len(), 100);
}

/// 408, 425 and 5xx are outages like 429: the batch is resent, the pipeline never restarts.
#[tokio::test]
async fn a_request_timeout_answer_is_an_outage_not_a_fatal_error() {
    let es = EsEmulator::start().await;
    let sink = open_sink(&es.url(), json!({})).await;
    let batch: Vec<Record> = (0..5).map(record).collect();
    for status in [408, 425, 502] {
        es.fail_next_requests(status, 1);
        match sink.send(&views(&batch)).await {
            Err(SinkError::Unavailable { message, .. }) => {
                assert!(message.contains(&status.to_string()), "{message}")
            }
            other => panic!("{status}: {other:?}"),
        }
    }
    let d = drive(&sink, batch, 5, 1).await;
    assert_eq!(d.delivered.len(), 5);
}

#[tokio::test]
async fn large_batches_are_split_by_max_request_bytes_and_gzip_is_sent() {
    let es = EsEmulator::start().await;
    let sink = open_sink(
        &es.url(),
        json!({"max_request_bytes": "16KiB", "compression": "gzip",
               "index": "audit-{{ tenant }}", "id_field": "n", "pipeline": "enrich"}),
    )
    .await;
    assert_eq!(
        sink.default_concurrency(),
        1,
        "ids from a field: batches land in order so the last write of a document wins"
    );
    let records: Vec<Record> = (0..1000).map(record).collect();
    let outcomes = sink.send(&views(&records)).await.unwrap();
    assert!(outcomes.iter().all(|o| *o == Outcome::Delivered));
    let requests = es.bulk_requests();
    assert!(requests.len() > 5, "{} requests", requests.len());
    assert!(requests.iter().all(|r| r.gzip && r.bytes <= 16 * 1024));
    assert!(requests
        .iter()
        .all(|r| r.query.as_deref() == Some("pipeline=enrich")));
    assert_eq!(requests.iter().map(|r| r.items).sum::<usize>(), 1000);
    assert_eq!(es.documents("audit-acme").len(), 500);
    assert_eq!(
        es.document("audit-globex", "7").unwrap().source["n"],
        json!(7)
    );
}

#[tokio::test]
async fn records_that_cannot_be_indexed_are_rejected_with_a_reason() {
    let es = EsEmulator::start().await;
    let sink = open_sink(
        &es.url(),
        json!({"index": "audit-{{ control }}", "id_field": "n"}),
    )
    .await;
    let mut records: Vec<Record> = (0..3).map(record).collect();
    records[1].value = "not json".into();
    records[2].value = r#"{"control": "x"}"#.into();
    let outcomes = sink.send(&views(&records)).await.unwrap();
    // Upper-case index names are refused by Elasticsearch, item by item.
    match &outcomes[0] {
        Outcome::Reject(r) => {
            assert_eq!(r.kind, "es.bulk.item.invalid_index_name_exception");
            assert!(r.message.contains("must be lowercase"), "{}", r.message);
        }
        o => panic!("{o:?}"),
    }
    assert!(matches!(&outcomes[1], Outcome::Reject(r) if r.kind == "es.document.not_an_object"));
    assert!(matches!(&outcomes[2], Outcome::Reject(r) if r.kind == "es.id.missing_field"));
    assert_eq!(es.items_seen(), 1);
}

#[tokio::test]
async fn the_benchmark_receiver_takes_what_the_sink_sends() {
    let (server, count) = sluice_testkit::elasticsearch::start_counter().await;
    let sink = open_sink(
        &server.url(),
        json!({"op_type": "create", "compression": "gzip"}),
    )
    .await;
    let records: Vec<Record> = (0..1000).map(record).collect();
    let outcomes = sink.send(&views(&records)).await.unwrap();
    assert!(outcomes.iter().all(|o| *o == Outcome::Delivered));
    assert_eq!(count.load(std::sync::atomic::Ordering::Relaxed), 1000);
}

#[tokio::test]
async fn a_different_record_at_a_reused_position_is_written_and_a_replay_is_not() {
    let es = EsEmulator::start().await;
    let sink = open_sink(&es.url(), json!({"op_type": "create"})).await;
    let first: Vec<Record> = (0..300).map(record).collect();
    let d = drive(&sink, first.clone(), 100, 1).await;
    assert_eq!(d.delivered.len(), 300);

    // The topic is recreated: the same positions now hold other records.
    let reused: Vec<Record> = first
        .iter()
        .map(|r| {
            let mut v: serde_json::Value = serde_json::from_slice(&r.value).unwrap();
            v["recreated"] = json!(true);
            let mut n = Record::new(serde_json::to_vec(&v).unwrap(), r.origin.clone());
            n.timestamp = r.timestamp;
            n
        })
        .collect();
    let d = drive(&sink, reused.clone(), 100, 1).await;
    assert_eq!(d.delivered.len(), 300);
    assert_eq!(
        es.document_count(),
        600,
        "each new record is a document of its own, not a 409 counted as delivered"
    );

    // A replay of either generation changes nothing.
    drive(&sink, reused, 100, 1).await;
    let d = drive(&sink, first, 100, 1).await;
    assert_eq!(d.delivered.len(), 300);
    assert!(d.rejected.is_empty());
    assert_eq!(es.document_count(), 600, "replays stay idempotent");
    assert!(es
        .documents("audit-2024.06.10")
        .values()
        .all(|doc| doc.version == 1));
}

#[tokio::test]
async fn an_outage_on_a_later_request_leaves_the_rest_unavailable_not_retried() {
    let es = EsEmulator::start().await;
    let sink = open_sink(&es.url(), json!({"max_request_bytes": "16KiB"})).await;
    let records: Vec<Record> = (0..1000).map(record).collect();
    es.fail_requests_after(1, 503, 1);
    let outcomes = sink
        .send(&views(&records))
        .await
        .expect("first request taken");
    let first = es.bulk_requests()[0].items;
    assert!(first > 0 && first < 1000);
    let mut rest = Vec::new();
    for (i, o) in outcomes.iter().enumerate() {
        if i < first {
            assert_eq!(*o, Outcome::Delivered, "record {i}");
        } else {
            assert!(
                matches!(o, Outcome::Unavailable(m) if m.contains("503")),
                "record {i}: {o:?}: an outage is not a record-level retry"
            );
            rest.push(records[i].clone());
        }
    }
    let again = sink.send(&views(&rest)).await.expect("recovered");
    assert!(again.iter().all(|o| *o == Outcome::Delivered));
    assert_eq!(es.document_count(), 1000);
    assert_eq!(es.items_seen(), 1000, "nothing delivered was sent twice");
}

#[tokio::test]
async fn time_field_picks_the_daily_index_from_the_event() {
    let es = EsEmulator::start().await;
    let sink = open_sink(&es.url(), json!({"time_field": "at"})).await;
    let records: Vec<Record> = ["2023-01-02T03:04:05Z", "not a time"]
        .iter()
        .enumerate()
        .map(|(i, at)| {
            let mut r = Record::new(
                serde_json::to_vec(&json!({"at": at})).unwrap(),
                Origin::new(TOPIC.into(), 0, i as i64),
            );
            r.timestamp = Some(DAY0_MS);
            r
        })
        .collect();
    let outcomes = sink.send(&views(&records)).await.unwrap();
    assert!(outcomes.iter().all(|o| *o == Outcome::Delivered));
    let indices = es.indices();
    assert_eq!(indices.get("audit-2023.01.02"), Some(&1), "{indices:?}");
    assert_eq!(
        indices.get("audit-2024.06.10"),
        Some(&1),
        "no usable time: the record's time, as splunk_hec does"
    );
    let err = EsSink::new(sink_config(
        &es.url(),
        json!({"index": "audit", "time_field": "at"}),
    ))
    .err()
    .expect("time_field without date parts");
    assert_eq!(err.path.as_deref(), Some("time_field"));
}

#[test]
fn credentials_in_an_endpoint_are_refused_without_being_repeated() {
    for url in [
        "https://elastic:hunter2@es:9200",
        "https://es:9200/?api_key=hunter2",
    ] {
        let err = EsSink::new(sink_config(url, json!({})))
            .err()
            .expect("refused");
        assert_eq!(err.path.as_deref(), Some("endpoints[0]"));
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}

#[tokio::test]
async fn a_connection_cut_on_a_later_request_leaves_the_rest_unavailable() {
    let es = EsEmulator::start().await;
    let sink = open_sink(&es.url(), json!({"max_request_bytes": "16KiB"})).await;
    let records: Vec<Record> = (0..1000).map(record).collect();
    es.close_connection_after(1);
    let outcomes = sink
        .send(&views(&records))
        .await
        .expect("first request taken");
    let first = es.bulk_requests()[0].items;
    assert!(outcomes[..first].iter().all(|o| *o == Outcome::Delivered));
    assert!(
        outcomes[first..]
            .iter()
            .all(|o| matches!(o, Outcome::Unavailable(_))),
        "{:?}",
        outcomes[first]
    );
    let again = sink
        .send(&views(&records[first..]))
        .await
        .expect("recovered");
    assert!(again.iter().all(|o| *o == Outcome::Delivered));
    assert_eq!(es.document_count(), 1000);
}
