//! The `splunk_hec` sink, built from its YAML-shaped configuration through the registry and
//! driven through the SDK `Sink` trait, against the HEC emulator of `sluice-testkit`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use sluice_sdk::{
    views, BuildContext, Health, Origin, Outcome, Record, Registry, Rejection, Sink, SinkContext,
    SinkError,
};
use sluice_testkit::drive::drive;
use sluice_testkit::hec::{Fault, HecOptions, HecServer};
use sluice_testkit::http::{test_pki, ServerTls};

const TOKEN: &str = "6a1f0f8e-3b1c-4f64-9a51-1c2d3e4f5a6b";
const BASE_MS: i64 = 1_718_000_000_000;

/// Builds the sink the way the host does and opens it.
async fn open_sink(config: Value) -> (Arc<dyn Sink>, Health) {
    let mut registry = Registry::new();
    sluice_splunk_hec::register(&mut registry);
    let ctx = BuildContext {
        pipeline: Arc::from("test"),
        data_dir: std::env::temp_dir(),
    };
    let mut sink = registry
        .build_sink("splunk_hec", config, &ctx)
        .expect("valid splunk_hec config");
    let health = Health::new();
    sink.open(SinkContext {
        pipeline: Arc::from("test"),
        health: health.clone(),
    })
    .await
    .expect("open");
    (Arc::from(sink), health)
}

fn config(server: &HecServer, extra: Value) -> Value {
    let mut c = json!({"endpoint": server.url(), "token": TOKEN});
    c.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    c
}

fn ack_options() -> HecOptions {
    HecOptions {
        token: TOKEN.into(),
        acknowledgements: true,
        ..HecOptions::default()
    }
}

/// Event time of record `i`, in the three shapes `time_field` accepts.
fn ts_of(i: i64) -> (Value, String) {
    let ms = BASE_MS + i * 37;
    let expected = format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000));
    let v = match i % 3 {
        0 => json!(chrono::DateTime::from_timestamp_millis(ms)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        1 => json!(ms),
        _ => json!(ms as f64 / 1000.0),
    };
    (v, expected)
}

fn records(n: i64) -> Vec<Record> {
    (0..n)
        .map(|i| {
            let value = json!({
                "id": i,
                "ts": ts_of(i).0,
                "src": format!("kafka-{}", i % 3),
                "host_name": format!("web-{}", i % 7),
                "event_type": "control.evaluated",
                "detail": {"control": "AC.L2-3.1.1", "status": "met"},
            });
            let mut r = Record::new(
                serde_json::to_vec(&value).unwrap(),
                Origin::new(Arc::from("assessment.events"), 0, i),
            );
            r.timestamp = Some(1);
            r
        })
        .collect()
}

fn id_of(event: &Value) -> i64 {
    event["id"].as_i64().expect("event with an id")
}

