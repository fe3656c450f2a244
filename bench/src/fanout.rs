//! Fan-out and routing: what one source costs when its records go to several sinks, and what
//! deciding a route costs, against the single-sink `file` pipeline of the same run.

use crate::kafka::counting_receiver;
use crate::measure::{run_to_end, Report};

const RECORDS: u64 = 1_000_000;

/// Runs one pipeline (the `sinks:`/`sink:` part given) over [`RECORDS`] generator events and
/// checks that `out.jsonl` got `expect_lines` lines (`None`: the pipeline writes no file).
fn run(
    name: &str,
    sinks: &str,
    expect_lines: Option<u64>,
    baseline: bool,
) -> Result<Report, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let d = dir.path().display().to_string();
    let config = dir.path().join("bench.yaml");
    let yaml = format!(
        "host: {{ data_dir: \"{d}/data\" }}\npipelines:\n  - name: bench\n    source: {{ type: generator, count: {RECORDS} }}\n{}    batch: {{ max_events: 1000, max_bytes: 4MiB, linger: 50ms }}\n",
        sinks.replace("{dir}", &d)
    );
    std::fs::write(&config, yaml).map_err(|e| e.to_string())?;
    let mut report = run_to_end(name, &config, RECORDS)?;
    report.baseline = baseline;
    let Some(expect_lines) = expect_lines else {
        return Ok(report);
    };
    let written = std::fs::read(dir.path().join("out.jsonl"))
        .map_err(|e| e.to_string())?
        .iter()
        .filter(|&&b| b == b'\n')
        .count() as u64;
    if written != expect_lines {
        return Err(format!(
            "{name}: expected {expect_lines} lines, found {written}"
        ));
    }
    Ok(report)
}

/// `fanout`: the single-sink file pipeline, then fan-out to file + blackhole + a counting HEC
/// receiver; then one named file sink without a route, and the same with a route on a field
/// that every record passes.
pub fn run_all() -> Result<Vec<Report>, String> {
    let (_rt, (hec, requests)) = counting_receiver(sluice_testkit::hec::start_counter)?;
    let single = "    sink: { type: file, path: \"{dir}/out.jsonl\" }\n";
    let fanout = format!(
        "    sinks:\n      file: {{ type: file, path: \"{{dir}}/out.jsonl\" }}\n      hole: {{ type: blackhole }}\n      siem: {{ type: splunk_hec, endpoint: \"{}\", token: 00000000-0000-0000-0000-000000000000, compression: none }}\n",
        hec.url()
    );
    let named = "    sinks:\n      file: { type: file, path: \"{dir}/out.jsonl\" }\n";
    let routed = "    sinks:\n      file: { type: file, path: \"{dir}/out.jsonl\", route: { field: severity, one_of: [low, medium, high, critical] } }\n";
    let hec_only = format!(
        "    sink: {{ type: splunk_hec, endpoint: \"{}\", token: 00000000-0000-0000-0000-000000000000, compression: none }}\n",
        hec.url()
    );
    let mut out = vec![run("generator -> file", single, Some(RECORDS), true)?];
    out.push(run(
        "generator -> file+blackhole+hec",
        &fanout,
        Some(RECORDS),
        false,
    )?);
    // What the fan-out is made of: the HEC sink alone, and three sinks that cost nothing.
    out.push(run("generator -> hec", &hec_only, None, false)?);
    let holes = "    sinks:\n      a: { type: blackhole }\n      b: { type: blackhole }\n      c: { type: blackhole }\n";
    out.push(run("generator -> 3 x blackhole", holes, None, false)?);
    if requests.load(std::sync::atomic::Ordering::Relaxed) == 0 {
        return Err("the HEC receiver got no request".into());
    }
    out.push(run(
        "generator -> sinks: file, no route",
        named,
        Some(RECORDS),
        true,
    )?);
    out.push(run(
        "generator -> sinks: file, routed",
        routed,
        Some(RECORDS),
        false,
    )?);
    let per_record = out[5].cpu_us_per_record() - out[4].cpu_us_per_record();
    println!("routing by a field: {per_record:+.3} CPU us/record against no route");
    Ok(out)
}
