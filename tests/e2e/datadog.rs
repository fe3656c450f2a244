//! `datadog_logs` with the real binary: file -> datadog_logs against the in-process intake
//! emulator (no Datadog here).

use std::collections::HashMap;
use std::io::Write as _;
use std::time::Duration;

use serde_json::{json, Value};
use sluice_testkit::datadog::{DdEmulator, MAX_ENTRIES, MAX_REQUEST_BYTES};

use crate::common::*;

const API_KEY: &str = "5f1c0d9e8b7a6f5e4d3c2b1a09f8e7d6";

fn dd_server() -> (tokio::runtime::Runtime, DdEmulator) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let server = rt.block_on(DdEmulator::start(API_KEY));
    (rt, server)
}

fn pipeline(w: &Workdir, url: &str, source: &str, admin: &str) -> std::path::PathBuf {
    w.config(
        "dd.yaml",
        &format!(
            r#"host:
  data_dir: "{{dir}}/data"
  admin: {{ listen: "{admin}" }}
  shutdown_timeout: 3s
pipelines:
  - name: dd
    source: {source}
    sink:
      type: datadog_logs
      endpoint: "{url}"
      api_key: "${{DD_API_KEY}}"
      service: cmmc-scout
      ddsource: sluice
      ddtags: "env:test,tenant:{{{{ tenant }}}}"
      status: "{{{{ level }}}}"
    batch: {{ max_events: 2500, max_bytes: 16MiB, linger: 50ms }}
    retry: {{ max_attempts: 5, initial_backoff: 10ms, max_backoff: 200ms }}
    commit_interval: 100ms
    dead_letter: {{ type: file }}
"#
        ),
    )
}

#[test]
fn logs_arrive_within_limits_through_429s_and_a_1_5_mb_log_is_dead_lettered() {
    let (_rt, dd) = dd_server();
    dd.burst_429(3, Some(1));
    let w = Workdir::new();
    let input = w.join("events.jsonl");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
        for seq in 0..6000u64 {
            let line = if seq == 3210 {
                json!({"seq": seq, "tenant": "acme", "level": "info", "blob": "x".repeat(1_500_000)})
            } else {
                let tenant = ["acme", "globex", "initech"][seq as usize % 3];
                json!({"seq": seq, "tenant": tenant,
                       "level": if seq % 7 == 0 { "error" } else { "info" }, "note": "y".repeat(seq as usize % 400)})
            };
            writeln!(f, "{line}").unwrap();
        }
    }
    let admin = format!("127.0.0.1:{}", free_port());
    let source = format!(
        "{{ type: file, path: \"{}\", at_end: stop, max_line_bytes: 2MiB }}",
        input.display()
    );
    let cfg = pipeline(&w, &dd.url(), &source, &admin);
    let mut s = w.start_with(&cfg, &[("DD_API_KEY", API_KEY)]);
    let status = s.wait(Duration::from_secs(120));
    assert!(status.success(), "exit {status:?}: {}", s.logs());

    let dlq = read_jsonl(&w.join("data/dlq/dd.jsonl"));
    assert_eq!(dlq.len(), 1, "only the oversize log is dead-lettered");
    assert_eq!(
        dlq[0]["__connect.errors.exception.class.name"],
        "datadog.log_too_large"
    );
    let msg = dlq[0]["__connect.errors.exception.message"]
        .as_str()
        .unwrap();
    assert!(msg.contains("over Datadog's 1000000-byte limit"), "{msg}");
    let v: Value = serde_json::from_str(dlq[0]["value"].as_str().unwrap()).unwrap();
    assert_eq!(v["seq"], 3210);

    let mut counts: HashMap<u64, usize> = HashMap::new();
    for log in dd.logs() {
        let m: Value = serde_json::from_str(log["message"].as_str().unwrap()).unwrap();
        let seq = m["seq"].as_u64().unwrap();
        *counts.entry(seq).or_default() += 1;
        assert_eq!(log["service"], "cmmc-scout");
        assert_eq!(log["ddsource"], "sluice");
        assert_eq!(
            log["ddtags"],
            format!("env:test,tenant:{}", m["tenant"].as_str().unwrap())
        );
        assert_eq!(log["status"], m["level"]);
    }
    assert_eq!(counts.len(), 5999, "every other log arrived");
    assert!(!counts.contains_key(&3210));
    assert!(counts.values().all(|&c| c == 1), "no log sent twice");
    assert_eq!(dd.truncated_logs(), 0);

    let requests = dd.requests();
    assert_eq!(requests.iter().filter(|r| r.status == 429).count(), 3);
    for r in &requests {
        assert!(r.status == 202 || r.status == 429, "answered {}", r.status);
        assert!(
            r.entries <= MAX_ENTRIES && r.bytes <= MAX_REQUEST_BYTES,
            "{r:?}"
        );
        assert_eq!(r.content_encoding.as_deref(), Some("gzip"));
    }
    assert!(!s.logs().contains(API_KEY), "the key never appears in logs");
}

