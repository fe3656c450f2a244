//! `sluice replay` and `sluice offsets reset` with the real binary: a one-hour window of a
//! Kafka topic whose records carry explicit timestamps (narrowed by `--partition` and
//! `--filter`, and a `--dry-run` that sends nothing) without moving the group's committed
//! offsets; a file source replayed by byte positions without moving its offset store; and
//! offset resets (refused while the pipeline runs, by the group's members or by the lock;
//! `--to TIME|earliest|latest|OFFSET`, `--partition`, `--dry-run`).

use std::collections::BTreeSet;
use std::time::Duration;

use rdkafka::producer::{BaseRecord, Producer};
use serde_json::Value;

use crate::common::*;
use crate::kafka::{event, kafka_source, kafka_to_file, producer, wait_logged};
use crate::kafka_broker::committed;
use sluice_testkit::kafka::{create_topic, real_broker as broker, unique};

const SECS: Duration = Duration::from_secs(1);
const MINUTE_MS: i64 = 60_000;

/// Produces `n` events, seq `i` on partition `i % partitions` with timestamp
/// `base + i * step_ms` (CreateTime), and waits for every ack.
fn produce_timed(brokers: &str, topic: &str, partitions: i32, n: u64, base: i64, step_ms: i64) {
    let p = producer(brokers);
    for i in 0..n {
        let value = event(i);
        let key = format!("k{i}");
        p.send(
            BaseRecord::to(topic)
                .payload(value.as_bytes())
                .key(key.as_bytes())
                .partition((i % partitions as u64) as i32)
                .timestamp(base + i as i64 * step_ms),
        )
        .map_err(|(e, _)| e)
        .expect("enqueue");
    }
    p.flush(Duration::from_secs(60)).expect("acknowledged");
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The `seq`s of the lines of `path` after the first `skip`, failing on a duplicate.
fn seqs_after(path: &std::path::Path, skip: usize) -> BTreeSet<u64> {
    let mut out = BTreeSet::new();
    for l in lines(path).into_iter().skip(skip) {
        let v: Value = serde_json::from_str(&l).unwrap();
        let seq = v["seq"].as_u64().unwrap();
        assert!(out.insert(seq), "seq {seq} delivered twice");
    }
    out
}

pub(crate) fn ok(out: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

pub(crate) fn refused(out: &std::process::Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected a refusal; stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// Runs the pipeline until `want` lines are in its output, then stops it gracefully.
fn run_until(w: &Workdir, config: &std::path::Path, out: &std::path::Path, want: usize) {
    let mut s = w.start(config);
    wait_logged(60 * SECS, "the pipeline's output", &[&s], || {
        (count_lines(out) >= want).then_some(())
    });
    s.sigterm();
    assert!(s.wait(30 * SECS).success(), "{}", s.logs());
}

#[test]
fn a_kafka_time_window_is_replayed_exactly_without_moving_the_group() {
    let brokers = broker();
    let topic = unique("replay-window");
    let group = unique("replay-window-g");
    create_topic(&brokers, &topic, 3);
    let base = (chrono::Utc::now().timestamp_millis() - 4 * 60 * MINUTE_MS) / 1000 * 1000;
    // 90 records over 3 hours, 2 minutes apart, round-robin on 3 partitions.
    produce_timed(&brokers, &topic, 3, 90, base, 2 * MINUTE_MS);
    let w = Workdir::new();
    let p = kafka_to_file(&w, "win", &kafka_source(&brokers, &topic, &group, ""), "");
    run_until(&w, &p.config, &p.out, 90);
    let before = committed(&brokers, &group, &topic, 3).unwrap();
    assert_eq!(before, vec![30, 30, 30]);

    let cfg = p.config.to_str().unwrap();
    let (from, to) = (
        rfc3339(base + 60 * MINUTE_MS),
        rfc3339(base + 120 * MINUTE_MS),
    );
    let replay = |extra: &[&str]| {
        let mut args = vec![
            "replay",
            cfg,
            "--pipeline",
            "win",
            "--from",
            &from,
            "--to",
            &to,
        ];
        args.extend_from_slice(extra);
        w.sluice(&args)
    };

    // --dry-run: the range per partition, nothing sent.
    let shown = ok(&replay(&["--dry-run"]));
    assert!(
        shown.contains("total: 30 record(s) in 3 partition(s)"),
        "{shown}"
    );
    assert!(shown.contains(&topic), "{shown}");
    assert_eq!(count_lines(&p.out), 90);

    // The hour from minute 60 to minute 120: seqs 30..60, from all three partitions.
    let out = replay(&[]);
    ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("sent 30, dead-lettered 0, filtered 0"),
        "{stderr}"
    );
    assert_eq!(seqs_after(&p.out, 90), (30..60).collect());
    assert_eq!(committed(&brokers, &group, &topic, 3).unwrap(), before);

    // --partition narrows to one partition.
    let n = count_lines(&p.out);
    ok(&replay(&["--partition", "1"]));
    assert_eq!(
        seqs_after(&p.out, n),
        (30..60).filter(|s| s % 3 == 1).collect()
    );

    // --filter: all must match (tenant-1 events, i.e. seq % 4 == 1).
    let n = count_lines(&p.out);
    let out = replay(&[
        "--filter",
        "tenant_id=tenant-1",
        "--filter",
        "status=NOT_MET",
    ]);
    ok(&out);
    assert_eq!(
        seqs_after(&p.out, n),
        (30..60).filter(|s| s % 4 == 1).collect()
    );
    let filtered = (30..60).filter(|s| s % 4 != 1).count();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("filtered {filtered}")), "{stderr}");

    // Still the group's offsets of the normal run.
    assert_eq!(committed(&brokers, &group, &topic, 3).unwrap(), before);
}

