//! `splunk_hec` with the real binary: generator -> splunk_hec against the in-process HEC
//! emulator (no Splunk runs here), with indexer acknowledgement on.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use sluice_testkit::hec::{Fault, HecEvent, HecOptions, HecServer};

use crate::common::*;

const TOKEN: &str = "3f2b9c1e-7d4a-4e8b-9c0d-1a2b3c4d5e6f";

/// The emulator runs on its own runtime threads while the test drives the binary.
fn hec_server(opts: HecOptions) -> (tokio::runtime::Runtime, HecServer) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let server = rt.block_on(HecServer::start(opts));
    (rt, server)
}

fn seq_counts_of(events: &[HecEvent]) -> BTreeMap<u64, usize> {
    let mut m = BTreeMap::new();
    for e in events {
        let seq = e.event["seq"]
            .as_u64()
            .unwrap_or_else(|| panic!("no seq in {:?}", e.event));
        *m.entry(seq).or_default() += 1;
    }
    m
}

/// generator -> splunk_hec, token from the environment as in the example config.
fn pipeline(w: &Workdir, server: &HecServer, generator: &str, admin: &str) -> std::path::PathBuf {
    w.config(
        "hec.yaml",
        &format!(
            r#"host:
  data_dir: "{{dir}}/data"
  admin: {{ listen: "{admin}" }}
pipelines:
  - name: hec
    source: {{ type: generator, {generator} }}
    sink:
      type: splunk_hec
      endpoint: "{url}"
      token: "${{SPLUNK_HEC_TOKEN}}"
      index: audit
      sourcetype: "sluice:generator"
      acknowledgements: true
      ack_poll_interval: 20ms
    batch: {{ max_events: 200, linger: 20ms }}
    retry: {{ max_attempts: 5, initial_backoff: 10ms, max_backoff: 400ms }}
    commit_interval: 100ms
"#,
            url = server.url(),
        ),
    )
}

#[test]
fn a_bad_event_lands_in_the_dlq_with_hec_code_and_text() {
    let (_rt, server) = hec_server(HecOptions {
        token: TOKEN.into(),
        acknowledgements: true,
        allowed_indexes: Some(vec!["audit".into()]),
        ..HecOptions::default()
    });
    server.reject_events_where(|e| e.event["seq"] == 777);
    let w = Workdir::new();
    let admin = format!("127.0.0.1:{}", free_port());
    let cfg = pipeline(&w, &server, "count: 2000", &admin);
    let mut s = w.start_with(&cfg, &[("SPLUNK_HEC_TOKEN", TOKEN)]);
    let status = s.wait(Duration::from_secs(90));
    assert!(status.success(), "exit {status:?}: {}", s.logs());

    let dlq = read_jsonl(&w.join("data/dlq/hec.jsonl"));
    assert_eq!(
        dlq.len(),
        1,
        "exactly the bad event is dead-lettered: {dlq:?}"
    );
    let d = &dlq[0];
    let value: Value =
        serde_json::from_str(d["value"].as_str().expect("value kept as text")).unwrap();
    assert_eq!(value["seq"], 777);
    assert_eq!(
        d["__connect.errors.exception.class.name"],
        "splunk.hec.code=6"
    );
    assert_eq!(
        d["__connect.errors.exception.message"],
        "Invalid data format"
    );
    assert_eq!(d["__connect.errors.stage"], "TASK_PUT");
    assert_eq!(d["__connect.errors.connector.name"], "hec");

    let events = server.events();
    let counts = seq_counts_of(&events);
    assert_eq!(counts.len(), 1999, "every other event indexed");
    assert!(!counts.contains_key(&777));
    assert!(counts.values().all(|&c| c == 1), "no event indexed twice");
    assert!(events
        .iter()
        .all(|e| e.index == "audit" && e.sourcetype.as_deref() == Some("sluice:generator")));
    assert!(server.violations().is_empty(), "{:?}", server.violations());
}

