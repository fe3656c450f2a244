//! `http-sink`: the `http` sink against a local counting server (testkit's receiver, which
//! answers every request 202 and counts it). Baseline: the same generator into `blackhole`.
//! The generator is one partition, so one call per record has one call in flight whatever
//! `concurrency` says (calls of a partition are sequential, see docs/connectors/http.md).

use std::sync::atomic::Ordering;

use crate::kafka::counting_receiver;
use crate::measure::{run_to_end, Report};

/// Records of the batch run; the per-record run sends a tenth (one round trip each).
const RECORDS: u64 = 1_000_000;
const PER_RECORD: u64 = 100_000;

fn run(name: &str, records: u64, sink: &str) -> Result<Report, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let d = dir.path().display();
    let config = dir.path().join("bench.yaml");
    let yaml = format!(
        "host: {{ data_dir: \"{d}/data\" }}\npipelines:\n  - name: bench\n    source: {{ type: generator, count: {records} }}\n    sink: {sink}\n    batch: {{ max_events: 1000, max_bytes: 4MiB, linger: 50ms }}\n"
    );
    std::fs::write(&config, yaml).map_err(|e| e.to_string())?;
    run_to_end(name, &config, records)
}

pub fn run_all() -> Result<Vec<Report>, String> {
    let (_rt, (server, count)) = counting_receiver(sluice_testkit::datadog::start_counter)?;
    let url = format!("{}/api/v2/logs", server.url());
    let mut reports = Vec::new();
    let mut base = run("generator -> blackhole", RECORDS, "{ type: blackhole }")?;
    base.baseline = true;
    reports.push(base);
    let before = count.load(Ordering::Relaxed);
    reports.push(run(
        "generator -> http batch: ndjson",
        RECORDS,
        &format!("{{ type: http, url: \"{url}\", batch: ndjson }}"),
    )?);
    let calls = count.load(Ordering::Relaxed) - before;
    eprintln!("batch: ndjson: {calls} calls for {RECORDS} records");
    let mut per_record_base = run(
        "generator -> blackhole (100k)",
        PER_RECORD,
        "{ type: blackhole }",
    )?;
    per_record_base.baseline = true;
    reports.push(per_record_base);
    let before = count.load(Ordering::Relaxed);
    reports.push(run(
        "generator -> http per record, concurrency 8",
        PER_RECORD,
        &format!("{{ type: http, url: \"{url}\", concurrency: 8 }}"),
    )?);
    let calls = count.load(Ordering::Relaxed) - before;
    if calls < PER_RECORD {
        return Err(format!("{calls} calls for {PER_RECORD} records"));
    }
    Ok(reports)
}
