//! Faults inside a pipeline, shown with the real binary: a source that breaks its contract (a
//! repeated offset, more records than asked for), a panic in a stage, a destination asking to
//! wait a day.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_testkit::conformance::cdylib;
use sluice_testkit::datadog::DdEmulator;

use crate::common::*;

fn plugin_path(p: &Path) -> String {
    p.display().to_string().replace('\\', "/")
}

#[test]
fn a_repeated_offset_from_a_plugin_source_fails_the_run_and_commits_nothing_past_it() {
    let lib = cdylib("sluice-fault-plugin");
    let w = Workdir::new();
    let admin = format!("127.0.0.1:{}", free_port());
    let cfg = w.config(
        "repeat.yaml",
        &format!(
            r#"host:
  data_dir: "{{dir}}/data"
  admin: {{ listen: "{admin}" }}
  plugins: ["{}"]
pipelines:
  - name: repeat
    source: {{ type: repeat_offset, count: 20, repeat_at: 10 }}
    sink: {{ type: file, path: "{{dir}}/out.jsonl" }}
    batch: {{ max_events: 100, linger: 10ms }}
    commit_interval: 50ms
"#,
            plugin_path(&lib)
        ),
    );
    let s = w.start(&cfg);
    let problem = wait_for(
        Duration::from_secs(30),
        "/health to name the repeated offset",
        || match http_get(&format!("http://{admin}/health")) {
            Some((503, body)) => {
                let h: Value = serde_json::from_str(&body).ok()?;
                h["pipelines"]["repeat"]["problem"]
                    .as_str()
                    .map(str::to_string)
            }
            _ => None,
        },
    );
    assert!(
        problem.contains("partition 0: offset 10 came after offset 10"),
        "{problem}"
    );
    // The supervisor restarts it; the source repeats itself again, so it keeps failing.
    wait_for(Duration::from_secs(30), "a restart", || {
        metric(&admin, "sluice_pipeline_restarts_total", "repeat").filter(|v| *v >= 2.0)
    });
    assert!(
        s.logs().contains("offset 10 came after offset 10"),
        "{}",
        s.logs()
    );
    // Nothing of the poll holding the repeat was sent or committed.
    let out = lines(&w.join("out.jsonl"));
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(stored_offsets(&w.join("data"), "repeat"), None);
}

#[test]
fn a_panic_in_delivery_marks_the_pipeline_failed_and_it_comes_back() {
    let w = Workdir::new();
    let admin = format!("127.0.0.1:{}", free_port());
    let cfg = w.config(
        "panic.yaml",
        &format!(
            r#"host: {{ data_dir: "{{dir}}/data", admin: {{ listen: "{admin}" }} }}
pipelines:
  - name: gen
    source: {{ type: generator, count: 3000, rate: 1000 }}
    sink: {{ type: file, path: "{{dir}}/out.jsonl" }}
    batch: {{ max_events: 100, linger: 20ms }}
    commit_interval: 50ms
"#
        ),
    );
    // The 50th batch delivered panics (a debug-build fault hook; see pipeline/fault.rs).
    let mut s = w.start_with(&cfg, &[("SLUICE_FAULT_PANIC", "gen:delivery:50")]);
    wait_for(
        Duration::from_secs(20),
        "/health 200 before the panic",
        || http_get(&format!("http://{admin}/health")).filter(|(c, _)| *c == 200),
    );
    let body = wait_for(
        Duration::from_secs(30),
        "/health 503 naming the panic",
        || http_get(&format!("http://{admin}/health")).filter(|(c, _)| *c == 503),
    )
    .1;
    let h: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(h["pipelines"]["gen"]["state"], "failed", "{body}");
    let problem = h["pipelines"]["gen"]["problem"].as_str().unwrap();
    assert!(
        problem.contains("delivery panicked: injected fault"),
        "{problem}"
    );
    wait_for(
        Duration::from_secs(20),
        "the pipeline running again",
        || {
            let (_, p) = http_get(&format!("http://{admin}/pipelines"))?;
            let p: Value = serde_json::from_str(&p).ok()?;
            let g = &p["pipelines"][0];
            (g["state"] == "running" || g["state"] == "finished").then(|| g.clone())
        },
    );
    let (_, p) = http_get(&format!("http://{admin}/pipelines")).unwrap();
    let p: Value = serde_json::from_str(&p).unwrap();
    assert!(
        p["pipelines"][0]["last_failure"]
            .as_str()
            .is_some_and(|f| f.contains("delivery panicked: injected fault")),
        "{p}"
    );
    assert_eq!(p["pipelines"][0]["restarts"], 1);
    assert_eq!(
        metric(&admin, "sluice_pipeline_restarts_total", "gen"),
        Some(1.0)
    );
    // It comes back and delivers everything; the process then exits 0 as usual.
    let st = s.wait(Duration::from_secs(60));
    assert!(st.success(), "{st:?}: {}", s.logs());
    let counts = seq_counts(&w.join("out.jsonl"));
    assert!(
        (0..3000).all(|i| counts.contains_key(&i)),
        "records missing"
    );
}

