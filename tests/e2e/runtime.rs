//! Host runtime guarantees, shown with the real binary: crash and drain behaviour, the DLQ,
//! config errors, rate limiting and bounded memory.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;

fn generator_to_file(w: &Workdir, count: Option<u64>, admin: Option<&str>) -> std::path::PathBuf {
    // Paced so a test can act in the middle of the run.
    let count = count.map_or(", rate: 40000".to_string(), |c| {
        format!(", count: {c}, rate: 40000")
    });
    let admin = admin.map_or(String::new(), |a| {
        format!("\n  admin: {{ listen: \"{a}\" }}")
    });
    w.config(
        "gen.yaml",
        &format!(
            "host:\n  data_dir: {{dir}}/data{admin}\npipelines:\n  - name: gen\n    source: {{ type: generator{count} }}\n    sink: {{ type: file, path: {{dir}}/out.jsonl }}\n    batch: {{ max_events: 1000, linger: 50ms }}\n    commit_interval: 200ms\n"
        ),
    )
}

#[test]
fn kill_dash_nine_then_restart_loses_nothing() {
    let w = Workdir::new();
    let cfg = generator_to_file(&w, Some(200_000), None);
    let out = w.join("out.jsonl");
    let mut s = w.start(&cfg);
    wait_for(Duration::from_secs(60), "50k records written", || {
        (count_lines(&out) > 50_000).then_some(())
    });
    s.kill9();
    let before = count_lines(&out);
    assert!(
        before < 200_000,
        "run finished before the kill; make it longer"
    );

    let mut s = w.start(&cfg);
    assert!(s.wait(Duration::from_secs(120)).success(), "{}", s.logs());
    let counts = seq_counts(&out);
    let missing: Vec<u64> = (0..200_000).filter(|s| !counts.contains_key(s)).collect();
    assert!(
        missing.is_empty(),
        "{} seqs missing, first {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert_eq!(counts.len(), 200_000, "seqs outside 0..200000 present");
    let duplicates: u32 = counts.values().map(|c| c - 1).sum();
    println!(
        "kill -9 at {before} records: {duplicates} duplicates after restart (uncommitted tail)"
    );
    // Duplicates only come from the uncommitted tail: at most what a commit interval holds.
    assert!(duplicates < 100_000, "{duplicates} duplicates");
}

#[test]
fn sigterm_drains_without_gap_or_duplicate() {
    let w = Workdir::new();
    let cfg = generator_to_file(&w, None, None);
    let out = w.join("out.jsonl");
    let data = w.join("data");
    for round in 1..=2u64 {
        let mut s = w.start(&cfg);
        wait_for(Duration::from_secs(60), "records written", || {
            (count_lines(&out) as u64 > round * 20_000).then_some(())
        });
        s.sigterm();
        let st = s.wait(Duration::from_secs(30));
        assert!(st.success(), "exit {st:?}: {}", s.logs());
        let counts = seq_counts(&out);
        let n = counts.len() as u64;
        assert!(
            counts.values().all(|&c| c == 1),
            "duplicates after drain in round {round}"
        );
        assert!(
            (0..n).all(|s| counts.contains_key(&s)),
            "gap after drain in round {round}"
        );
        let stored = stored_offsets(&data, "gen").unwrap();
        assert_eq!(
            stored["0"],
            n.to_string(),
            "committed position is not the end of the output"
        );
    }
}

#[test]
fn malformed_lines_go_to_the_dlq_and_offsets_move_past_them() {
    let w = Workdir::new();
    let input = w.join("in.jsonl");
    let mut body = String::new();
    for i in 0..100 {
        if i % 25 == 7 {
            body.push_str(&format!("this is not json #{i}\n"));
        } else {
            body.push_str(&format!("{{\"n\":{i}}}\n"));
        }
    }
    std::fs::write(&input, &body).unwrap();
    let cfg = w.config(
        "file.yaml",
        "host: { data_dir: \"{dir}/data\" }\npipelines:\n  - name: lines\n    source: { type: file, path: \"{dir}/in.jsonl\", at_end: stop }\n    sink: { type: file, path: \"{dir}/out.jsonl\" }\n",
    );
    let mut s = w.start(&cfg);
    assert!(s.wait(Duration::from_secs(30)).success(), "{}", s.logs());

    let good: Vec<i64> = read_jsonl(&w.join("out.jsonl"))
        .iter()
        .map(|v| v["n"].as_i64().unwrap())
        .collect();
    let expected: Vec<i64> = (0..100).filter(|i| i % 25 != 7).collect();
    assert_eq!(good, expected);

    let dlq = read_jsonl(&w.join("data/dlq/lines.jsonl"));
    assert_eq!(dlq.len(), 4);
    for d in &dlq {
        let value = d["value"].as_str().unwrap();
        assert!(value.starts_with("this is not json #"), "{d}");
        assert_eq!(d["__connect.errors.stage"], "VALUE_CONVERTER");
        assert_eq!(d["__connect.errors.connector.name"], "lines");
        assert!(d["__connect.errors.exception.message"]
            .as_str()
            .unwrap()
            .contains("not JSON"));
        // The source position is the byte offset where the line starts.
        let off: usize = d["__connect.errors.offset"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            body[off..].starts_with(value),
            "offset {off} does not point at {value:?}"
        );
        assert!(d["__connect.errors.topic"]
            .as_str()
            .unwrap()
            .ends_with("in.jsonl"));
    }
    let stored = stored_offsets(&w.join("data"), "lines").unwrap();
    assert_eq!(stored["0"], body.len().to_string());
}

#[test]
fn a_record_that_can_go_nowhere_stops_the_pipeline_before_it() {
    let w = Workdir::new();
    let input = w.join("in.jsonl");
    let body = "{\"n\":0}\n{\"n\":1}\nbroken\n{\"n\":3}\n";
    std::fs::write(&input, body).unwrap();
    std::fs::create_dir_all(w.join("data")).unwrap();
    // The DLQ directory cannot be created: a file is in the way.
    std::fs::write(w.join("data/dlq"), "in the way").unwrap();
    let admin = format!("127.0.0.1:{}", free_port());
    let cfg = w.config(
        "file.yaml",
        &format!("host: {{ data_dir: \"{{dir}}/data\", admin: {{ listen: \"{admin}\" }} }}\npipelines:\n  - name: stuck\n    source: {{ type: file, path: \"{{dir}}/in.jsonl\", at_end: stop }}\n    sink: {{ type: file, path: \"{{dir}}/out.jsonl\" }}\n"),
    );
    let mut s = w.start(&cfg);
    wait_for(
        Duration::from_secs(30),
        "the pipeline failure in the log",
        || {
            s.logs()
                .contains("could go neither to the sink nor to the dead-letter queue")
                .then_some(())
        },
    );
    let (code, health) = wait_for(Duration::from_secs(10), "health", || {
        http_get(&format!("http://{admin}/health"))
    });
    assert_eq!(code, 503, "{health}");
    assert!(health.contains("dead-letter"), "{health}");
    s.sigterm();
    s.wait(Duration::from_secs(30));
    // Offsets stay before the broken line (byte 16): never past a record that went nowhere.
    let pos: usize = stored_offsets(&w.join("data"), "stuck")
        .and_then(|p| p["0"].as_str().map(|s| s.parse().unwrap()))
        .unwrap_or(0);
    assert!(pos <= 16, "committed past the undeliverable record: {pos}");
}

fn validate_error(yaml: &str, envs: &[(&str, &str)]) -> (String, i32) {
    let w = Workdir::new();
    let cfg = w.config("bad.yaml", yaml);
    let out = Command::new(sluice_bin())
        .args(["validate", cfg.to_str().unwrap()])
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let file = cfg.display().to_string();
    (
        stderr.replace(&file, "bad.yaml"),
        out.status.code().unwrap_or(-1),
    )
}

#[test]
fn bad_configs_exit_1_with_file_line_col() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "pipelines:\n  - name: a\n    source: { type: generator }\n    sink: { type: file, path: x }\n    retry: { max_atempts: 3 }\n",
            "bad.yaml:5:14:",
            "unknown field `max_atempts`",
        ),
        (
            "pipelines:\n  - name: a\n    source: { type: generator }\n    sink: { type: file, path: \"${SLUICE_TEST_UNSET_VAR}\" }\n",
            "bad.yaml:4:31:",
            "environment variable `SLUICE_TEST_UNSET_VAR` is not set",
        ),
        (
            "pipelines:\n  - name: a\n    source: { type: generator, count: many }\n    sink: { type: file, path: x }\n",
            "bad.yaml:3:",
            "invalid type",
        ),
        (
            "pipelines:\n  - name: a\n    source: { type: generator }\n    sink: { type: file, path: x }\n  - name: a\n    source: { type: generator }\n    sink: { type: file, path: y }\n",
            "bad.yaml:5:5:",
            "duplicate pipeline name `a`",
        ),
        (
            "pipelines:\n  - name: a\n    source: { type: generator }\n    sink: { type: splonk, path: x }\n",
            "bad.yaml:4:13:",
            "unknown sink type `splonk`",
        ),
        (
            "pipelines:\n  - name: a\n    source: { type: file, pth: x }\n    sink: { type: file, path: x }\n",
            "bad.yaml:3:27:",
            "unknown field `pth`",
        ),
    ];
    for (yaml, pos, msg) in cases {
        let (stderr, code) = validate_error(yaml, &[]);
        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.contains(pos), "expected {pos} in: {stderr}");
        assert!(stderr.contains(msg), "expected {msg:?} in: {stderr}");
    }
    // `run` refuses the same before starting anything.
    let w = Workdir::new();
    let cfg = w.config("bad.yaml", cases[0].0);
    let out = w.sluice(&["run", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        !w.join("data").exists(),
        "run started something before failing"
    );
}