#[test]
fn a_file_source_is_replayed_by_byte_positions_without_moving_its_offsets() {
    let w = Workdir::new();
    let input = w.join("in.jsonl");
    let text: String = (0..10).map(|i| format!("{}\n", event(i))).collect();
    std::fs::write(&input, &text).unwrap();
    let starts: Vec<usize> = std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    let out = w.join("out.jsonl");
    let config = w.config(
        "file.yaml",
        &format!(
            "host: {{ data_dir: \"{{dir}}/data\" }}\npipelines:\n  - name: f\n    \
             source: {{ type: file, path: \"{}\", at_end: stop }}\n    \
             sink: {{ type: file, path: \"{}\" }}\n",
            input.display(),
            out.display()
        ),
    );
    let mut s = w.start(&config);
    assert!(s.wait(30 * SECS).success(), "{}", s.logs());
    assert_eq!(count_lines(&out), 10);
    let store = w.join("data/offsets/f.json");
    let saved = std::fs::read(&store).unwrap();

    let cfg = config.to_str().unwrap();
    let (from, to) = (starts[3].to_string(), starts[7].to_string());
    ok(&w.sluice(&[
        "replay",
        cfg,
        "--pipeline",
        "f",
        "--from",
        &from,
        "--to",
        &to,
    ]));
    assert_eq!(seqs_after(&out, 10), (3..7).collect());
    // Without --to: to the end of the file.
    ok(&w.sluice(&["replay", cfg, "--pipeline", "f", "--from", &to]));
    assert_eq!(seqs_after(&out, 14), (7..10).collect());
    assert_eq!(std::fs::read(&store).unwrap(), saved, "offset store moved");

    // A file has no timestamps; a position inside a line is refused too.
    let err = refused(&w.sluice(&["replay", cfg, "--pipeline", "f", "--from", "2h"]));
    assert!(err.contains("no timestamps"), "{err}");
    let inside = (starts[3] + 2).to_string();
    let err = refused(&w.sluice(&["replay", cfg, "--pipeline", "f", "--from", &inside]));
    assert!(err.contains("not the start of a line"), "{err}");
    assert_eq!(count_lines(&out), 17);
}