#[test]
fn a_panic_in_the_source_loop_is_caught_and_restarted_too() {
    let w = Workdir::new();
    let cfg = w.config(
        "panic.yaml",
        "host: { data_dir: \"{dir}/data\" }\npipelines:\n  - name: gen\n    source: { type: generator, count: 2000 }\n    sink: { type: file, path: \"{dir}/out.jsonl\" }\n    batch: { max_events: 100, linger: 20ms }\n",
    );
    let mut s = w.start_with(&cfg, &[("SLUICE_FAULT_PANIC", "gen:source:3")]);
    let st = s.wait(Duration::from_secs(60));
    let logs = s.logs();
    assert!(st.success(), "{st:?}: {logs}");
    assert!(
        logs.contains("source loop panicked: injected fault") && logs.contains("restarting"),
        "{logs}"
    );
    let counts = seq_counts(&w.join("out.jsonl"));
    assert!(
        (0..2000).all(|i| counts.contains_key(&i)),
        "records missing"
    );
}

#[test]
fn a_panic_while_a_run_starts_is_caught_and_restarted_too() {
    let w = Workdir::new();
    let cfg = w.config(
        "panic.yaml",
        "host: { data_dir: \"{dir}/data\" }\npipelines:\n  - name: gen\n    source: { type: generator, count: 500 }\n    sink: { type: file, path: \"{dir}/out.jsonl\" }\n",
    );
    // The first run panics where its connectors open, outside the source loop and delivery.
    let mut s = w.start_with(&cfg, &[("SLUICE_FAULT_PANIC", "gen:open")]);
    let st = s.wait(Duration::from_secs(60));
    let logs = s.logs();
    assert!(st.success(), "{st:?}: {logs}");
    assert!(
        logs.contains("pipeline run panicked: injected fault") && logs.contains("restarting"),
        "{logs}"
    );
    let counts = seq_counts(&w.join("out.jsonl"));
    assert!((0..500).all(|i| counts.contains_key(&i)), "records missing");
}

#[test]
fn the_rate_limit_holds_when_a_source_returns_ten_times_what_it_was_asked() {
    let lib = cdylib("sluice-fault-plugin");
    let w = Workdir::new();
    let cfg = w.config(
        "overfill.yaml",
        &format!(
            r#"host:
  data_dir: "{{dir}}/data"
  plugins: ["{}"]
pipelines:
  - name: overfill
    source: {{ type: overfill, count: 1000, factor: 10 }}
    sink: {{ type: file, path: "{{dir}}/out.jsonl" }}
    rate_limit: {{ events_per_second: 100 }}
"#,
            plugin_path(&lib)
        ),
    );
    let t0 = Instant::now();
    let mut s = w.start(&cfg);
    let st = s.wait(Duration::from_secs(60));
    let took = t0.elapsed();
    assert!(st.success(), "{st:?}: {}", s.logs());
    assert_eq!(count_lines(&w.join("out.jsonl")), 1000);
    // 1000 records at 100/s, less the initial burst of 25: at least 9.75 s.
    println!("1000 records at 100/s took {took:?}");
    assert!(took >= Duration::from_secs(9), "took {took:?}");
}