#[test]
fn secrets_do_not_leak_into_errors() {
    let (stderr, code) = validate_error(
        "pipelines:\n  - name: a\n    source: { type: generator, count: \"${SECRET_COUNT}\" }\n    sink: { type: file, path: x }\n",
        &[("SECRET_COUNT", "hunter2-very-secret")],
    );
    assert_eq!(code, 1);
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn rate_limit_holds_1000_per_second() {
    let w = Workdir::new();
    let admin = format!("127.0.0.1:{}", free_port());
    let cfg = w.config(
        "rate.yaml",
        &format!("host: {{ data_dir: \"{{dir}}/data\", admin: {{ listen: \"{admin}\" }} }}\npipelines:\n  - name: rate\n    source: {{ type: generator }}\n    sink: {{ type: blackhole }}\n    batch: {{ max_events: 100, linger: 20ms }}\n    rate_limit: {{ events_per_second: 1000 }}\n"),
    );
    let _s = w.start(&cfg);
    wait_for(Duration::from_secs(20), "first records", || {
        metric(&admin, "sluice_records_received_total", "rate").filter(|v| *v > 0.0)
    });
    std::thread::sleep(Duration::from_secs(1));
    let t0 = Instant::now();
    let c0 = metric(&admin, "sluice_records_received_total", "rate").unwrap();
    std::thread::sleep(Duration::from_secs(5));
    let c1 = metric(&admin, "sluice_records_received_total", "rate").unwrap();
    let rate = (c1 - c0) / t0.elapsed().as_secs_f64();
    println!("measured {rate:.0} records/s with a limit of 1000");
    assert!((900.0..=1100.0).contains(&rate), "rate {rate}");
}

#[test]
fn memory_stays_flat_when_the_sink_is_slower_than_the_source() {
    let w = Workdir::new();
    let cfg = w.config(
        "slow.yaml",
        "host: { data_dir: \"{dir}/data\" }\npipelines:\n  - name: slow\n    source: { type: generator }\n    sink: { type: stdout }\n",
    );
    let mut child = Command::new(sluice_bin())
        .args(["run", cfg.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stdout = child.stdout.take().unwrap();
    let rss = |pid: u32| -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    // A deliberately slow reader: the sink blocks on a full pipe, the source must wait.
    let mut buf = vec![0u8; 16 * 1024];
    let mut seen = 0u64;
    let mut at_100k = 0;
    while seen < 1_000_000 {
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "sluice stopped writing");
        seen += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        if at_100k == 0 && seen >= 100_000 {
            at_100k = rss(pid);
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let at_1m = rss(pid);
    let _ = child.kill();
    let _ = child.wait();
    let mb = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!(
        "RSS after 100k: {:.1} MiB, after 1M: {:.1} MiB",
        mb(at_100k),
        mb(at_1m)
    );
    assert!(at_100k > 0);
    assert!(
        at_1m < at_100k + 50 * 1024 * 1024,
        "memory grew by {:.1} MiB",
        mb(at_1m - at_100k)
    );
}

/// mimalloc asks for transparent huge pages and returns freed memory to the kernel soon
/// after; refaulting it zeroed 2 MiB at a time (10-19% of a Kafka pipeline's CPU). `sluice`
/// turns them off for itself, whatever the machine's setting.
#[test]
fn the_process_runs_without_transparent_huge_pages() {
    let w = Workdir::new();
    let cfg = generator_to_file(&w, None, None);
    let mut s = w.start(&cfg);
    let out = w.join("out.jsonl");
    wait_for(Duration::from_secs(20), "first records", || {
        std::fs::metadata(&out).ok().filter(|m| m.len() > 0)
    });
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.pid())).unwrap();
    let thp = status.lines().find_map(|l| l.strip_prefix("THP_enabled:"));
    s.kill9();
    assert_eq!(thp.map(str::trim), Some("0"), "{status}");
}

#[test]
fn health_metrics_and_pipelines_endpoints() {
    let w = Workdir::new();
    let admin = format!("127.0.0.1:{}", free_port());
    let cfg = generator_to_file(&w, None, Some(&admin));
    let s = w.start(&cfg);
    let (code, body) = wait_for(Duration::from_secs(20), "health 200", || {
        http_get(&format!("http://{admin}/health")).filter(|(c, _)| *c == 200)
    });
    assert_eq!(code, 200);
    let h: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(h["pipelines"]["gen"]["state"], "running");
    wait_for(Duration::from_secs(20), "records sent", || {
        metric(&admin, "sluice_records_sent_total", "gen").filter(|v| *v > 1000.0)
    });
    let (_, metrics) = http_get(&format!("http://{admin}/metrics")).unwrap();
    for m in [
        "sluice_records_received_total",
        "sluice_records_sent_total",
        "sluice_records_dead_lettered_total",
        "sluice_records_retried_total",
        "sluice_sink_request_duration_seconds_bucket",
        "sluice_source_lag_records",
    ] {
        assert!(
            metrics.contains(&format!("{m}{{")),
            "{m} missing:\n{metrics}"
        );
    }
    let (_, p) = http_get(&format!("http://{admin}/pipelines")).unwrap();
    let p: Value = serde_json::from_str(&p).unwrap();
    assert_eq!(p["pipelines"][0]["name"], "gen");
    wait_for(
        Duration::from_secs(10),
        "committed offsets in /pipelines",
        || {
            let (_, p) = http_get(&format!("http://{admin}/pipelines"))?;
            let p: Value = serde_json::from_str(&p).ok()?;
            p["pipelines"][0]["committed"]["0"].as_str().map(|_| ())
        },
    );
    drop(s);
}

#[test]
fn a_second_process_on_the_same_data_dir_is_refused_while_the_first_runs() {
    let w = Workdir::new();
    let cfg = generator_to_file(&w, None, None);
    let out = w.join("out.jsonl");
    let mut first = w.start(&cfg);
    wait_for(Duration::from_secs(60), "records written", || {
        (count_lines(&out) > 1000).then_some(())
    });
    let second = w.sluice(&["run", cfg.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{err}");
    assert!(
        err.contains("pipeline `gen` is in use by another sluice process"),
        "{err}"
    );
    // kill -9 releases the lock with the process: the next start runs.
    first.kill9();
    let mut again = w.start(&cfg);
    let before = count_lines(&out);
    wait_for(
        Duration::from_secs(60),
        "the restarted process writes",
        || (count_lines(&out) > before + 1000).then_some(()),
    );
    again.sigterm();
    assert!(
        again.wait(Duration::from_secs(30)).success(),
        "{}",
        again.logs()
    );
}