fn counts(events: &[sluice_testkit::hec::HecEvent]) -> BTreeMap<i64, usize> {
    let mut m = BTreeMap::new();
    for e in events {
        *m.entry(id_of(&e.event)).or_default() += 1;
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_thousand_events_arrive_once_with_their_metadata() {
    let server = HecServer::start(HecOptions {
        allowed_indexes: Some(vec!["security".into()]),
        ..ack_options()
    })
    .await;
    let (sink, health) = open_sink(config(
        &server,
        json!({
            "index": "security",
            "source": "{{ src }}",
            "sourcetype": "assessment:event",
            "host": "{{ host_name }}",
            "time_field": "ts",
            "fields": {"tenant": "acme", "event_type": "{{ event_type }}"},
            "acknowledgements": true,
            "ack_poll_interval": "20ms",
        }),
    ))
    .await;
    assert_eq!(
        sink.default_concurrency(),
        8,
        "several batches in flight with acks"
    );

    let driven = drive(&sink, records(50_000), 500, 8).await;
    assert_eq!(driven.delivered.len(), 50_000);
    assert_eq!(
        (driven.retried, driven.unavailable.len()),
        (0, 0),
        "{driven:?}"
    );
    assert!(health.problem().is_none());

    let events = server.events();
    assert_eq!(events.len(), 50_000);
    let counts = counts(&events);
    assert_eq!(counts.len(), 50_000, "every id once");
    assert!(counts.values().all(|&c| c == 1));
    let channel = events[0].channel.clone().expect("channel sent");
    assert!(uuid::Uuid::parse_str(&channel).is_ok());
    for e in &events {
        let i = id_of(&e.event);
        assert_eq!(e.index, "security");
        assert_eq!(
            e.source.as_deref(),
            Some(format!("kafka-{}", i % 3).as_str())
        );
        assert_eq!(e.sourcetype.as_deref(), Some("assessment:event"));
        assert_eq!(e.host.as_deref(), Some(format!("web-{}", i % 7).as_str()));
        assert_eq!(
            e.time.as_deref(),
            Some(ts_of(i).1.as_str()),
            "time of event {i}"
        );
        assert_eq!(
            e.fields.as_ref().map(|f| Value::Object(f.clone())),
            Some(json!({"tenant": "acme", "event_type": "control.evaluated"}))
        );
        assert_eq!(
            e.event["detail"]["control"], "AC.L2-3.1.1",
            "value embedded as JSON"
        );
        assert_eq!(
            e.channel.as_deref(),
            Some(channel.as_str()),
            "one channel per sink"
        );
    }
    let requests = server.requests();
    let posts: Vec<_> = requests
        .iter()
        .filter(|r| r.path.ends_with("/event"))
        .collect();
    assert!(posts
        .iter()
        .all(|r| r.content_encoding.as_deref() == Some("gzip")));
    assert!(posts.iter().all(|r| r.body_bytes <= 1 << 20));
    assert_eq!(server.stats().acks_answered_true as usize, posts.len());
    assert!(server.violations().is_empty(), "{:?}", server.violations());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_server_delayed_and_lost_acks_lose_nothing() {
    let server = HecServer::start(HecOptions {
        seed: 7,
        ..ack_options()
    })
    .await;
    server.set_busy_rate(0.2);
    server.set_ack_delay(Duration::from_millis(5), Duration::from_millis(400));
    server.set_ack_loss_rate(0.1);
    let (sink, _health) = open_sink(config(
        &server,
        json!({
            "acknowledgements": true,
            "ack_poll_interval": "20ms",
            "ack_timeout": "300ms",
        }),
    ))
    .await;

    let driven = drive(&sink, records(5_000), 100, 8).await;
    let stats = server.stats();
    assert!(
        stats.busy > 0 && stats.acks_lost > 0,
        "faults were injected: {stats:?}"
    );
    assert!(
        !driven.unavailable.is_empty(),
        "busy answers reached the host: {driven:?}"
    );
    assert!(
        driven.retried > 0,
        "ack timeouts made records resend: {driven:?}"
    );
    assert!(driven.rejected.is_empty());

    let mut delivered = driven.delivered_offsets();
    delivered.sort_unstable();
    delivered.dedup();
    assert_eq!(delivered.len(), 5_000, "every record reported delivered");

    let events = server.events();
    let counts = counts(&events);
    assert_eq!(counts.len(), 5_000, "no event missing from the index");
    let duplicates = events.len() - counts.len();
    println!(
        "5000 events: {} busy answers, {} acks lost, {} records resent, {duplicates} duplicates",
        stats.busy, stats.acks_lost, driven.retried
    );
    assert!(
        duplicates <= driven.retried,
        "duplicates ({duplicates}) come only from resends ({})",
        driven.retried
    );
    assert!(
        !server.lost_events().is_empty(),
        "some requests really were lost"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_event_is_rejected_with_hec_code_and_text() {
    let server = HecServer::start(ack_options()).await;
    server.reject_events_where(|e| e.event["id"] == 1234);
    let (sink, _) = open_sink(config(
        &server,
        json!({"acknowledgements": true, "ack_poll_interval": "20ms"}),
    ))
    .await;

    let driven = drive(&sink, records(5_000), 500, 4).await;
    assert_eq!(
        driven
            .rejected
            .iter()
            .map(|(r, rej)| (r.origin.offset, rej.clone()))
            .collect::<Vec<_>>(),
        vec![(
            1234,
            Rejection {
                kind: "splunk.hec.code=6".into(),
                message: "Invalid data format".into()
            }
        )]
    );
    assert_eq!(driven.delivered.len(), 4_999);
    assert!(
        driven.retried > 0,
        "the events after the bad one were resent"
    );
    let counts = counts(&server.events());
    assert_eq!(counts.len(), 4_999);
    assert!(!counts.contains_key(&1234));
    assert!(counts.values().all(|&c| c == 1), "nothing indexed twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_token_is_unauthorized_until_fixed_and_rejects_nothing() {
    let server = HecServer::start(ack_options()).await;
    server.set_token("11111111-2222-4333-8444-555555555555");
    let (sink, health) = open_sink(config(
        &server,
        json!({"acknowledgements": true, "ack_poll_interval": "20ms"}),
    ))
    .await;
    let batch = records(100);

    match sink.send(&views(&batch)).await {
        Err(SinkError::Unauthorized(m)) => {
            assert!(m.contains("403 code 4: Invalid token"), "{m}");
            assert!(!m.contains(TOKEN), "the token never appears in messages");
        }
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    let problem = health.problem().expect("unhealthy");
    assert!(problem.contains("Invalid token"), "{problem}");
    assert_eq!(server.event_count(), 0);

    server.set_token(TOKEN);
    let outcomes = sink
        .send(&views(&batch))
        .await
        .expect("delivered once the token is fixed");
    assert!(outcomes.iter().all(|o| *o == Outcome::Delivered));
    assert_eq!(server.event_count(), 100);
    assert!(health.problem().is_none(), "healthy again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_over_the_server_limit_is_too_large_and_splits() {
    let server = HecServer::start(HecOptions {
        token: TOKEN.into(),
        max_content_length: 8 * 1024,
        ..HecOptions::default()
    })
    .await;
    let (sink, _) = open_sink(config(&server, json!({"compression": "none"}))).await;
    let batch = records(200);

    match sink.send(&views(&batch)).await {
        Err(SinkError::TooLarge(m)) => assert!(m.contains("413"), "{m}"),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert_eq!(server.event_count(), 0);

    let driven = drive(&sink, batch, 200, 1).await;
    assert!(driven.too_large > 0);
    assert_eq!(driven.delivered.len(), 200);
    assert_eq!(counts(&server.events()).len(), 200);
}

#[tokio::test]
async fn batches_are_split_under_max_bytes() {
    let server = HecServer::start(HecOptions {
        token: TOKEN.into(),
        ..HecOptions::default()
    })
    .await;
    let (sink, _) = open_sink(config(&server, json!({"max_bytes": "4KiB"}))).await;
    let outcomes = sink.send(&views(&records(300))).await.unwrap();
    assert!(outcomes.iter().all(|o| *o == Outcome::Delivered));
    let requests = server.requests();
    assert!(requests.len() > 10, "{} requests", requests.len());
    assert!(requests
        .iter()
        .all(|r| r.body_bytes <= 4096 && r.status == 200));
    assert_eq!(counts(&server.events()).len(), 300);
}

#[tokio::test]
async fn busy_internal_and_throttled_answers_are_unavailable() {
    let server = HecServer::start(HecOptions {
        token: TOKEN.into(),
        ..HecOptions::default()
    })
    .await;
    let (sink, _) = open_sink(config(&server, json!({}))).await;
    assert_eq!(
        sink.default_concurrency(),
        2,
        "two batches in flight without acks"
    );
    server.push_faults([Fault::busy(), Fault::internal(), Fault::too_many(3)]);
    let batch = records(3);
    for expect in [
        "503 code 9: Server is busy",
        "500 code 8: Internal server error",
        "429",
    ] {
        match sink.send(&views(&batch)).await {
            Err(SinkError::Unavailable {
                message,
                retry_after,
            }) => {
                assert!(message.contains(expect), "{message}");
                if expect == "429" {
                    assert_eq!(retry_after, Some(Duration::from_secs(3)));
                }
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }
    assert_eq!(server.event_count(), 0);
    sink.send(&views(&batch)).await.unwrap();
    assert_eq!(server.event_count(), 3);
}

#[tokio::test]
async fn round_robin_fails_over_to_a_live_endpoint() {
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let a = HecServer::start(ack_options()).await;
    let b = HecServer::start(ack_options()).await;
    let (sink, _) = open_sink(json!({
        "endpoints": [dead, a.url(), b.url()],
        "token": TOKEN,
        "acknowledgements": true,
        "ack_poll_interval": "20ms",
    }))
    .await;
    for chunk in records(60).chunks(10) {
        let outcomes = sink.send(&views(chunk)).await.unwrap();
        assert!(
            outcomes.iter().all(|o| *o == Outcome::Delivered),
            "{outcomes:?}"
        );
    }
    assert_eq!(a.event_count() + b.event_count(), 60);
    assert!(
        a.event_count() > 0 && b.event_count() > 0,
        "both live endpoints used"
    );
    // Acks were polled where they were issued.
    assert_eq!(
        a.stats().acks_answered_true + b.stats().acks_answered_true,
        6
    );
}

#[tokio::test]
async fn token_without_ack_falls_back_to_http_200() {
    let server = HecServer::start(HecOptions {
        token: TOKEN.into(),
        ..HecOptions::default()
    })
    .await;
    let (sink, _) = open_sink(config(
        &server,
        json!({"acknowledgements": true, "ack_poll_interval": "20ms"}),
    ))
    .await;
    let outcomes = sink.send(&views(&records(5))).await.unwrap();
    assert!(outcomes.iter().all(|o| *o == Outcome::Delivered));
    assert_eq!(server.event_count(), 5);
}

#[tokio::test]
async fn text_values_missing_fields_and_raw_endpoint() {
    let server = HecServer::start(HecOptions {
        token: TOKEN.into(),
        ..HecOptions::default()
    })
    .await;
    let (sink, _) = open_sink(config(
        &server,
        json!({"index": "{{ idx }}", "compression": "none"}),
    ))
    .await;
    let o = |v: &[u8], off| Record::new(v.to_vec(), Origin::new(Arc::from("s"), 0, off));
    let outcomes = sink
        .send(&views(&[
            o(br#"{"idx":"a","n":1}"#, 0),
            o(br#"{"n":2}"#, 1),
            o(b"not json", 2),
        ]))
        .await
        .unwrap();
    assert_eq!(outcomes[0], Outcome::Delivered);
    for rejected in &outcomes[1..] {
        assert!(
            matches!(rejected, Outcome::Reject(r) if r.kind == "splunk.hec.missing_field"),
            "{rejected:?}"
        );
    }
    assert_eq!(server.events()[0].index, "a");

    let (plain, _) = open_sink(config(&server, json!({"sourcetype": "syslog"}))).await;
    plain
        .send(&[o(b"<13>Jun 10 host app: hello", 3).view()])
        .await
        .unwrap();
    assert_eq!(
        server.events()[1].event,
        json!("<13>Jun 10 host app: hello")
    );
    assert!(
        server.events()[1].time.is_none(),
        "no time: HEC stamps receipt time"
    );

    let (raw, _) = open_sink(config(
        &server,
        json!({"endpoint_kind": "raw", "index": "main", "sourcetype": "syslog", "host": "h1"}),
    ))
    .await;
    raw.send(&views(&[o(b"line one", 4), o(b"line two", 5)]))
        .await
        .unwrap();
    let events = server.events();
    let raw_events: HashMap<_, _> = events
        .iter()
        .filter(|e| e.endpoint == "raw")
        .map(|e| (e.event.as_str().unwrap().to_string(), e))
        .collect();
    assert_eq!(raw_events.len(), 2);
    let e = raw_events["line two"];
    assert_eq!(
        (e.index.as_str(), e.sourcetype.as_deref(), e.host.as_deref()),
        ("main", Some("syslog"), Some("h1"))
    );
}

#[tokio::test]
async fn emulator_refuses_what_splunk_refuses() {
    let server = HecServer::start(ack_options()).await;
    let client = reqwest::Client::new();
    let post = |path: &str, auth: Option<&str>, channel: Option<&str>, body: &'static str| {
        let mut r = client.post(format!("{}{path}", server.url())).body(body);
        if let Some(a) = auth {
            r = r.header("Authorization", a);
        }
        if let Some(c) = channel {
            r = r.header("X-Splunk-Request-Channel", c);
        }
        async move {
            let resp = r.send().await.unwrap();
            (
                resp.status().as_u16(),
                resp.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let auth = format!("Splunk {TOKEN}");
    let ch = "0d9b7a2e-4f1c-4b8e-9a3d-2c1b0a9f8e7d";
    let ev = "/services/collector/event";
    assert_eq!(post(ev, None, Some(ch), "{}").await.1["code"], 2);
    assert_eq!(post(ev, Some(TOKEN), Some(ch), "{}").await.1["code"], 3);
    assert_eq!(
        post(ev, Some("Splunk nope"), Some(ch), "{}").await,
        (403, json!({"text":"Invalid token","code":4}))
    );
    assert_eq!(
        post(ev, Some(&auth), None, r#"{"event":1}"#).await.1["code"],
        10
    );
    assert_eq!(
        post(ev, Some(&auth), Some("abc"), r#"{"event":1}"#).await.1["code"],
        11
    );
    assert_eq!(post(ev, Some(&auth), Some(ch), "  ").await.1["code"], 5);
    assert_eq!(
        post(
            ev,
            Some(&auth),
            Some(ch),
            r#"{"event":"a"}{"time":"x","event":"b"}"#
        )
        .await,
        (
            400,
            json!({"text":"Error in handling indexed fields","code":15,"invalid-event-number":1})
        )
    );
    assert_eq!(
        post(ev, Some(&auth), Some(ch), r#"{"event":"a","time":1.718E9}"#)
            .await
            .1["code"],
        15
    );
    assert_eq!(
        post(ev, Some(&auth), Some(ch), r#"{"event":" "}"#).await.1["code"],
        13
    );
    assert_eq!(
        post(ev, Some(&auth), Some(ch), r#"{"time":1}"#).await.1["code"],
        12
    );
    assert_eq!(
        post(
            ev,
            Some(&auth),
            Some(ch),
            r#"{"event":"a","fields":{"n":{"x":1}}}"#
        )
        .await
        .1["code"],
        15
    );
    assert_eq!(
        post(ev, Some(&auth), Some(ch), r#"[{"event":"a"}]"#)
            .await
            .1["code"],
        6
    );
    let ok = post(
        ev,
        Some(&auth),
        Some(ch),
        "{\"event\":\"a\",\"time\":1718000000.5}\n{\"event\":{\"b\":1}}",
    )
    .await;
    assert_eq!(ok, (200, json!({"text":"Success","code":0,"ackId":0})));
    let acks = post(
        "/services/collector/ack",
        Some(&auth),
        Some(ch),
        r#"{"acks":[0,1]}"#,
    )
    .await;
    assert_eq!(acks.1, json!({"acks":{"0":true,"1":false}}));
    let again = post(
        "/services/collector/ack",
        Some(&auth),
        Some(ch),
        r#"{"acks":[0]}"#,
    )
    .await;
    assert_eq!(
        again.1,
        json!({"acks":{"0":false}}),
        "forgotten once answered true"
    );
    assert_eq!(
        post("/services/nope", Some(&auth), Some(ch), "").await.0,
        404
    );
    assert_eq!(
        server.event_count(),
        2 + 1,
        "events before a failing one stay indexed"
    );

    // Basic auth with the token as password is accepted.
    let basic = "Basic c2x1aWNlOjZhMWYwZjhlLTNiMWMtNGY2NC05YTUxLTFjMmQzZTRmNWE2Yg==";
    assert_eq!(
        post(ev, Some(basic), Some(ch), r#"{"event":"basic"}"#)
            .await
            .0,
        200
    );
    // Encodings: only gzip, and its output is capped.
    let deflate = client
        .post(format!("{}{ev}", server.url()))
        .header("Authorization", &auth)
        .header("X-Splunk-Request-Channel", ch)
        .header("Content-Encoding", "deflate")
        .body(r#"{"event":"a"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(deflate.status().as_u16(), 415);
    let small = HecServer::start(HecOptions {
        token: TOKEN.into(),
        max_decompressed: 1_000,
        ..HecOptions::default()
    })
    .await;
    let bomb = {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(format!(r#"{{"event":"{}"}}"#, "0".repeat(5_000)).as_bytes())
            .unwrap();
        gz.finish().unwrap()
    };
    let resp = client
        .post(format!("{}{ev}", small.url()))
        .header("Authorization", &auth)
        .header("Content-Encoding", "gzip")
        .body(bomb)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413, "decompressed size is capped");
    assert_eq!(small.event_count(), 0);
}

#[tokio::test]
async fn unreadable_tls_files_fail_open_with_their_path() {
    let mut registry = Registry::new();
    sluice_splunk_hec::register(&mut registry);
    let ctx = BuildContext {
        pipeline: Arc::from("test"),
        data_dir: std::env::temp_dir(),
    };
    let dir = tempfile_dir();
    let not_pem = dir.join("not.pem");
    std::fs::write(&not_pem, "not a certificate").unwrap();
    for (ca, expect) in [
        (dir.join("missing.pem"), "tls.ca_file"),
        (not_pem.clone(), "tls.ca_file"),
    ] {
        // The factory does no I/O: building succeeds, opening reports the file.
        let mut sink = registry
            .build_sink(
                "splunk_hec",
                json!({"endpoint": "https://127.0.0.1:1", "token": TOKEN,
                       "tls": {"ca_file": ca}}),
                &ctx,
            )
            .expect("valid config");
        let err = sink
            .open(SinkContext {
                pipeline: Arc::from("test"),
                health: Health::new(),
            })
            .await
            .err();
        match err {
            Some(SinkError::Fatal(m)) => assert!(m.contains(expect), "{m}"),
            other => panic!("expected a fatal error naming {expect}, got {other:?}"),
        }
    }
}

/// A TLS listener with the test PKI's server certificate; `mutual` also requires a client
/// certificate from the test CA.
async fn tls_server(mutual: bool) -> HecServer {
    HecServer::start(HecOptions {
        token: TOKEN.into(),
        tls: Some(ServerTls::test(mutual)),
        ..HecOptions::default()
    })
    .await
}

/// Sends ten records in one batch: the outcomes, or the batch's error.
async fn send_ten(config: Value) -> Result<Vec<Outcome>, SinkError> {
    let (sink, _health) = open_sink(config).await;
    sink.send(&views(&records(10))).await
}

#[tokio::test]
async fn events_arrive_over_tls_from_a_server_signed_by_the_configured_ca() {
    let server = tls_server(false).await;
    assert!(server.url().starts_with("https://"));
    let pki = test_pki();
    let outcomes = send_ten(config(&server, json!({"tls": {"ca_file": pki.ca}})))
        .await
        .expect("delivered over TLS");
    assert!(outcomes.iter().all(|o| *o == Outcome::Delivered));
    assert_eq!(server.event_count(), 10);
}

#[tokio::test]
async fn a_server_certificate_from_another_ca_is_refused_and_nothing_is_sent() {
    let server = tls_server(false).await;
    let pki = test_pki();
    for tls in [json!({"ca_file": pki.other_ca}), json!({})] {
        let err = send_ten(config(&server, json!({ "tls": tls })))
            .await
            .expect_err("an unverifiable server must not get the events");
        // Retryable: fixing the CA file and restarting delivers what was held.
        assert!(matches!(err, SinkError::Unavailable { .. }), "{err:?}");
    }
    assert_eq!(server.event_count(), 0);
    // Only an explicit opt-out skips the check.
    let outcomes = send_ten(config(
        &server,
        json!({"tls": {"insecure_skip_verify": true}}),
    ))
    .await
    .expect("delivered without verification");
    assert_eq!(outcomes.len(), 10);
    assert_eq!(server.event_count(), 10);
}

#[tokio::test]
async fn mutual_tls_presents_the_client_certificate() {
    let server = tls_server(true).await;
    let pki = test_pki();
    let err = send_ten(config(&server, json!({"tls": {"ca_file": pki.ca}})))
        .await
        .expect_err("the listener requires a client certificate");
    assert!(matches!(err, SinkError::Unavailable { .. }), "{err:?}");
    assert_eq!(server.event_count(), 0);
    let outcomes = send_ten(config(
        &server,
        json!({"tls": {"ca_file": pki.ca, "cert_file": pki.client_cert, "key_file": pki.client_key}}),
    ))
    .await
    .expect("delivered with the client certificate");
    assert!(outcomes.iter().all(|o| *o == Outcome::Delivered));
    assert_eq!(server.event_count(), 10);
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("sluice-hec-tls-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[tokio::test]
async fn an_outage_on_a_later_request_leaves_the_rest_unavailable_not_retried() {
    let server = HecServer::start(HecOptions {
        token: TOKEN.into(),
        ..HecOptions::default()
    })
    .await;
    let (sink, _) = open_sink(config(&server, json!({"max_bytes": "4KiB"}))).await;
    server.push_faults_after(1, [Fault::busy()]);
    let batch = records(300);
    let outcomes = sink
        .send(&views(&batch))
        .await
        .expect("first request taken");
    let first = server.event_count();
    assert!(first > 0 && first < 300, "{first}");
    let mut rest = Vec::new();
    for (i, o) in outcomes.iter().enumerate() {
        if i < first {
            assert_eq!(*o, Outcome::Delivered, "record {i}");
        } else {
            assert!(
                matches!(o, Outcome::Unavailable(m) if m.contains("503")),
                "record {i}: {o:?}: an outage is not a record-level retry"
            );
            rest.push(batch[i].clone());
        }
    }
    let again = sink.send(&views(&rest)).await.expect("recovered");
    assert!(again.iter().all(|o| *o == Outcome::Delivered));
    let counts = counts(&server.events());
    assert_eq!(counts.len(), 300);
    assert!(counts.values().all(|&c| c == 1), "nothing indexed twice");
}
