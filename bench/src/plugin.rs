//! The plugin path against the same connectors built in, at 1,000-record batches. The plugin
//! libraries are the built-in connectors exported under `plugin_<name>`
//! (`examples/file-plugin`: generator, file, blackhole; `examples/http-sinks-plugin`:
//! elasticsearch, datadog_logs), looked up next to the `sluice` binary: build them with the
//! same profile (`cargo build --release -p sluice-file-plugin -p sluice-http-sinks-plugin`).
//!
//! Each variant runs [`ROUNDS`] times, interleaved with the others, and reports its median
//! run: a file sink's cost sits mostly in the kernel's page cache, which moves from run to
//! run, and interleaving spreads any drift evenly.

use std::path::PathBuf;

use crate::kafka::counting_receiver;
use crate::measure::{run_to_end, sluice_bin, Report};

const RECORDS: u64 = 1_000_000;
const ROUNDS: usize = 7;

fn plugin_lib(package: &str) -> Result<PathBuf, String> {
    let bin = sluice_bin()?;
    let dir = bin.parent().ok_or("sluice binary has no directory")?;
    let lib = dir.join(format!("lib{}.so", package.replace('-', "_")));
    if !lib.exists() {
        return Err(format!(
            "{} not found: build it with the same profile as sluice (cargo build --release -p {package})",
            lib.display()
        ));
    }
    Ok(lib)
}

/// One pipeline to measure: its name, source type and sink (YAML flow mapping; `{out}` is
/// replaced by the output file's path).
struct Variant {
    name: &'static str,
    source: &'static str,
    sink: String,
}

fn run(lib: &std::path::Path, v: &Variant) -> Result<Report, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let d = dir.path().display();
    let out = dir.path().join("out.jsonl");
    let config = dir.path().join("bench.yaml");
    let sink = v.sink.replace("{out}", &out.display().to_string());
    let yaml = format!(
        "host: {{ data_dir: \"{d}/data\", plugins: [ \"{}\" ] }}\npipelines:\n  - name: bench\n    source: {{ type: {}, count: {RECORDS} }}\n    sink: {sink}\n    batch: {{ max_events: 1000, max_bytes: 4MiB, linger: 50ms }}\n",
        lib.display(),
        v.source,
    );
    std::fs::write(&config, yaml).map_err(|e| e.to_string())?;
    let report = run_to_end(v.name, &config, RECORDS)?;
    if out.exists() {
        let written = std::fs::read(&out)
            .map_err(|e| e.to_string())?
            .iter()
            .filter(|&&b| b == b'\n')
            .count() as u64;
        if written != RECORDS {
            return Err(format!(
                "{}: expected {RECORDS} lines, found {written}",
                v.name
            ));
        }
    }
    drop(dir);
    // The kernel writes the last run's file back while the next one runs, on the core the
    // next pipeline needs: flush it first so each run starts from the same state.
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    Ok(report)
}

/// Runs the variants interleaved and returns one report per variant, in order: the run with
/// the median wall time, carrying the median CPU time of all runs (the two medians may come
/// from different runs; each is the steadier figure of its kind).
fn compare(lib: &std::path::Path, variants: &[Variant]) -> Result<Vec<Report>, String> {
    let mut runs: Vec<Vec<Report>> = variants.iter().map(|_| Vec::new()).collect();
    for _ in 0..ROUNDS {
        for (i, v) in variants.iter().enumerate() {
            let report = run(lib, v)?;
            // Every run, so the spread behind a median is visible.
            eprintln!("  {report}");
            runs[i].push(report);
        }
    }
    Ok(runs.into_iter().map(median).collect())
}

/// The run with the median wall time, carrying the median CPU time of all the runs.
fn median(mut runs: Vec<Report>) -> Report {
    runs.sort_by_key(|r| r.cpu);
    let cpu = runs[runs.len() / 2].cpu;
    runs.sort_by_key(|r| r.wall);
    let mut median = runs.swap_remove(runs.len() / 2);
    median.cpu = cpu;
    median
}

/// `generator-file-plugin`: the file sink and the generator, then the discarding sink (the
/// plugin path with nothing else to hide it).
pub fn file() -> Result<Vec<Report>, String> {
    let lib = plugin_lib("sluice-file-plugin")?;
    let file = "{ type: file, path: \"{out}\" }";
    let plugin_file = "{ type: plugin_file, path: \"{out}\" }";
    let mut reports = compare(
        &lib,
        &[
            Variant {
                name: "generator -> file (built in)",
                source: "generator",
                sink: file.into(),
            },
            Variant {
                name: "generator -> plugin_file",
                source: "generator",
                sink: plugin_file.into(),
            },
            Variant {
                name: "plugin_generator -> file",
                source: "plugin_generator",
                sink: file.into(),
            },
        ],
    )?;
    let mut blackhole = compare(
        &lib,
        &[
            Variant {
                name: "generator -> blackhole (built in)",
                source: "generator",
                sink: "{ type: blackhole }".into(),
            },
            Variant {
                name: "generator -> plugin_blackhole",
                source: "generator",
                sink: "{ type: plugin_blackhole }".into(),
            },
        ],
    )?;
    blackhole[0].baseline = true;
    reports.append(&mut blackhole);
    Ok(reports)
}

/// `generator-http-plugin`: network sinks, built in and as a plugin, each posting to a
/// loopback receiver that answers like the service but only counts: `elasticsearch`
/// (copies each value into the bulk body) and `datadog_logs` (escapes each value into a JSON
/// message and gzips the request).
pub fn http() -> Result<Vec<Report>, String> {
    let lib = plugin_lib("sluice-http-sinks-plugin")?;
    let (_es_rt, (es, _)) = counting_receiver(sluice_testkit::elasticsearch::start_counter)?;
    let (_dd_rt, (dd, _)) = counting_receiver(sluice_testkit::datadog::start_counter)?;
    let es_sink = |ty: &str| {
        format!(
            "{{ type: {ty}, endpoints: [\"{}\"], index: audit, op_type: create }}",
            es.url()
        )
    };
    let dd_sink = |ty: &str| {
        format!(
            "{{ type: {ty}, endpoint: \"{}\", api_key: bench, service: cmmc-scout, ddsource: sluice }}",
            dd.url()
        )
    };
    let mut reports = compare(
        &lib,
        &[
            Variant {
                name: "generator -> elasticsearch",
                source: "generator",
                sink: es_sink("elasticsearch"),
            },
            Variant {
                name: "generator -> plugin_elasticsearch",
                source: "generator",
                sink: es_sink("plugin_elasticsearch"),
            },
        ],
    )?;
    let mut datadog = compare(
        &lib,
        &[
            Variant {
                name: "generator -> datadog_logs",
                source: "generator",
                sink: dd_sink("datadog_logs"),
            },
            Variant {
                name: "generator -> plugin_datadog_logs",
                source: "generator",
                sink: dd_sink("plugin_datadog_logs"),
            },
        ],
    )?;
    datadog[0].baseline = true;
    reports.append(&mut datadog);
    Ok(reports)
}
