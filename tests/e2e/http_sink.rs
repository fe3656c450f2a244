//! The `http` sink with the real binary against the in-process REST API emulator.

use std::io::Write as _;
use std::time::Duration;

use serde_json::json;
use sluice_testkit::api::{ApiAuth, ApiEmulator, TOKEN_PATH};

use crate::common::*;

const TOKEN: &str = "3c2b1a09f8e7d6c5b4a3928170f6e5d4";

fn api(auth: ApiAuth) -> (tokio::runtime::Runtime, ApiEmulator) {
    api_with(auth, &[("PATCH", "/api/applied-controls/*/")])
}

/// The emulator on a runtime of its own, answering `routes`.
fn api_with(auth: ApiAuth, routes: &[(&str, &str)]) -> (tokio::runtime::Runtime, ApiEmulator) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let server = rt.block_on(ApiEmulator::start(auth, routes));
    (rt, server)
}

/// The CISO Assistant example of docs/connectors/http.md, as written there.
fn ciso_example() -> String {
    let doc = std::fs::read_to_string(repo_root().join("docs/connectors/http.md")).unwrap();
    let start = doc
        .find("# ciso-assistant: update_applied_control_status")
        .expect("the CISO example in the docs");
    let end = start + doc[start..].find("```").expect("end of the example");
    doc[start..end].to_string()
}

#[test]
fn the_ciso_assistant_example_in_the_docs_validates() {
    let w = Workdir::new();
    let cfg = w.config("ciso.yaml", &ciso_example());
    let out = std::process::Command::new(sluice_bin())
        .args(["validate", cfg.to_str().unwrap()])
        .current_dir(w.path())
        .env("SCHEMA_REGISTRY_URL", "http://localhost:18081")
        .env("CISO_API_TOKEN", TOKEN)
        .output()
        .expect("run sluice");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    // The same config with a record field in the host is refused at the url's line.
    let bad = ciso_example().replace(
        "${CISO_API_URL:-http://localhost:8000/api}",
        "http://{{ tenant }}.api:8000/api",
    );
    let cfg = w.config("bad.yaml", &bad);
    let out = std::process::Command::new(sluice_bin())
        .args(["validate", cfg.to_str().unwrap()])
        .current_dir(w.path())
        .env("SCHEMA_REGISTRY_URL", "http://localhost:18081")
        .env("CISO_API_TOKEN", TOKEN)
        .output()
        .expect("run sluice");
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    let line = bad
        .lines()
        .position(|l| l.trim_start().starts_with("url: \"http://{{"))
        .unwrap()
        + 1;
    assert!(
        text.contains(&format!("bad.yaml:{line}:7: ")) && text.contains("scheme, host or port"),
        "{text}"
    );
}

fn pipeline(w: &Workdir, api: &str, source: &str, auth: &str, admin: &str) -> std::path::PathBuf {
    w.config(
        "http.yaml",
        &format!(
            r#"host:
  data_dir: "{{dir}}/data"
  admin: {{ listen: "{admin}" }}
  shutdown_timeout: 3s
pipelines:
  - name: ciso
    source: {source}
    sink:
      type: http
      url: "{api}/api/applied-controls/{{{{ payload.applied_control_id }}}}/"
      method: PATCH
      body: {{ template: {{ status: "{{{{ payload.status }}}}", seq: "{{{{ seq }}}}" }} }}
      auth: {auth}
      idempotency_key: {{ header: Idempotency-Key, template: "{{{{ event_id }}}}" }}
    batch: {{ max_events: 100, linger: 20ms }}
    rate_limit: {{ events_per_second: 1500 }}
    retry: {{ max_attempts: 3, initial_backoff: 10ms, max_backoff: 200ms }}
    commit_interval: 100ms
    dead_letter: {{ type: file }}
"#
        ),
    )
}

/// `n` CISO observation events in a file; the `file` source block reading them once.
fn events(w: &Workdir, n: u64) -> String {
    let input = w.join("events.jsonl");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
    for seq in 0..n {
        let e = json!({"event_id": format!("evt-{seq}"), "event_type": "update_applied_control_status",
                       "seq": seq, "payload": {"applied_control_id": format!("ac-{}", seq % 50), "status": "active"}});
        writeln!(f, "{e}").unwrap();
    }
    format!(
        "{{ type: file, path: \"{}\", at_end: stop }}",
        input.display()
    )
}

