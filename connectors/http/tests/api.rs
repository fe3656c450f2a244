//! The sink against the REST API emulator, through the SDK's `Sink` trait.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use sluice_http::{HttpConfig, HttpSink};
use sluice_sdk::{config, views, Health, Origin, Record, Sink, SinkContext, SinkError};
use sluice_testkit::api::{ApiAuth, ApiEmulator, TOKEN_PATH};
use sluice_testkit::drive::drive;

const TOKEN: &str = "9f8e7d6c5b4a39281706f5e4d3c2b1a0";

/// The CISO Assistant use cases: event type, method, route, URL path, body template.
const USE_CASES: [(&str, &str, &str, &str); 3] = [
    (
        "update_applied_control_status",
        "PATCH",
        "/api/applied-controls/*/",
        "/api/applied-controls/{{ payload.applied_control_id }}/",
    ),
    (
        "update_requirement_assessment_status",
        "PATCH",
        "/api/requirement-assessments/*/",
        "/api/requirement-assessments/{{ payload.requirement_assessment_id }}/",
    ),
    (
        "attach_evidence_to_applied_control",
        "POST",
        "/api/evidences/",
        "/api/evidences/",
    ),
];

fn routes() -> Vec<(&'static str, &'static str)> {
    USE_CASES.iter().map(|(_, m, r, _)| (*m, *r)).collect()
}

fn body_template(event_type: &str) -> Value {
    match event_type {
        "update_applied_control_status" => json!({
            "status": "{{ payload.status }}",
            "eta": "{{ payload.eta }}",
            "progress_field": "{{ payload.progress }}",
        }),
        "update_requirement_assessment_status" => json!({
            "status": "{{ payload.status }}",
            "result": "{{ payload.result }}",
        }),
        _ => json!({
            "name": "evidence for {{ payload.applied_control_id }}",
            "applied_controls": ["{{ payload.applied_control_id }}"],
            "link": "{{ payload.link }}",
            "observation": {"source": "sluice", "seq": "{{ seq }}"},
        }),
    }
}

const STATUSES: [&str; 3] = ["active", "in_progress", "deprecated"];

/// Event `seq` of a use case: ids with characters that need encoding in a path.
fn event(seq: usize, event_type: &str) -> Value {
    json!({
        "event_id": format!("evt-{seq:06}"),
        "event_type": event_type,
        "seq": seq,
        "payload": {
            "applied_control_id": format!("ac {seq}/x"),
            "requirement_assessment_id": format!("ra-{seq}"),
            "status": STATUSES[seq % 3],
            "result": "compliant",
            "eta": "2026-12-31",
            "progress": seq % 101,
            "link": format!("https://evidence.example/{seq}?a=b"),
        },
    })
}

fn record(seq: usize, value: &Value, partitions: i32) -> Record {
    let p = seq as i32 % partitions;
    Record::new(
        serde_json::to_vec(value).unwrap(),
        Origin::new("observation".into(), p, seq as i64),
    )
}

fn sink_config(extra: Value) -> HttpConfig {
    config::from_value(extra).expect("valid config")
}

async fn open(cfg: Value) -> (Arc<dyn Sink>, Health) {
    let mut sink = HttpSink::new(sink_config(cfg)).expect("sink");
    let health = Health::new();
    sink.open(SinkContext {
        pipeline: "ciso".into(),
        health: health.clone(),
    })
    .await
    .expect("open");
    (Arc::new(sink), health)
}

fn use_case_config(api: &str, use_case: usize, extra: Value) -> Value {
    let (event_type, method, _, path) = USE_CASES[use_case];
    let mut cfg = json!({
        "url": format!("{api}{path}"),
        "method": method,
        "headers": {"X-Source": "sluice", "X-Event-Type": "{{ event_type }}"},
        "body": {"template": body_template(event_type)},
        "auth": {"type": "header", "name": "Authorization", "value": format!("Token {TOKEN}")},
        "idempotency_key": {"header": "Idempotency-Key", "template": "{{ event_id }}"},
        "max_in_flight": 4,
    });
    if let (Some(base), Some(more)) = (cfg.as_object_mut(), extra.as_object()) {
        for (k, v) in more {
            base.insert(k.clone(), v.clone());
        }
    }
    cfg
}

