//! `sluice dlq replay` of a file DLQ into a blackhole: reading, parsing and tracking letters.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::measure::{sluice_bin, wait_with_rusage, Report};

const LETTERS: u64 = 1_000_000;

/// One letter as the file DLQ writes it: a ~300 B JSON record as the value (a JSON string),
/// a header, and the Kafka Connect context of a PostgreSQL constraint violation.
fn letter(i: u64) -> serde_json::Value {
    let value = format!(
        r#"{{"event_id":"{i:08x}-7c1e-4d2a-9f3b-5e6d7c8b9a0f","event_type":"control.evaluated","seq":{i},"severity":"high","tenant_id":"acme","source":{{"system":"cmmc-scout","host":"scanner-3"}},"message":"control AC.L2-3.1.1 evaluated: not met"}}"#
    );
    serde_json::json!({
        "key": null,
        "value": value,
        "headers": [{"key": "trace-id", "value": format!("t-{i}")}],
        "timestamp": 1_765_000_000_000u64 + i,
        "__connect.errors.topic": "assessment.events",
        "__connect.errors.partition": "0",
        "__connect.errors.offset": i.to_string(),
        "__connect.errors.connector.name": "bench",
        "__connect.errors.stage": "TASK_PUT",
        "__connect.errors.exception.class.name": "postgres.sqlstate=23514",
        "__connect.errors.exception.message": "new row for relation \"audit\" violates check constraint \"audit_seq\"",
        "sluice.errors.attempts": "1",
        "dead_lettered_at": "2026-12-07T04:00:00.000Z",
    })
}

/// Replays 1,000,000 letters of a file DLQ into a `blackhole` sink.
pub fn replay() -> Result<Vec<Report>, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let d = dir.path().display();
    let dlq_dir = dir.path().join("data/dlq");
    std::fs::create_dir_all(&dlq_dir).map_err(|e| e.to_string())?;
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(dlq_dir.join("bench.jsonl")).map_err(|e| e.to_string())?,
    );
    for i in 0..LETTERS {
        serde_json::to_writer(&mut out, &letter(i)).map_err(|e| e.to_string())?;
        out.write_all(b"\n").map_err(|e| e.to_string())?;
    }
    out.flush().map_err(|e| e.to_string())?;
    drop(out);
    let config = dir.path().join("bench.yaml");
    let yaml = format!(
        "host: {{ data_dir: \"{d}/data\" }}\npipelines:\n  - name: bench\n    source: {{ type: generator, count: 1 }}\n    sink: {{ type: blackhole }}\n    batch: {{ max_events: 1000, max_bytes: 4MiB, linger: 50ms }}\n"
    );
    std::fs::write(&config, yaml).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let child = Command::new(sluice_bin()?)
        .args([
            "dlq",
            "replay",
            config.to_str().unwrap_or_default(),
            "--pipeline",
            "bench",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawn sluice: {e}"))?;
    let pid = child.id() as libc::pid_t;
    let mut stdout = child.stdout.ok_or("no stdout")?;
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    let (status, cpu) = wait_with_rusage(pid)?;
    let wall = started.elapsed();
    let summary = reader.join().unwrap_or_default();
    if status != 0 {
        return Err(format!(
            "sluice dlq replay exited with status {status}: {summary}"
        ));
    }
    if !summary.starts_with(&format!("replayed {LETTERS} letter(s)")) {
        return Err(format!("unexpected summary: {summary}"));
    }
    Ok(vec![Report {
        scenario: "dlq replay (file) -> blackhole".into(),
        records: LETTERS,
        wall,
        cpu,
        baseline: false,
    }])
}