#[test]
fn after_kill_9_every_event_is_applied_exactly_once_with_an_idempotency_key() {
    let (_rt, api) = api(ApiAuth::Header {
        name: "authorization".into(),
        value: format!("Token {TOKEN}"),
    });
    let w = Workdir::new();
    let source = events(&w, 6000);
    let admin = format!("127.0.0.1:{}", free_port());
    let auth = "{ type: header, name: Authorization, value: \"Token ${CISO_API_TOKEN}\" }";
    let cfg = pipeline(&w, &api.url(), &source, auth, &admin);
    let env = [("CISO_API_TOKEN", TOKEN)];
    let mut s = w.start_with(&cfg, &env);
    wait_for(Duration::from_secs(60), "calls applied", || {
        (api.applied_count() >= 1500).then_some(())
    });
    s.kill9();
    let before = api.applied_count();
    assert!(before < 6000, "killed mid-run ({before})");
    let mut s = w.start_with(&cfg, &env);
    let status = s.wait(Duration::from_secs(120));
    assert!(status.success(), "exit {status:?}: {}", s.logs());
    let mut seqs: Vec<u64> = api
        .applied()
        .iter()
        .map(|c| c.body["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(api.applied_count(), 6000, "each event applied exactly once");
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), 6000);
    assert!(
        api.duplicates() > 0,
        "the restart resent calls the API had applied"
    );
    assert!(lines(&w.join("data/dlq/ciso.jsonl")).is_empty());
}

#[test]
fn a_wrong_client_secret_makes_health_unhealthy_and_dead_letters_nothing() {
    let (_rt, api) = api(ApiAuth::OAuth2 {
        client_id: "sluice".into(),
        client_secret: "right-secret".into(),
        ttl: Duration::from_secs(60),
    });
    let w = Workdir::new();
    let admin = format!("127.0.0.1:{}", free_port());
    let auth = format!(
        "{{ type: oauth2, token_url: \"{}{TOKEN_PATH}\", client_id: sluice, client_secret: \"${{CLIENT_SECRET}}\" }}",
        api.url()
    );
    let source = events(&w, 200);
    let cfg = pipeline(&w, &api.url(), &source, &auth, &admin);
    let s = w.start_with(&cfg, &[("CLIENT_SECRET", "wrong-secret")]);
    let body = wait_for(
        Duration::from_secs(30),
        "an unhealthy /health",
        || match http_get(&format!("http://{admin}/health")) {
            Some((503, body)) if body.contains("invalid_client") => Some(body),
            _ => None,
        },
    );
    assert!(!body.contains("wrong-secret"), "{body}");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(api.applied_count(), 0);
    assert!(api.tokens_refused() >= 1);
    assert_eq!(
        metric(&admin, "sluice_records_dead_lettered_total", "ciso").unwrap_or(0.0),
        0.0
    );
    assert!(lines(&w.join("data/dlq/ciso.jsonl")).is_empty());
    assert!(!s.logs().contains("wrong-secret"));
}

/// The envelope of `configs/ciso-assistant-observation.yaml`.
const OBSERVATION_SCHEMA: &str = r#"{"type":"record","name":"observation","fields":[
  {"name":"event_id","type":"string"},
  {"name":"event_type","type":"string"},
  {"name":"occurred_at","type":"string"},
  {"name":"payload","type":{"type":"map","values":"string"}}]}"#;

/// Event `seq` of the CISO example: one of the three use cases by `seq % 3`, or, every
/// 50th event, a type no route knows.
fn observation(seq: u64) -> serde_json::Value {
    let id = format!("evt-{seq}");
    let at = "2026-12-07T10:00:00Z";
    if seq % 50 == 49 {
        return json!({"event_id": id, "event_type": "delete_everything", "occurred_at": at,
                      "payload": {"applied_control_id": "ac-1"}});
    }
    match seq % 3 {
        0 => {
            json!({"event_id": id, "event_type": "update_applied_control_status", "occurred_at": at,
                    "payload": {"applied_control_id": format!("ac-{seq}"), "status": "active"}})
        }
        1 => {
            json!({"event_id": id, "event_type": "update_requirement_assessment_status", "occurred_at": at,
                    "payload": {"requirement_assessment_id": format!("ra-{seq}"), "status": "done", "result": "compliant"}})
        }
        _ => {
            json!({"event_id": id, "event_type": "attach_evidence_to_applied_control", "occurred_at": at,
                    "payload": {"applied_control_id": format!("ac-{seq}"), "name": format!("scan {seq}"),
                                "link": format!("https://evidence.example/scans/{seq}")}})
        }
    }
}