#[test]
fn a_day_long_retry_after_is_capped_at_max_backoff_with_a_warning() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let key = "5f1c0d9e8b7a6f5e4d3c2b1a09f8e7d6";
    let dd = rt.block_on(DdEmulator::start(key));
    dd.burst_429(2, Some(86400));
    let w = Workdir::new();
    let mut body = String::new();
    for seq in 0..50 {
        body.push_str(&format!("{{\"seq\":{seq}}}\n"));
    }
    std::fs::write(w.join("in.jsonl"), body).unwrap();
    let cfg = w.config(
        "dd.yaml",
        &format!(
            r#"host: {{ data_dir: "{{dir}}/data" }}
pipelines:
  - name: dd
    source: {{ type: file, path: "{{dir}}/in.jsonl", at_end: stop }}
    sink: {{ type: datadog_logs, endpoint: "{}", api_key: "${{DD_API_KEY}}" }}
    retry: {{ initial_backoff: 10ms, max_backoff: 1s }}
"#,
            dd.url()
        ),
    );
    let t0 = Instant::now();
    let mut s = w.start_with(&cfg, &[("DD_API_KEY", key)]);
    let st = s.wait(Duration::from_secs(30));
    let took = t0.elapsed();
    let logs = s.logs();
    assert!(st.success(), "{st:?}: {logs}");
    assert_eq!(dd.log_count(), 50);
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert!(
        logs.contains("asked to wait longer than retry.max_backoff")
            && logs.contains("WARN")
            && logs.contains("1day"),
        "{logs}"
    );
}

#[test]
fn part_of_a_batch_unavailable_backs_off_shows_on_health_and_dead_letters_nothing() {
    let lib = cdylib("sluice-fault-plugin");
    let w = Workdir::new();
    let admin = format!("127.0.0.1:{}", free_port());
    let down = w.join("down");
    std::fs::write(&down, "").unwrap();
    let cfg = w.config(
        "half.yaml",
        &format!(
            r#"host:
  data_dir: "{{dir}}/data"
  admin: {{ listen: "{admin}" }}
  plugins: ["{}"]
pipelines:
  - name: half
    source: {{ type: generator, count: 20 }}
    sink: {{ type: half_down, path: "{{dir}}/out.jsonl", down_while: "{{dir}}/down" }}
    batch: {{ max_events: 20, linger: 50ms }}
    retry: {{ max_attempts: 1, initial_backoff: 100ms, max_backoff: 2s }}
"#,
            plugin_path(&lib)
        ),
    );
    let mut s = w.start(&cfg);
    let problem = wait_for(
        Duration::from_secs(30),
        "/health to name the partial outage",
        || match http_get(&format!("http://{admin}/health")) {
            Some((503, body)) => {
                let h: Value = serde_json::from_str(&body).ok()?;
                h["pipelines"]["half"]["problem"]
                    .as_str()
                    .map(str::to_string)
            }
            _ => None,
        },
    );
    assert!(problem.contains("partition 1 has no leader"), "{problem}");
    // The outage's backoff grows (about 0.1 + 0.2 + 0.4 + 0.8 + 1.6 s at the most, with
    // jitter): a few sends in three seconds, not one every few milliseconds.
    std::thread::sleep(Duration::from_secs(3));
    let sends = lines(&w.join("out.jsonl.sends")).len();
    assert!(sends <= 20, "{sends} sends during a 3 s partial outage");
    std::fs::remove_file(&down).unwrap();
    let st = s.wait(Duration::from_secs(30));
    let logs = s.logs();
    assert!(st.success(), "{st:?}: {logs}");
    assert!(
        logs.contains("sink cannot take part of the batch"),
        "{logs}"
    );
    let counts = seq_counts(&w.join("out.jsonl"));
    assert!(
        (0..20).all(|i| counts.get(&i) == Some(&1)),
        "every record written once: {counts:?}"
    );
    let dlq = w.join("data/dlq/half.jsonl");
    assert!(
        !dlq.exists() || lines(&dlq).is_empty(),
        "nothing dead-lettered"
    );
}