fn token_api_auth() -> ApiAuth {
    ApiAuth::Header {
        name: "authorization".into(),
        value: format!("Token {TOKEN}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_use_case_call_arrives_with_its_method_path_headers_and_body() {
    let api = ApiEmulator::start(token_api_auth(), &routes()).await;
    let mut expected: HashMap<String, (usize, Value)> = HashMap::new();
    for (u, (event_type, ..)) in USE_CASES.iter().enumerate() {
        let (sink, health) = open(use_case_config(&api.url(), u, json!({}))).await;
        let events: Vec<Value> = (0..10_000)
            .filter(|seq| seq % 3 == u)
            .map(|seq| event(seq, event_type))
            .collect();
        for e in &events {
            expected.insert(e["event_id"].as_str().unwrap().into(), (u, e.clone()));
        }
        let records = events
            .iter()
            .map(|e| record(e["seq"].as_u64().unwrap() as usize, e, 4))
            .collect();
        let driven = drive(&sink, records, 500, 1).await;
        assert!(driven.rejected.is_empty(), "{:?}", driven.rejected.first());
        assert_eq!(driven.retried, 0);
        assert_eq!(health.problem(), None);
    }
    let applied = api.applied();
    assert_eq!(applied.len(), 10_000, "every event applied");
    assert_eq!(api.duplicates(), 0);
    let mut seen = HashMap::new();
    for call in applied {
        let key = call.headers["idempotency-key"].clone();
        let (u, e) = expected.get(&key).expect("a known event");
        *seen.entry(key.clone()).or_insert(0) += 1;
        let (event_type, method, _, _) = USE_CASES[*u];
        let seq = e["seq"].as_u64().unwrap();
        let p = &e["payload"];
        assert_eq!(call.method.as_str(), method);
        assert_eq!(call.headers["authorization"], format!("Token {TOKEN}"));
        assert_eq!(call.headers["content-type"], "application/json");
        assert_eq!(call.headers["x-source"], "sluice");
        assert_eq!(call.headers["x-event-type"], event_type);
        assert!(call.headers["user-agent"].starts_with("sluice-http/"));
        match event_type {
            "update_applied_control_status" => {
                assert_eq!(call.path, format!("/api/applied-controls/ac%20{seq}%2Fx/"));
                assert_eq!(
                    call.body,
                    json!({"status": p["status"], "eta": "2026-12-31", "progress_field": seq % 101})
                );
            }
            "update_requirement_assessment_status" => {
                assert_eq!(call.path, format!("/api/requirement-assessments/ra-{seq}/"));
                assert_eq!(
                    call.body,
                    json!({"status": p["status"], "result": "compliant"})
                );
            }
            _ => {
                assert_eq!(call.path, "/api/evidences/");
                assert_eq!(
                    call.body,
                    json!({
                        "name": format!("evidence for ac {seq}/x"),
                        "applied_controls": [format!("ac {seq}/x")],
                        "link": p["link"],
                        "observation": {"source": "sluice", "seq": seq},
                    })
                );
            }
        }
    }
    assert_eq!(seen.len(), 10_000);
    assert!(seen.values().all(|&n| n == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_503_429_and_dropped_connections_every_event_is_applied_once() {
    let api = ApiEmulator::start(token_api_auth(), &routes()).await;
    api.faults(0.2, 1, 42);
    let (sink, _) = open(use_case_config(&api.url(), 0, json!({}))).await;
    let records: Vec<Record> = (0..10_000)
        .map(|seq| record(seq, &event(seq, "update_applied_control_status"), 4))
        .collect();
    let driven = drive(&sink, records, 500, 1).await;
    assert!(driven.rejected.is_empty());
    assert_eq!(driven.delivered.len(), 10_000);
    for kind in ["503", "429", "dropped"] {
        assert!(
            api.faults_injected(kind) > 300,
            "{kind}: {}",
            api.faults_injected(kind)
        );
    }
    assert_eq!(
        api.applied_count(),
        10_000,
        "each event applied exactly once"
    );
    let dropped = api.faults_injected("dropped");
    assert_eq!(
        api.duplicates(),
        dropped,
        "every call cut after it was applied came again, and was recognised by its key"
    );
    let mut keys: Vec<String> = api
        .applied()
        .into_iter()
        .map(|c| c.headers["idempotency-key"].clone())
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 10_000);
}

#[tokio::test]
async fn a_429_passes_its_retry_after_to_the_host_and_keeps_the_partition_in_order() {
    let api = ApiEmulator::start(token_api_auth(), &routes()).await;
    api.script(&[(429, json!({"detail": "Request was throttled."}))]);
    let (sink, _) = open(use_case_config(&api.url(), 0, json!({"max_in_flight": 1}))).await;
    let recs: Vec<Record> = (0..3)
        .map(|seq| record(seq, &event(seq, "update_applied_control_status"), 1))
        .collect();
    match sink.send(&views(&recs)).await {
        Err(SinkError::Unavailable {
            retry_after,
            message,
        }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(1)), "{message}");
            assert!(message.contains("429"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(api.calls(), 1, "the rest of the partition waited");
    let outcomes = sink.send(&views(&recs)).await.expect("delivered");
    assert!(outcomes
        .iter()
        .all(|o| *o == sluice_sdk::Outcome::Delivered));
    let order: Vec<Value> = api
        .applied()
        .into_iter()
        .map(|c| c.body["status"].clone())
        .collect();
    assert_eq!(
        order,
        [json!("active"), json!("in_progress"), json!("deprecated")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_dead_lettered_with_status_and_body_and_409_counts_as_delivered() {
    let api = ApiEmulator::start(token_api_auth(), &routes()).await;
    for (status, result) in [
        (400, "bad"),
        (404, "gone"),
        (422, "invalid"),
        (409, "exists"),
    ] {
        api.answer_when(
            "result",
            json!(result),
            status,
            json!({"result": [format!("\"{result}\" is not a valid choice.")]}),
        );
    }
    let cfg = use_case_config(&api.url(), 1, json!({"responses": {"409": "delivered"}}));
    let (sink, _) = open(cfg).await;
    let results = ["compliant", "bad", "gone", "invalid", "exists"];
    let records: Vec<Record> = (0..1_000)
        .map(|seq| {
            let mut e = event(seq, "update_requirement_assessment_status");
            e["payload"]["result"] = json!(results[seq % 5]);
            record(seq, &e, 4)
        })
        .collect();
    let driven = drive(&sink, records, 100, 1).await;
    assert_eq!(driven.delivered.len(), 400, "compliant and 409 ones");
    assert_eq!(driven.rejected.len(), 600);
    assert_eq!(api.applied_count(), 200);
    let mut kinds: HashMap<String, usize> = HashMap::new();
    for (r, rej) in &driven.rejected {
        let v: Value = serde_json::from_slice(&r.value).unwrap();
        let result = v["payload"]["result"].as_str().unwrap();
        let status = match result {
            "bad" => 400,
            "gone" => 404,
            "invalid" => 422,
            other => panic!("{other} rejected"),
        };
        assert_eq!(rej.kind, format!("http.status={status}"));
        let mut lines = rej.message.lines();
        let first = lines.next().unwrap();
        assert!(
            first.starts_with(&format!("the API answered {status} ")),
            "{first}"
        );
        assert!(
            !first.contains(result),
            "the logged line quotes nothing of the answer"
        );
        let rest: Vec<&str> = lines.collect();
        assert_eq!(
            rest,
            [format!(
                "response body: {{\"result\":[\"\\\"{result}\\\" is not a valid choice.\"]}}"
            )]
        );
        *kinds.entry(rej.kind.clone()).or_default() += 1;
    }
    assert_eq!(kinds.len(), 3);
    assert!(kinds.values().all(|&n| n == 200));
}

fn oauth_config(api: &str, secret: &str) -> Value {
    use_case_config(
        api,
        0,
        json!({"auth": {
            "type": "oauth2", "token_url": format!("{api}{TOKEN_PATH}"),
            "client_id": "sluice", "client_secret": secret, "scope": "write",
        }}),
    )
}

fn oauth_api(ttl: Duration) -> ApiAuth {
    ApiAuth::OAuth2 {
        client_id: "sluice".into(),
        client_secret: "s3cr3t-value".into(),
        ttl,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oauth2_token_expiring_mid_run_is_fetched_again_once() {
    let api = ApiEmulator::start(oauth_api(Duration::from_secs(3600)), &routes()).await;
    let (sink, health) = open(oauth_config(&api.url(), "s3cr3t-value")).await;
    let records = |from: usize| -> Vec<Record> {
        (from..from + 2_000)
            .map(|seq| record(seq, &event(seq, "update_applied_control_status"), 4))
            .collect()
    };
    let first = drive(&sink, records(0), 250, 1).await;
    assert_eq!(first.delivered.len(), 2_000);
    assert_eq!(api.tokens_issued(), 1, "one token for the whole first half");
    api.expire_tokens();
    let second = drive(&sink, records(2_000), 250, 1).await;
    assert_eq!(second.delivered.len(), 2_000);
    assert!(second.rejected.is_empty() && second.unavailable.is_empty());
    assert_eq!(api.tokens_issued(), 2, "one refresh after the expiry");
    assert!(
        (1..=4).contains(&api.unauthorized()),
        "only the calls in flight met the expired token: {}",
        api.unauthorized()
    );
    assert_eq!(api.applied_count(), 4_000);
    assert_eq!(health.problem(), None);
}

#[tokio::test]
async fn an_oauth2_token_is_fetched_again_shortly_before_it_expires() {
    let api = ApiEmulator::start(oauth_api(Duration::from_secs(1)), &routes()).await;
    let (sink, _) = open(oauth_config(&api.url(), "s3cr3t-value")).await;
    let recs: Vec<Record> = (0..2)
        .map(|seq| record(seq, &event(seq, "update_applied_control_status"), 1))
        .collect();
    sink.send(&views(&recs[..1])).await.expect("first");
    tokio::time::sleep(Duration::from_millis(950)).await;
    sink.send(&views(&recs[1..])).await.expect("second");
    assert_eq!(api.tokens_issued(), 2);
    assert_eq!(api.unauthorized(), 0, "never sent a lapsed token");
    assert_eq!(api.applied_count(), 2);
}

#[tokio::test]
async fn a_wrong_client_secret_leaves_the_sink_unhealthy_and_nothing_rejected() {
    let api = ApiEmulator::start(oauth_api(Duration::from_secs(60)), &routes()).await;
    let (sink, health) = open(oauth_config(&api.url(), "wrong-secret-value")).await;
    let recs: Vec<Record> = (0..10)
        .map(|seq| record(seq, &event(seq, "update_applied_control_status"), 2))
        .collect();
    for _ in 0..2 {
        match sink.send(&views(&recs)).await {
            Err(SinkError::Unauthorized(m)) => {
                assert!(m.contains("401") && m.contains("invalid_client"), "{m}");
                assert!(!m.contains("wrong-secret-value"));
            }
            other => panic!("{other:?}"),
        }
    }
    let problem = health.problem().expect("unhealthy");
    assert!(problem.contains("invalid_client"), "{problem}");
    assert_eq!(api.applied_count(), 0);
    assert_eq!(api.calls(), 0, "no call without a token");
    assert!(api.tokens_refused() >= 2);
}

#[tokio::test]
async fn bearer_and_basic_credentials_and_a_refused_one() {
    for (auth, cfg) in [
        (
            ApiAuth::Bearer(TOKEN.into()),
            json!({"type": "bearer", "token": TOKEN}),
        ),
        (
            ApiAuth::Basic {
                username: "svc".into(),
                password: "p@ss:word".into(),
            },
            json!({"type": "basic", "username": "svc", "password": "p@ss:word"}),
        ),
    ] {
        let api = ApiEmulator::start(auth, &routes()).await;
        let rec = [record(1, &event(1, "update_applied_control_status"), 1)];
        let (sink, _) = open(use_case_config(&api.url(), 0, json!({ "auth": cfg }))).await;
        sink.send(&views(&rec)).await.expect("accepted");
        assert_eq!(api.applied_count(), 1);
        let (sink, health) = open(use_case_config(
            &api.url(),
            0,
            json!({"auth": {"type": "bearer", "token": "not-the-token"}}),
        ))
        .await;
        assert!(matches!(
            sink.send(&views(&rec)).await,
            Err(SinkError::Unauthorized(_))
        ));
        assert!(health.problem().unwrap().contains("401"));
    }
}

#[tokio::test]
async fn batches_are_one_call_each_as_ndjson_or_a_json_array() {
    for (format, content_type) in [
        ("ndjson", "application/x-ndjson"),
        ("json_array", "application/json"),
    ] {
        let api = ApiEmulator::start(token_api_auth(), &[("POST", "/api/bulk/")]).await;
        let cfg = json!({
            "url": format!("{}/api/bulk/", api.url()),
            "batch": format,
            "auth": {"type": "header", "name": "Authorization", "value": format!("Token {TOKEN}")},
            "compression": "gzip",
        });
        let (sink, _) = open(cfg).await;
        let mut records: Vec<Record> = (0..1_000)
            .map(|seq| record(seq, &event(seq, "update_applied_control_status"), 4))
            .collect();
        // A pretty-printed value still takes one NDJSON line; a value that is not JSON is
        // dead-lettered rather than breaking the batch.
        records[7].value = serde_json::to_vec_pretty(&event(7, "x")).unwrap().into();
        records[8].value = b"not json".to_vec().into();
        let driven = drive(&sink, records, 250, 1).await;
        assert_eq!(driven.delivered.len(), 999, "{format}");
        assert_eq!(driven.rejected.len(), 1);
        assert_eq!(driven.rejected[0].1.kind, "http.not_json");
        let calls = api.applied();
        assert_eq!(calls.len(), 4, "{format}: one call per batch");
        let mut seqs = Vec::new();
        for c in &calls {
            assert_eq!(c.headers["content-type"], content_type);
            assert_eq!(c.headers["content-encoding"], "gzip");
            seqs.extend(
                c.body
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v["seq"].as_u64().unwrap()),
            );
        }
        assert_eq!(seqs.len(), 999);
        assert!(seqs.contains(&7) && !seqs.contains(&8));
    }
}

#[test]
fn templates_and_options_are_checked_when_the_sink_is_built() {
    let at = |cfg: Value| {
        let e = HttpSink::new(sink_config(cfg)).err().expect("refused");
        (e.path.unwrap_or_default(), e.message)
    };
    let (path, msg) = at(json!({"url": "http://{{ tenant }}.api/x"}));
    assert_eq!(path, "url");
    assert!(msg.contains("scheme, host or port"), "{msg}");
    let (path, msg) = at(json!({"url": "http://api/{{ a | upper }}"}));
    assert_eq!(path, "url");
    assert!(msg.contains("unknown template syntax"), "{msg}");
    let (path, _) = at(json!({"url": "http://api/", "body": {"template": {"a": {"b": "{{ x"}}}}));
    assert_eq!(path, "body.template.a.b");
    let (path, _) = at(json!({"url": "http://api/", "headers": {"X-A": "{{}}"}}));
    assert_eq!(path, "headers.X-A");
    let (path, _) = at(json!({"url": "http://api/", "idempotency_key": {"template": "fixed"}}));
    assert_eq!(path, "idempotency_key.template");
    let (path, _) = at(json!({"url": "http://api/{{ id }}", "batch": "ndjson"}));
    assert_eq!(path, "url");
    let (path, _) = at(json!({"url": "http://api/", "responses": {"4xx": "reject"}}));
    assert_eq!(path, "responses.4xx");
    let (path, _) = at(json!({"url": "http://api/", "method": "TRACE"}));
    assert_eq!(path, "method");
    let (path, msg) = at(json!({"url": "http://api/x?api_key=hunter2"}));
    assert_eq!(path, "url");
    assert!(!msg.contains("hunter2"));
    let (path, _) = at(json!({"url": "http://api/", "auth": {"type": "oauth2",
        "token_url": "http://api/token", "client_id": "", "client_secret": "x"}}));
    assert_eq!(path, "auth.client_id");
    let e =
        config::from_value::<HttpConfig>(json!({"url": "http://api/", "body": "raw"})).unwrap_err();
    assert_eq!(e.path.as_deref(), Some("body"));
}

#[tokio::test]
async fn with_ordering_none_every_call_of_one_partition_is_applied_once() {
    let api = ApiEmulator::start(token_api_auth(), &routes()).await;
    api.idempotency_header("Idempotency-Key");
    let (sink, _) = open(use_case_config(
        &api.url(),
        0,
        json!({"max_in_flight": 8, "ordering": "none"}),
    ))
    .await;
    assert!(!sink.orders_partitions());
    let recs: Vec<Record> = (0..200)
        .map(|seq| record(seq, &event(seq, "update_applied_control_status"), 1))
        .collect();
    let outcomes = sink.send(&views(&recs)).await.expect("sent");
    assert!(outcomes
        .iter()
        .all(|o| *o == sluice_sdk::Outcome::Delivered));
    assert_eq!(api.applied_count(), 200);
    assert_eq!(api.duplicates(), 0);
}