#[test]
fn a_wrong_api_key_makes_the_pipeline_unhealthy_and_dead_letters_nothing() {
    let (_rt, dd) = dd_server();
    let w = Workdir::new();
    let admin = format!("127.0.0.1:{}", free_port());
    let cfg = pipeline(&w, &dd.url(), "{ type: generator, rate: 200 }", &admin);
    let mut s = w.start_with(&cfg, &[("DD_API_KEY", "not-the-key")]);
    let body = wait_for(
        Duration::from_secs(30),
        "/health to report the key",
        || match http_get(&format!("http://{admin}/health")) {
            Some((503, body)) if body.contains("403") => Some(body),
            _ => None,
        },
    );
    assert!(body.contains("api_key"), "{body}");
    std::thread::sleep(Duration::from_secs(2));
    // The batch cannot be delivered: the drain ends at `shutdown_timeout` and the records
    // stay uncommitted for the next start.
    s.sigterm();
    let status = s.wait(Duration::from_secs(30));
    // Records left undelivered at the timeout make the exit non-zero (docs/operations.md).
    assert_eq!(status.code(), Some(1), "exit {status:?}: {}", s.logs());
    assert!(s.logs().contains("not yet delivered"), "{}", s.logs());
    assert_eq!(dd.log_count(), 0);
    assert!(dd.requests().iter().all(|r| r.status == 403));
    assert_eq!(
        count_lines(&w.join("data/dlq/dd.jsonl")),
        0,
        "nothing dead-lettered"
    );
}

#[test]
fn an_outage_after_the_first_request_of_a_batch_dead_letters_nothing_with_one_attempt() {
    let (_rt, dd) = dd_server();
    // A batch of 2500 goes out as three requests; the outage starts after the first.
    dd.burst_429_after(1, 2, None);
    let w = Workdir::new();
    let admin = format!("127.0.0.1:{}", free_port());
    let cfg = pipeline(&w, &dd.url(), "{ type: generator, count: 5000 }", &admin);
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("max_attempts: 5", "max_attempts: 1")
        .replace(
            "    commit_interval:",
            "    concurrency: 1\n    commit_interval:",
        );
    std::fs::write(&cfg, text).unwrap();
    let mut s = w.start_with(&cfg, &[("DD_API_KEY", API_KEY)]);
    let status = s.wait(Duration::from_secs(120));
    assert!(status.success(), "exit {status:?}: {}", s.logs());

    let dlq = w.join("data/dlq/dd.jsonl");
    assert!(
        !dlq.exists() || read_jsonl(&dlq).is_empty(),
        "an outage dead-lettered logs: {:?}",
        read_jsonl(&dlq).first()
    );
    let mut counts: HashMap<u64, usize> = HashMap::new();
    for log in dd.logs() {
        let m: Value = serde_json::from_str(log["message"].as_str().unwrap()).unwrap();
        *counts.entry(m["seq"].as_u64().unwrap()).or_default() += 1;
    }
    assert_eq!(
        counts.len(),
        5000,
        "every log arrived once the intake recovered"
    );
    assert!(counts.values().all(|&c| c == 1), "no log sent twice");
    assert_eq!(dd.requests().iter().filter(|r| r.status == 429).count(), 2);
}