#[test]
fn the_ciso_assistant_config_calls_the_api_per_event_type_and_dead_letters_unknown_types() {
    use rdkafka::producer::{BaseRecord, Producer};
    use sluice_testkit::kafka::{create_topic, read_topic, real_broker, unique};
    use sluice_testkit::schema_registry::{avro_datum, frame, SchemaRegistry};

    let brokers = real_broker();
    let topic = unique("observation");
    create_topic(&brokers, &topic, 3);
    create_topic(&brokers, &format!("{topic}.dlq"), 1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let registry = rt.block_on(SchemaRegistry::start());
    let schema_id = registry.register(&format!("{topic}-value"), OBSERVATION_SCHEMA);
    let api = rt.block_on(ApiEmulator::start(
        ApiAuth::Header {
            name: "Authorization".into(),
            value: format!("Token {TOKEN}"),
        },
        &[
            ("PATCH", "/api/applied-controls/*/"),
            ("PATCH", "/api/requirement-assessments/*/"),
            ("POST", "/api/evidences/"),
        ],
    ));
    api.idempotency_header("Idempotency-Key");

    let n = 600u64;
    let unknown = (0..n).filter(|s| s % 50 == 49).count();
    let p = crate::kafka::producer(&brokers);
    for seq in 0..n {
        let value = frame(
            schema_id,
            &avro_datum(OBSERVATION_SCHEMA, &observation(seq)),
        );
        let key = format!("k-{}", seq % 7);
        p.send(BaseRecord::to(&topic).payload(&value).key(&key))
            .map_err(|(e, _)| e)
            .expect("enqueue");
    }
    p.flush(Duration::from_secs(60)).expect("acknowledged");

    let w = Workdir::new();
    let admin = format!("127.0.0.1:{}", free_port());
    let cfg = example_config(&w, "ciso-assistant-observation.yaml", &admin);
    let api_url = format!("{}/api", api.url());
    let group = unique("ciso");
    let s = w.start_with(
        &cfg,
        &[
            ("KAFKA_BROKERS", brokers.as_str()),
            ("KAFKA_TOPIC", topic.as_str()),
            ("KAFKA_GROUP_ID", group.as_str()),
            ("SCHEMA_REGISTRY_URL", registry.url().as_str()),
            ("CISO_API_URL", api_url.as_str()),
            ("CISO_API_TOKEN", TOKEN),
        ],
    );
    let routed = n - unknown as u64;
    wait_for(
        Duration::from_secs(90),
        "every routed event applied",
        || (api.applied_count() >= routed).then_some(()),
    );
    let dlq = read_topic(
        &brokers,
        &format!("{topic}.dlq"),
        unknown,
        Duration::from_secs(30),
    );
    s.sigterm();
    let applied = api.applied();
    assert_eq!(applied.len() as u64, routed, "{}", s.logs());
    assert_eq!(api.duplicates(), 0);
    let mut seen = std::collections::BTreeSet::new();
    for call in &applied {
        let key = &call.headers["idempotency-key"];
        let seq: u64 = key.trim_start_matches("evt-").parse().expect("event id");
        assert!(seen.insert(seq), "{key} applied twice");
        assert_eq!(call.headers["authorization"], format!("Token {TOKEN}"));
        let (method, path, body) = match seq % 3 {
            0 => (
                "PATCH",
                format!("/api/applied-controls/ac-{seq}/"),
                json!({"status": "active"}),
            ),
            1 => (
                "PATCH",
                format!("/api/requirement-assessments/ra-{seq}/"),
                json!({"status": "done", "result": "compliant"}),
            ),
            _ => (
                "POST",
                "/api/evidences/".to_string(),
                json!({"name": format!("scan {seq}"),
                       "link": format!("https://evidence.example/scans/{seq}"),
                       "applied_controls": [format!("ac-{seq}")]}),
            ),
        };
        assert_eq!(
            (call.method.as_str(), call.path.as_str(), &call.body),
            (method, path.as_str(), &body),
            "event {seq}"
        );
    }
    assert!((0..n).filter(|s| s % 50 != 49).all(|s| seen.contains(&s)));
    // The unknown type is dead-lettered as `unrouted`, its Avro value decoded to JSON.
    assert_eq!(dlq.len(), unknown, "{}", s.logs());
    for letter in &dlq {
        let header = |k: &str| {
            letter
                .headers
                .iter()
                .find(|(h, _)| h == k)
                .and_then(|(_, v)| v.clone())
                .map(|v| String::from_utf8_lossy(&v).to_string())
        };
        assert_eq!(
            header("__connect.errors.exception.class.name").as_deref(),
            Some("unrouted")
        );
        let v: serde_json::Value = serde_json::from_slice(&letter.value).expect("JSON letter");
        assert_eq!(v["event_type"], "delete_everything");
    }
}

#[test]
fn batches_in_flight_together_keep_each_partitions_calls_in_order() {
    use rdkafka::producer::{BaseRecord, Producer};
    use sluice_testkit::kafka::{create_topic, real_broker, unique};

    let brokers = real_broker();
    let topic = unique("http-order");
    let partitions = 4;
    let per_partition = 400u64;
    create_topic(&brokers, &topic, partitions);
    let p = crate::kafka::producer(&brokers);
    for i in 0..per_partition {
        for part in 0..partitions {
            let value = json!({"event_id": format!("{part}-{i}"), "p": part, "i": i}).to_string();
            p.send(
                BaseRecord::<(), _>::to(&topic)
                    .payload(&value)
                    .partition(part),
            )
            .map_err(|(e, _)| e)
            .expect("enqueue");
        }
    }
    p.flush(Duration::from_secs(60)).expect("acknowledged");
    let (_rt, api) = api_with(ApiAuth::None, &[("POST", "/api/events/")]);
    let w = Workdir::new();
    let admin = format!("127.0.0.1:{}", free_port());
    let cfg = w.config(
        "order.yaml",
        &format!(
            r#"host: {{ data_dir: "{{dir}}/data", admin: {{ listen: "{admin}" }} }}
pipelines:
  - name: order
    source: {{ type: kafka, brokers: "{brokers}", topics: ["{topic}"], group_id: "{group}", format: json }}
    sink: {{ type: http, url: "{url}/api/events/", max_in_flight: 4 }}
    batch: {{ max_events: 25, linger: 5ms }}
    concurrency: 8
"#,
            url = api.url(),
            group = unique("order"),
        ),
    );
    let s = w.start(&cfg);
    let total = per_partition * partitions as u64;
    wait_for(Duration::from_secs(90), "every call", || {
        (api.applied_count() >= total).then_some(())
    });
    s.sigterm();
    let mut next = vec![0u64; partitions as usize];
    for call in api.applied() {
        let part = call.body["p"].as_u64().expect("p") as usize;
        let i = call.body["i"].as_u64().expect("i");
        assert_eq!(i, next[part], "partition {part} out of order: {}", s.logs());
        next[part] += 1;
    }
    assert!(next.iter().all(|n| *n == per_partition), "{next:?}");
}

/// A named `http` sink takes its own `batch: ndjson` (a word: the connector's option), while
/// a named sink's `batch:` mapping stays the host's batching.
#[test]
fn a_named_http_sink_posts_ndjson_batches_beside_a_sink_with_its_own_batching() {
    let (_rt, api) = api_with(
        ApiAuth::Header {
            name: "authorization".into(),
            value: format!("Token {TOKEN}"),
        },
        &[("POST", "/api/bulk/")],
    );
    let w = Workdir::new();
    let source = events(&w, 300);
    let cfg = w.config(
        "named.yaml",
        &format!(
            r#"host: {{ data_dir: "{{dir}}/data" }}
pipelines:
  - name: bulk
    source: {source}
    batch: {{ max_events: 100, linger: 5s }}
    sinks:
      api:
        type: http
        url: "{}/api/bulk/"
        batch: ndjson
        auth: {{ type: header, name: Authorization, value: "Token {TOKEN}" }}
      copy:
        type: file
        path: "{{dir}}/copy.jsonl"
        batch: {{ max_events: 7, linger: 5s }}
"#,
            api.url()
        ),
    );
    let out = w.sluice(&["validate", cfg.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut s = w.start(&cfg);
    assert!(s.wait(Duration::from_secs(60)).success(), "{}", s.logs());
    let calls = api.applied();
    assert_eq!(calls.len(), 3, "one call per batch of the pipeline's 100");
    let mut seqs = Vec::new();
    for c in &calls {
        assert_eq!(c.headers["content-type"], "application/x-ndjson");
        seqs.extend(
            c.body
                .as_array()
                .expect("the lines of a call")
                .iter()
                .map(|e| e["seq"].as_u64().unwrap()),
        );
    }
    assert_eq!(seqs, (0..300).collect::<Vec<_>>());
    assert_eq!(lines(&w.join("copy.jsonl")).len(), 300);
}