#[test]
fn kafka_offsets_reset_is_refused_while_running_and_lands_where_asked() {
    let brokers = broker();
    let topic = unique("reset");
    let group = unique("reset-g");
    create_topic(&brokers, &topic, 2);
    let base = (chrono::Utc::now().timestamp_millis() - 2 * 60 * MINUTE_MS) / 1000 * 1000;
    // 40 records a minute apart: seq i on partition i % 2 at offset i / 2.
    produce_timed(&brokers, &topic, 2, 40, base, MINUTE_MS);
    let w = Workdir::new();
    let p = kafka_to_file(&w, "rs", &kafka_source(&brokers, &topic, &group, ""), "");
    let cfg = p.config.to_str().unwrap();
    let reset = |args: &[&str]| {
        let mut all = vec!["offsets", "reset", cfg, "--pipeline", "rs"];
        all.extend_from_slice(args);
        w.sluice(&all)
    };

    let mut s = w.start(&p.config);
    wait_logged(60 * SECS, "all 40 records", &[&s], || {
        (count_lines(&p.out) >= 40).then_some(())
    });
    let err = refused(&reset(&["--to", "earliest"]));
    assert!(err.contains(&group) && err.contains("member"), "{err}");
    s.sigterm();
    assert!(s.wait(30 * SECS).success(), "{}", s.logs());
    let committed_now = || committed(&brokers, &group, &topic, 2).unwrap();
    assert_eq!(committed_now(), vec![20, 20]);

    // The group empties once the member has left.
    let shown = wait_for(30 * SECS, "an empty group", || {
        let out = reset(&["--to", "earliest", "--dry-run"]);
        out.status.success().then(|| ok(&out))
    });
    assert!(shown.contains("dry run: nothing changed"), "{shown}");
    assert_eq!(committed_now(), vec![20, 20]);

    // To a time: the first record at or after minute 20 of each partition (seqs 20 and 21,
    // both at offset 10); the next run delivers exactly the records from that time on.
    let at = rfc3339(base + 20 * MINUTE_MS);
    let table = ok(&reset(&["--to", &at]));
    assert!(table.contains(&topic), "{table}");
    assert_eq!(committed_now(), vec![10, 10]);
    run_until(&w, &p.config, &p.out, 60);
    assert_eq!(seqs_after(&p.out, 40), (20..40).collect());
    assert_eq!(committed_now(), vec![20, 20]);
    wait_for(30 * SECS, "an empty group", || {
        reset(&["--to", "earliest", "--dry-run"])
            .status
            .success()
            .then_some(())
    });

    ok(&reset(&["--to", "earliest"]));
    assert_eq!(committed_now(), vec![0, 0]);
    ok(&reset(&["--to", "latest"]));
    assert_eq!(committed_now(), vec![20, 20]);
    ok(&reset(&["--to", "5", "--partition", "1"]));
    assert_eq!(committed_now(), vec![20, 5]);
    let json = ok(&reset(&["--to", "earliest", "--partition", "0", "--json"]));
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["partitions"][0]["before"], "20");
    assert_eq!(v["partitions"][0]["after"], "0");
    assert_eq!(committed_now(), vec![0, 5]);
    // An offset outside the partition is refused.
    let err = refused(&reset(&["--to", "999"]));
    assert!(err.contains("outside"), "{err}");
    assert_eq!(committed_now(), vec![0, 5]);
}

