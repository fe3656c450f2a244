//! The sink against the Datadog intake emulator, through the SDK's `Sink` trait.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use sluice_datadog::{DdConfig, DdSink, MAX_ENTRIES, MAX_REQUEST_BYTES};
use sluice_sdk::{config, views, Health, Origin, Outcome, Record, Sink, SinkContext, SinkError};
use sluice_testkit::datadog::DdEmulator;
use sluice_testkit::drive::{drive, drive_with};

const KEY: &str = "0123456789abcdef0123456789abcdef";

fn record(i: usize) -> Record {
    let value = json!({
        "event_type": "gap.identified",
        "tenant": if i.is_multiple_of(2) { "acme" } else { "globex" },
        "host": format!("scanner-{}", i % 4),
        "level": if i.is_multiple_of(10) { "error" } else { "info" },
        "n": i,
    });
    let mut r = Record::new(
        serde_json::to_vec(&value).unwrap(),
        Origin::new("assessment.events".into(), 0, i as i64),
    );
    r.timestamp = Some(1_700_000_000_000 + i as i64);
    r
}

fn sink_config(url: &str, extra: Value) -> DdConfig {
    let mut cfg = json!({"endpoint": url, "api_key": KEY});
    if let (Some(base), Some(more)) = (cfg.as_object_mut(), extra.as_object()) {
        for (k, v) in more {
            base.insert(k.clone(), v.clone());
        }
    }
    config::from_value(cfg).expect("valid config")
}

async fn open_sink(url: &str, extra: Value) -> Arc<dyn Sink> {
    let mut sink = DdSink::new(sink_config(url, extra)).expect("sink");
    sink.open(SinkContext {
        pipeline: "test".into(),
        health: Health::new(),
    })
    .await
    .expect("open");
    Arc::new(sink)
}

fn assert_within_limits(dd: &DdEmulator) {
    for r in dd.requests() {
        assert!(r.entries <= MAX_ENTRIES, "{} entries", r.entries);
        assert!(r.bytes <= MAX_REQUEST_BYTES, "{} bytes", r.bytes);
        assert!(
            r.status == 202 || r.status == 429,
            "request answered {}",
            r.status
        );
    }
}

#[tokio::test]
async fn delivers_50k_logs_with_their_attributes() {
    let dd = DdEmulator::start(KEY).await;
    let sink = open_sink(
        &dd.url(),
        json!({
            "service": "audit-trail", "ddsource": "cmmc-scout",
            "ddtags": "env:test,tenant:{{ tenant }}", "hostname": "{{ host }}", "status": "{{ level }}",
        }),
    )
    .await;
    let records: Vec<Record> = (0..50_000).map(record).collect();
    let d = drive(&sink, records, 2500, 1).await;
    assert_eq!(d.delivered.len(), 50_000);
    assert!(d.rejected.is_empty());

    let logs = dd.logs();
    assert_eq!(logs.len(), 50_000);
    let mut seen = HashSet::new();
    for log in &logs {
        let msg: Value = serde_json::from_str(log["message"].as_str().unwrap()).unwrap();
        let n = msg["n"].as_u64().unwrap() as usize;
        assert!(seen.insert(n), "log {n} arrived twice");
        assert_eq!(log["service"], "audit-trail");
        assert_eq!(log["ddsource"], "cmmc-scout");
        assert_eq!(
            log["ddtags"],
            format!("env:test,tenant:{}", msg["tenant"].as_str().unwrap())
        );
        assert_eq!(log["hostname"], format!("scanner-{}", n % 4));
        assert_eq!(
            log["status"],
            if n.is_multiple_of(10) {
                "error"
            } else {
                "info"
            }
        );
        assert_eq!(log["timestamp"], json!(1_700_000_000_000i64 + n as i64));
    }
    assert_within_limits(&dd);
    let requests = dd.requests();
    assert_eq!(
        requests.len(),
        60,
        "2500-record sends split into 1000+1000+500"
    );
    assert!(requests
        .iter()
        .all(|r| r.content_encoding.as_deref() == Some("gzip")
            && r.content_type.as_deref() == Some("application/json")));
    assert_eq!(dd.truncated_logs(), 0);
}

#[tokio::test]
async fn big_logs_are_split_under_5mb_and_a_log_over_1mb_is_rejected() {
    let dd = DdEmulator::start(KEY).await;
    let sink = open_sink(&dd.url(), json!({"compression": "none"})).await;
    let filler = "a".repeat(700_000);
    let mut records: Vec<Record> = (0..30)
        .map(|i| {
            let mut r = record(i);
            r.value = serde_json::to_vec(&json!({"n": i, "blob": filler}))
                .unwrap()
                .into();
            r
        })
        .collect();
    // A 1.5 MB log in the middle.
    records[13].value = serde_json::to_vec(&json!({"n": 13, "blob": "b".repeat(1_500_000)}))
        .unwrap()
        .into();

    let outcomes = sink.send(&views(&records)).await.expect("sent");
    for (i, o) in outcomes.iter().enumerate() {
        if i == 13 {
            match o {
                Outcome::Reject(r) => {
                    assert_eq!(r.kind, "datadog.log_too_large");
                    assert!(
                        r.message.contains("1000000-byte limit per log"),
                        "{}",
                        r.message
                    );
                }
                o => panic!("the 1.5 MB log must be rejected, got {o:?}"),
            }
        } else {
            assert_eq!(*o, Outcome::Delivered, "log {i}");
        }
    }
    assert_eq!(dd.log_count(), 29);
    assert_eq!(dd.truncated_logs(), 0, "nothing was cut by the intake");
    let requests = dd.requests();
    assert!(
        requests.len() >= 5,
        "29 logs of 700 KB need at least 5 requests"
    );
    assert_within_limits(&dd);
    assert!(requests.iter().all(|r| r.content_encoding.is_none()));
}