#[test]
fn wrong_token_is_unhealthy_dead_letters_nothing_and_resumes_when_fixed() {
    let (_rt, server) = hec_server(HecOptions {
        token: "99999999-8888-4777-8666-555555555555".into(),
        acknowledgements: true,
        ..HecOptions::default()
    });
    let w = Workdir::new();
    let admin = format!("127.0.0.1:{}", free_port());
    let cfg = pipeline(&w, &server, "rate: 400", &admin);
    let mut s = w.start_with(&cfg, &[("SPLUNK_HEC_TOKEN", TOKEN)]);

    let body = wait_for(
        Duration::from_secs(30),
        "/health to report the bad token",
        || match http_get(&format!("http://{admin}/health")) {
            Some((503, body)) if body.contains("Invalid token") => Some(body),
            _ => None,
        },
    );
    assert!(body.contains("403 code 4"), "{body}");
    assert!(!body.contains(TOKEN), "the token never appears on /health");
    // Keep refusing for a while: several slow retries, nothing may be dropped or dead-lettered.
    std::thread::sleep(Duration::from_secs(2));
    assert!(server.stats().unauthorized >= 2, "{:?}", server.stats());
    assert_eq!(server.event_count(), 0);
    assert_eq!(
        count_lines(&w.join("data/dlq/hec.jsonl")),
        0,
        "nothing dead-lettered"
    );

    // The operator fixes the token on the Splunk side.
    server.set_token(TOKEN);
    wait_for(Duration::from_secs(60), "delivery to resume", || {
        (server.event_count() >= 1_000).then_some(())
    });
    wait_for(Duration::from_secs(30), "/health to recover", || {
        matches!(http_get(&format!("http://{admin}/health")), Some((200, _))).then_some(())
    });
    s.sigterm();
    let status = s.wait(Duration::from_secs(30));
    assert!(status.success(), "exit {status:?}: {}", s.logs());

    let counts = seq_counts_of(&server.events());
    let n = counts.len() as u64;
    assert!(n >= 1_000);
    assert!(
        (0..n).all(|seq| counts.contains_key(&seq)),
        "a gap: an event was dropped"
    );
    assert!(
        counts.values().all(|&c| c == 1),
        "no duplicates without resends"
    );
    assert_eq!(
        count_lines(&w.join("data/dlq/hec.jsonl")),
        0,
        "nothing dead-lettered"
    );
    assert!(!s.logs().contains(TOKEN), "the token never appears in logs");
}