#[test]
fn file_offsets_reset_is_refused_by_the_lock_and_rewrites_the_store() {
    let w = Workdir::new();
    let input = w.join("in.jsonl");
    let text: String = (0..5).map(|i| format!("{}\n", event(i))).collect();
    std::fs::write(&input, &text).unwrap();
    let out = w.join("out.jsonl");
    let config = w.config(
        "file.yaml",
        &format!(
            "host: {{ data_dir: \"{{dir}}/data\" }}\npipelines:\n  - name: f\n    \
             source: {{ type: file, path: \"{}\" }}\n    \
             sink: {{ type: file, path: \"{}\" }}\n    commit_interval: 50ms\n",
            input.display(),
            out.display()
        ),
    );
    let cfg = config.to_str().unwrap();
    let reset = |args: &[&str]| {
        let mut all = vec!["offsets", "reset", cfg, "--pipeline", "f"];
        all.extend_from_slice(args);
        w.sluice(&all)
    };
    let data = w.join("data");
    let end = text.len().to_string();
    let position = || stored_offsets(&data, "f").map(|p| p["0"].as_str().unwrap().to_string());

    let mut s = w.start(&config);
    wait_logged(30 * SECS, "the file's end committed", &[&s], || {
        (position().as_deref() == Some(end.as_str())).then_some(())
    });
    let err = refused(&reset(&["--to", "earliest"]));
    assert!(err.contains("in use by another sluice process"), "{err}");
    s.sigterm();
    assert!(s.wait(30 * SECS).success(), "{}", s.logs());

    let shown = ok(&reset(&["--to", "earliest", "--dry-run"]));
    assert!(shown.contains("dry run"), "{shown}");
    assert_eq!(position().as_deref(), Some(end.as_str()));
    ok(&reset(&["--to", "earliest"]));
    assert_eq!(position().as_deref(), Some("0"));
    ok(&reset(&["--to", "latest"]));
    assert_eq!(position().as_deref(), Some(end.as_str()));
    let second = (event(0).len() + 1).to_string();
    ok(&reset(&["--to", &second]));
    assert_eq!(position().as_deref(), Some(second.as_str()));
    let err = refused(&reset(&["--to", "2h"]));
    assert!(err.contains("no timestamps"), "{err}");

    // The next run starts from the reset position: records 1..5 once more.
    let mut s = w.start(&config);
    wait_logged(30 * SECS, "records again", &[&s], || {
        (count_lines(&out) >= 9).then_some(())
    });
    s.sigterm();
    assert!(s.wait(30 * SECS).success(), "{}", s.logs());
    assert_eq!(seqs_after(&out, 5), (1..5).collect());
}

#[test]
fn replay_to_one_sink_skips_the_pipeline_transforms_and_routing_but_keeps_the_sinks_own() {
    let w = Workdir::new();
    let input = w.join("in.jsonl");
    let text: String = (0..8).map(|i| format!("{}\n", event(i))).collect();
    std::fs::write(&input, &text).unwrap();
    let (even, odd) = (w.join("even.jsonl"), w.join("odd.jsonl"));
    let config = w.config(
        "fan.yaml",
        &format!(
            "host: {{ data_dir: \"{{dir}}/data\" }}\npipelines:\n  - name: fan\n    \
             source: {{ type: file, path: \"{}\", at_end: stop }}\n    \
             transforms:\n      - {{ type: add_fields, fields: {{ via: pipeline }} }}\n    \
             sinks:\n      even:\n        type: file\n        path: \"{}\"\n        \
             route: {{ field: tenant_id, one_of: [tenant-0, tenant-2] }}\n      \
             odd:\n        type: file\n        path: \"{}\"\n        \
             route: {{ field: tenant_id, one_of: [tenant-1, tenant-3] }}\n        \
             transforms:\n          - {{ type: add_fields, fields: {{ sink: odd }} }}\n",
            input.display(),
            even.display(),
            odd.display()
        ),
    );
    let cfg = config.to_str().unwrap();
    // Through the pipeline: its transform and its routes.
    ok(&w.sluice(&["replay", cfg, "--pipeline", "fan", "--from", "0"]));
    assert_eq!(seqs_after(&even, 0), [0, 2, 4, 6].into());
    assert!(read_jsonl(&even).iter().all(|v| v["via"] == "pipeline"));
    assert_eq!(seqs_after(&odd, 0), [1, 3, 5, 7].into());
    // Straight to `odd`: every record, without the pipeline's transform or route, with the
    // sink's own transform; a filter still selects.
    let out = w.sluice(&[
        "replay",
        cfg,
        "--pipeline",
        "fan",
        "--from",
        "0",
        "--sink",
        "odd",
        "--filter",
        "status=NOT_MET",
    ]);
    ok(&out);
    assert_eq!(seqs_after(&odd, 4), (0..8).collect());
    let sent: Vec<Value> = read_jsonl(&odd).into_iter().skip(4).collect();
    assert!(sent
        .iter()
        .all(|v| v["sink"] == "odd" && v.get("via").is_none()));
    assert_eq!(count_lines(&even), 4);
    let err = refused(&w.sluice(&[
        "replay",
        cfg,
        "--pipeline",
        "fan",
        "--from",
        "0",
        "--sink",
        "nope",
    ]));
    assert!(err.contains("odd") && err.contains("even"), "{err}");
}
