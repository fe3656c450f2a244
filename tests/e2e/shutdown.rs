//! Shutdown within `shutdown_timeout`, shown with the real binary: sends that never finish (a
//! Kafka producer with no broker, a plugin that never answers) are abandoned at the timeout,
//! their records stay uncommitted and are read again by the next run; a second signal exits
//! at once.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sluice_testkit::conformance::cdylib;

use crate::common::*;

const LINES: u64 = 100;

/// `in.jsonl` with `LINES` generator-like records.
fn input(w: &Workdir) {
    let mut body = String::new();
    for seq in 0..LINES {
        body.push_str(&format!("{{\"seq\":{seq}}}\n"));
    }
    std::fs::write(w.join("in.jsonl"), body).unwrap();
}

/// A file-source pipeline named `stuck` with the given sink; `extra` goes under `host:`.
fn stuck(w: &Workdir, name: &str, sink: &str, host_extra: &str, timeout: &str) -> PathBuf {
    w.config(
        name,
        &format!(
            r#"host:
  data_dir: "{{dir}}/data"
  shutdown_timeout: {timeout}
{host_extra}pipelines:
  - name: stuck
    source: {{ type: file, path: "{{dir}}/in.jsonl" }}
    sink: {sink}
    batch: {{ max_events: 10, linger: 10ms }}
    commit_interval: 50ms
"#
        ),
    )
}

/// Runs the same pipeline into a file sink: every record the stuck run left is read again.
fn rerun_delivers_everything(w: &Workdir) {
    let cfg = w.config(
        "rerun.yaml",
        "host: { data_dir: \"{dir}/data\" }\npipelines:\n  - name: stuck\n    source: { type: file, path: \"{dir}/in.jsonl\", at_end: stop }\n    sink: { type: file, path: \"{dir}/out.jsonl\" }\n",
    );
    let mut s = w.start(&cfg);
    assert!(s.wait(Duration::from_secs(30)).success(), "{}", s.logs());
    let counts = seq_counts(&w.join("out.jsonl"));
    assert!(
        (0..LINES).all(|i| counts.contains_key(&i)),
        "records missing after the rerun: {counts:?}"
    );
}

/// SIGTERM once sending is under way; returns how long the exit took and the exit code.
fn sigterm_and_time(s: &mut Sluice, started: impl Fn() -> bool) -> (Duration, Option<i32>) {
    wait_for(Duration::from_secs(30), "a send under way", || {
        started().then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    s.sigterm();
    let st = s.wait(Duration::from_secs(20));
    (t0.elapsed(), st.code())
}

fn assert_forced_exit(s: &Sluice, took: Duration, code: Option<i32>) {
    let logs = s.logs();
    println!("exited {took:?} after SIGTERM with {code:?}");
    assert!(
        took < Duration::from_secs(4),
        "took {took:?} for a 2s timeout: {logs}"
    );
    assert!(
        took >= Duration::from_secs(2),
        "did not drain first: {logs}"
    );
    assert_eq!(code, Some(1), "a forced shutdown exits 1: {logs}");
    assert!(logs.contains("shutdown timeout reached"), "{logs}");
    assert!(!logs.contains("everything delivered"), "{logs}");
    assert!(logs.contains("not yet delivered"), "{logs}");
    // Nothing was delivered: the stored position has not moved past any record.
    let stored = stored_offsets(&s_data(s), "stuck");
    assert!(
        stored.as_ref().is_none_or(|p| p["0"] == "0"),
        "committed {stored:?}"
    );
}

fn s_data(s: &Sluice) -> PathBuf {
    s.log.parent().unwrap().join("data")
}

#[test]
fn a_kafka_sink_without_a_broker_is_abandoned_at_the_shutdown_timeout() {
    let w = Workdir::new();
    input(&w);
    let port = free_port();
    let cfg = stuck(
        &w,
        "kafka.yaml",
        &format!("{{ type: kafka, brokers: \"127.0.0.1:{port}\", topic: audit }}"),
        "",
        "2s",
    );
    let mut s = w.start(&cfg);
    let log = s.log.clone();
    let (took, code) = sigterm_and_time(&mut s, || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("pipeline started"))
    });
    assert_forced_exit(&s, took, code);
    rerun_delivers_everything(&w);
}

fn stall_sink(w: &Workdir, lib: &Path, timeout: &str) -> PathBuf {
    stuck(
        w,
        "stall.yaml",
        "{ type: stall, path: \"{dir}/stall.log\" }",
        &format!("  plugins: [\"{}\"]\n", lib.display()),
        timeout,
    )
}

#[test]
fn a_plugin_sink_that_never_answers_is_cancelled_at_the_shutdown_timeout() {
    let lib = cdylib("sluice-test-plugin");
    let w = Workdir::new();
    input(&w);
    let cfg = stall_sink(&w, &lib, "2s");
    let mut s = w.start(&cfg);
    let stall = w.join("stall.log");
    let (took, code) = sigterm_and_time(&mut s, || count_lines(&stall) > 0);
    assert_forced_exit(&s, took, code);
    // The plugin was told to let go of the batch it held.
    let stalled = lines(&stall);
    assert!(
        stalled.iter().any(|l| l == "let go of {\"seq\":0}"),
        "{stalled:?}"
    );
    rerun_delivers_everything(&w);
}

#[test]
fn a_second_sigterm_exits_at_once() {
    let lib = cdylib("sluice-test-plugin");
    let w = Workdir::new();
    input(&w);
    let cfg = stall_sink(&w, &lib, "60s");
    let mut s = w.start(&cfg);
    let stall = w.join("stall.log");
    wait_for(Duration::from_secs(30), "a send under way", || {
        (count_lines(&stall) > 0).then_some(())
    });
    s.sigterm();
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        s.child.try_wait().unwrap().is_none(),
        "exited before the second signal: {}",
        s.logs()
    );
    let t0 = Instant::now();
    s.sigterm();
    let st = s.wait(Duration::from_secs(10));
    let took = t0.elapsed();
    let logs = s.logs();
    println!("exited {took:?} after the second SIGTERM with {st:?}");
    assert!(took < Duration::from_secs(1), "took {took:?}: {logs}");
    assert_eq!(st.code(), Some(1), "{logs}");
    assert!(logs.contains("second signal"), "{logs}");
    rerun_delivers_everything(&w);
}

#[test]
fn splunk_hec_acknowledgements_that_never_come_are_abandoned_at_the_shutdown_timeout() {
    use sluice_testkit::hec::{HecOptions, HecServer};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let token = "11111111-2222-4333-8444-555555555555";
    let server = rt.block_on(HecServer::start(HecOptions {
        token: token.into(),
        acknowledgements: true,
        ..HecOptions::default()
    }));
    // Every request is taken; its acknowledgement would come after ten minutes.
    server.set_ack_delay(Duration::from_secs(600), Duration::from_secs(600));
    let w = Workdir::new();
    input(&w);
    let cfg = stuck(
        &w,
        "hec.yaml",
        &format!(
            "{{ type: splunk_hec, endpoint: \"{}\", token: \"${{HEC_TOKEN}}\", acknowledgements: true, ack_poll_interval: 20ms }}",
            server.url()
        ),
        "",
        "2s",
    );
    let mut s = w.start_with(&cfg, &[("HEC_TOKEN", token)]);
    let (took, code) = sigterm_and_time(&mut s, || server.stats().ack_polls > 0);
    assert_forced_exit(&s, took, code);
    rerun_delivers_everything(&w);
}