#[test]
fn busy_server_and_delayed_or_lost_acks_lose_nothing_and_count_resends() {
    let (_rt, server) = hec_server(HecOptions {
        token: TOKEN.into(),
        acknowledgements: true,
        seed: 11,
        ..HecOptions::default()
    });
    server.set_busy_rate(0.2);
    server.set_ack_delay(Duration::from_millis(5), Duration::from_millis(400));
    server.set_ack_loss_rate(0.1);
    let w = Workdir::new();
    let total = 3_000u64;
    let lines: String = (0..total)
        .map(|i| format!("{{\"seq\":{i},\"event_type\":\"control.evaluated\"}}\n"))
        .collect();
    std::fs::write(w.join("in.jsonl"), lines).unwrap();
    let admin = format!("127.0.0.1:{}", free_port());
    let cfg = w.config(
        "hec.yaml",
        &format!(
            r#"host:
  data_dir: "{{dir}}/data"
  admin: {{ listen: "{admin}" }}
pipelines:
  - name: hec
    source: {{ type: file, path: "{{dir}}/in.jsonl" }}
    sink:
      type: splunk_hec
      endpoint: "{url}"
      token: "${{SPLUNK_HEC_TOKEN}}"
      acknowledgements: true
      ack_poll_interval: 20ms
      ack_timeout: 300ms
    batch: {{ max_events: 50, linger: 20ms }}
    retry: {{ max_attempts: 30, initial_backoff: 10ms, max_backoff: 200ms }}
    commit_interval: 100ms
"#,
            url = server.url(),
        ),
    );
    let mut s = w.start_with(&cfg, &[("SPLUNK_HEC_TOKEN", TOKEN)]);
    // The file source waits at the end of the file: the process stays up to be measured.
    wait_for(
        Duration::from_secs(120),
        "every record acknowledged",
        || (metric(&admin, "sluice_records_sent_total", "hec") == Some(total as f64)).then_some(()),
    );
    let retried = metric(&admin, "sluice_records_retried_total", "hec").unwrap();
    let dead = metric(&admin, "sluice_records_dead_lettered_total", "hec").unwrap_or(0.0);
    s.sigterm();
    let status = s.wait(Duration::from_secs(30));
    assert!(status.success(), "exit {status:?}: {}", s.logs());

    let stats = server.stats();
    assert!(
        stats.busy > 0 && stats.acks_lost > 0,
        "faults were injected: {stats:?}"
    );
    let events = server.events();
    let counts = seq_counts_of(&events);
    assert_eq!(
        counts.len() as u64,
        total,
        "no event missing from the index"
    );
    let duplicates = events.len() - counts.len();
    println!(
        "{total} events: {} busy answers, {} acks lost, {retried} records retried, {duplicates} duplicates",
        stats.busy, stats.acks_lost
    );
    assert!(retried > 0.0);
    assert!(
        duplicates as f64 <= retried,
        "duplicates ({duplicates}) come only from counted resends ({retried})"
    );
    assert_eq!(dead, 0.0);
    assert_eq!(count_lines(&w.join("data/dlq/hec.jsonl")), 0);
}

#[test]
fn outages_between_requests_and_events_after_a_bad_one_are_never_dead_lettered() {
    let (_rt, server) = hec_server(HecOptions {
        token: TOKEN.into(),
        acknowledgements: true,
        ..HecOptions::default()
    });
    // Batches go out in several requests: the outage starts after the first one, and an
    // invalid event stops HEC in the middle of a request.
    server.push_faults_after(1, [Fault::busy(), Fault::busy()]);
    server.reject_events_where(|e| e.event["seq"] == 777);
    let w = Workdir::new();
    let admin = format!("127.0.0.1:{}", free_port());
    let cfg = pipeline(&w, &server, "count: 2000", &admin);
    let text = std::fs::read_to_string(&cfg).unwrap();
    let text = text.replace("max_attempts: 5", "max_attempts: 1").replace(
        "      index: audit\n",
        "      index: audit\n      max_bytes: 4KiB\n      compression: none\n",
    );
    // One batch at a time, so the second request is the second of a batch.
    let text = text.replace("acknowledgements: true", "acknowledgements: false");
    std::fs::write(&cfg, text).unwrap();
    let mut s = w.start_with(&cfg, &[("SPLUNK_HEC_TOKEN", TOKEN)]);
    let status = s.wait(Duration::from_secs(90));
    assert!(status.success(), "exit {status:?}: {}", s.logs());

    let dlq = read_jsonl(&w.join("data/dlq/hec.jsonl"));
    let dead: Vec<(String, String)> = dlq
        .iter()
        .map(|d| {
            let v: Value = serde_json::from_str(d["value"].as_str().unwrap()).unwrap();
            (
                v["seq"].to_string(),
                d["__connect.errors.exception.class.name"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(
        dead,
        vec![("777".to_string(), "splunk.hec.code=6".to_string())],
        "only the refused event is dead-lettered, even with max_attempts: 1"
    );
    let counts = seq_counts_of(&server.events());
    assert_eq!(counts.len(), 1999);
    assert!(counts.values().all(|&c| c == 1), "no event indexed twice");
    assert!(
        server.requests().len() > 20,
        "batches went out in several requests"
    );
    let logs = s.logs();
    assert_eq!(
        logs.matches("the HEC token is sent over plain http://")
            .count(),
        1,
        "one WARN for the token over http: {logs}"
    );
    assert!(!logs.contains(TOKEN));
}