#[tokio::test]
async fn bursts_of_429_lose_nothing() {
    let dd = DdEmulator::start(KEY).await;
    let sink = open_sink(&dd.url(), json!({"service": "audit"})).await;
    let records: Vec<Record> = (0..20_000).map(record).collect();
    let d = drive_with(&sink, records, 1500, 1, |n| {
        if n % 4 == 1 {
            // Sometimes the first request of a send is refused, sometimes the second.
            dd.burst_429_after(n % 2, 3, Some(2));
        }
    })
    .await;
    assert_eq!(d.delivered.len(), 20_000);
    assert!(d.rejected.is_empty());
    assert!(!d.unavailable.is_empty());
    assert!(
        d.unavailable
            .iter()
            .all(|r| *r == Some(Duration::from_secs(2))),
        "Retry-After honoured"
    );
    let logs = dd.logs();
    assert_eq!(logs.len(), 20_000, "nothing lost, nothing duplicated");
    let distinct: HashSet<String> = logs
        .iter()
        .map(|l| l["message"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(distinct.len(), 20_000);
    assert_within_limits(&dd);
}

#[tokio::test]
async fn a_failure_after_an_accepted_request_leaves_only_the_rest_unavailable() {
    let dd = DdEmulator::start(KEY).await;
    let sink = open_sink(&dd.url(), json!({})).await;
    let records: Vec<Record> = (0..2500).map(record).collect();
    dd.burst_429_after(1, 1, None);
    let outcomes = sink
        .send(&views(&records))
        .await
        .expect("first request was accepted");
    assert!(outcomes[..1000].iter().all(|o| *o == Outcome::Delivered));
    // An outage, not a record-level retry: the host resends these without counting.
    assert!(outcomes[1000..]
        .iter()
        .all(|o| matches!(o, Outcome::Unavailable(r) if r.contains("429"))));
    assert_eq!(dd.log_count(), 1000);
    let again = sink.send(&views(&records[1000..])).await.unwrap();
    assert!(again.iter().all(|o| *o == Outcome::Delivered));
    assert_eq!(dd.log_count(), 2500, "nothing sent twice");
}

#[tokio::test]
async fn answers_map_to_outcomes_and_errors() {
    let dd = DdEmulator::start(KEY).await;
    let batch: Vec<Record> = (0..10).map(record).collect();

    let health = Health::new();
    let mut wrong = DdSink::new(sink_config(&dd.url(), json!({"api_key": "wrong"}))).unwrap();
    wrong
        .open(SinkContext {
            pipeline: "t".into(),
            health: health.clone(),
        })
        .await
        .unwrap();
    match wrong.send(&views(&batch)).await {
        Err(SinkError::Unauthorized(m)) => assert!(m.contains("403"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(
        health.problem().is_some_and(|p| p.contains("403")),
        "pipeline unhealthy"
    );

    let health = Health::new();
    let mut sink = DdSink::new(sink_config(&dd.url(), json!({}))).unwrap();
    sink.open(SinkContext {
        pipeline: "t".into(),
        health: health.clone(),
    })
    .await
    .unwrap();
    dd.fail_next(401, 1);
    assert!(matches!(
        sink.send(&views(&batch)).await,
        Err(SinkError::Unauthorized(_))
    ));
    assert!(health.problem().is_some());
    assert!(sink
        .send(&views(&batch))
        .await
        .unwrap()
        .iter()
        .all(|o| *o == Outcome::Delivered));
    assert!(health.problem().is_none(), "healthy again after a 202");

    dd.fail_next(400, 1);
    let outcomes = sink.send(&views(&batch)).await.unwrap();
    assert!(outcomes
        .iter()
        .all(|o| matches!(o, Outcome::Reject(r) if r.kind == "datadog.http.400")));
    for status in [408, 500, 503] {
        dd.fail_next(status, 1);
        assert!(
            matches!(
                sink.send(&views(&batch)).await,
                Err(SinkError::Unavailable { .. })
            ),
            "{status}"
        );
    }
    dd.fail_next(413, 1);
    assert!(matches!(
        sink.send(&views(&batch)).await,
        Err(SinkError::TooLarge(_))
    ));
    // A proxy asking for credentials: retried like a bad key, never dead-lettered.
    dd.fail_next(407, 1);
    assert!(matches!(
        sink.send(&views(&batch)).await,
        Err(SinkError::Unauthorized(_))
    ));
}

#[tokio::test]
async fn message_field_sends_the_other_fields_as_attributes() {
    let dd = DdEmulator::start(KEY).await;
    let sink = open_sink(
        &dd.url(),
        json!({"message_field": "event_type", "service": "audit"}),
    )
    .await;
    let outcomes = sink.send(&[record(3).view()]).await.unwrap();
    assert_eq!(outcomes, vec![Outcome::Delivered]);
    let log = &dd.logs()[0];
    assert_eq!(log["message"], "gap.identified");
    assert_eq!(log["tenant"], "globex");
    assert_eq!(log["n"], 3);
    assert_eq!(log["service"], "audit");
    assert!(log.get("event_type").is_none());
}

#[tokio::test]
async fn the_benchmark_receiver_takes_what_the_sink_sends() {
    let (server, count) = sluice_testkit::datadog::start_counter().await;
    let sink = open_sink(&server.url(), json!({"service": "bench"})).await;
    let records: Vec<Record> = (0..2500).map(record).collect();
    let outcomes = sink.send(&views(&records)).await.unwrap();
    assert!(outcomes.iter().all(|o| *o == Outcome::Delivered));
    // 2500 logs need three requests (at most 1000 each).
    assert_eq!(count.load(std::sync::atomic::Ordering::Relaxed), 3);
}
