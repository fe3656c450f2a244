//! The plugin path against the same connectors built in, at 1,000-record batches. The plugin
//! libraries are the built-in connectors exported under `plugin_<name>`
//! (`fixtures/file-plugin`: generator, file, blackhole; `fixtures/http-sinks-plugin`:
//! elasticsearch, datadog_logs), looked up next to the `sluice` binary: build them with the
//! same profile (`cargo build --release -p sluice-file-plugin -p sluice-http-sinks-plugin`).
//!
//! Each variant runs [`ROUNDS`] times, interleaved with the others, and reports its median
//! run: a file sink's cost sits mostly in the kernel's page cache, which moves from run to
//! run, and interleaving spreads any drift evenly.
//! `plugin-instructions` runs the same variants under callgrind instead, for figures that do
//! not move with the machine's load.

use std::path::PathBuf;
use std::process::{Command, Stdio};

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

/// Writes the pipeline of `v` for `records` events under `dir`; returns the config's path and
/// the file sink's output path.
fn write_config(
    dir: &std::path::Path,
    lib: &std::path::Path,
    v: &Variant,
    records: u64,
    linger: &str,
) -> Result<(PathBuf, PathBuf), String> {
    let d = dir.display();
    let out = dir.join("out.jsonl");
    let config = dir.join("bench.yaml");
    let sink = v.sink.replace("{out}", &out.display().to_string());
    let yaml = format!(
        "host: {{ data_dir: \"{d}/data\", plugins: [ \"{}\" ] }}\npipelines:\n  - name: bench\n    source: {{ type: {}, count: {records} }}\n    sink: {sink}\n    batch: {{ max_events: 1000, max_bytes: 4MiB, linger: {linger} }}\n",
        lib.display(),
        v.source,
    );
    std::fs::write(&config, yaml).map_err(|e| e.to_string())?;
    Ok((config, out))
}

/// Fails unless the variant's file sink, if it has one, wrote `records` lines.
fn check_output(out: &std::path::Path, v: &Variant, records: u64) -> Result<(), String> {
    if !v.sink.contains("{out}") {
        return Ok(());
    }
    let written = std::fs::read(out)
        .map_err(|e| format!("{}: {}: {e}", v.name, out.display()))?
        .iter()
        .filter(|&&b| b == b'\n')
        .count() as u64;
    if written != records {
        return Err(format!(
            "{}: expected {records} lines, found {written}",
            v.name
        ));
    }
    Ok(())
}

fn run(lib: &std::path::Path, v: &Variant) -> Result<Report, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (config, out) = write_config(dir.path(), lib, v, RECORDS, "50ms")?;
    let report = run_to_end(v.name, &config, RECORDS)?;
    check_output(&out, v, RECORDS)?;
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

/// A plugin library and the variants measured against the first of them (the built-in).
struct Group {
    lib: PathBuf,
    variants: Vec<Variant>,
}

fn variant(name: &'static str, source: &'static str, sink: impl Into<String>) -> Variant {
    Variant {
        name,
        source,
        sink: sink.into(),
    }
}

/// The file sink and the generator, then the discarding sink (the plugin path with nothing
/// else to hide it).
fn file_groups() -> Result<Vec<Group>, String> {
    let lib = plugin_lib("sluice-file-plugin")?;
    let file = "{ type: file, path: \"{out}\" }";
    let plugin_file = "{ type: plugin_file, path: \"{out}\" }";
    Ok(vec![
        Group {
            lib: lib.clone(),
            variants: vec![
                variant("generator -> file (built in)", "generator", file),
                variant("generator -> plugin_file", "generator", plugin_file),
                variant("plugin_generator -> file", "plugin_generator", file),
            ],
        },
        Group {
            lib,
            variants: vec![
                variant(
                    "generator -> blackhole (built in)",
                    "generator",
                    "{ type: blackhole }",
                ),
                variant(
                    "generator -> plugin_blackhole",
                    "generator",
                    "{ type: plugin_blackhole }",
                ),
            ],
        },
    ])
}

/// Network sinks posting to loopback receivers that answer like the service but only count:
/// `elasticsearch` (copies each value into the bulk body) and `datadog_logs` (escapes each
/// value into a JSON message and gzips the request).
fn http_groups(es: &str, dd: &str) -> Result<Vec<Group>, String> {
    let lib = plugin_lib("sluice-http-sinks-plugin")?;
    let es_sink = |ty: &str| {
        format!("{{ type: {ty}, endpoints: [\"{es}\"], index: audit, op_type: create }}")
    };
    let dd_sink = |ty: &str| {
        format!(
            "{{ type: {ty}, endpoint: \"{dd}\", api_key: bench, service: cmmc-scout, ddsource: sluice }}"
        )
    };
    Ok(vec![
        Group {
            lib: lib.clone(),
            variants: vec![
                variant(
                    "generator -> elasticsearch",
                    "generator",
                    es_sink("elasticsearch"),
                ),
                variant(
                    "generator -> plugin_elasticsearch",
                    "generator",
                    es_sink("plugin_elasticsearch"),
                ),
            ],
        },
        Group {
            lib,
            variants: vec![
                variant(
                    "generator -> datadog_logs",
                    "generator",
                    dd_sink("datadog_logs"),
                ),
                variant(
                    "generator -> plugin_datadog_logs",
                    "generator",
                    dd_sink("plugin_datadog_logs"),
                ),
            ],
        },
    ])
}

/// Compares each group on its own; every group's first report is a baseline.
fn compare_groups(groups: &[Group]) -> Result<Vec<Report>, String> {
    let mut reports = Vec::new();
    for g in groups {
        let mut group = compare(&g.lib, &g.variants)?;
        group[0].baseline = true;
        reports.append(&mut group);
    }
    Ok(reports)
}

/// `generator-file-plugin`.
pub fn file() -> Result<Vec<Report>, String> {
    compare_groups(&file_groups()?)
}

/// `generator-http-plugin`.
pub fn http() -> Result<Vec<Report>, String> {
    let (_es_rt, (es, _)) = counting_receiver(sluice_testkit::elasticsearch::start_counter)?;
    let (_dd_rt, (dd, _)) = counting_receiver(sluice_testkit::datadog::start_counter)?;
    compare_groups(&http_groups(&es.url(), &dd.url())?)
}

/// Record counts of the two callgrind runs: their difference is 200 batches, so start-up
/// (loading the plugin, the runtimes, the sink's first request) cancels out.
const FEW: u64 = 20_000;
const MANY: u64 = 220_000;

/// `plugin-instructions`: every variant of the two plugin scenarios under callgrind, once
/// with [`FEW`] and once with [`MANY`] records; prints instructions per record and each
/// plugin's as a multiple of its built-in's. Instruction counts do not move with the
/// machine's load, where the timed runs move by 10-20 points; they leave out the kernel
/// and cache misses, which the timed runs include.
pub fn instructions() -> Result<Vec<Report>, String> {
    let (_es_rt, (es, _)) = counting_receiver(sluice_testkit::elasticsearch::start_counter)?;
    let (_dd_rt, (dd, _)) = counting_receiver(sluice_testkit::datadog::start_counter)?;
    let mut groups = file_groups()?;
    groups.append(&mut http_groups(&es.url(), &dd.url())?);
    for g in &groups {
        let mut base: Option<(&str, f64)> = None;
        for v in &g.variants {
            let few = callgrind(&g.lib, v, FEW)?;
            let many = callgrind(&g.lib, v, MANY)?;
            let per_record = many.saturating_sub(few) as f64 / (MANY - FEW) as f64;
            match base {
                None => {
                    println!("{:<34} {per_record:>8.0} instructions/record", v.name);
                    base = Some((v.name, per_record));
                }
                Some((name, b)) => println!(
                    "{:<34} {per_record:>8.0} instructions/record, {:.3}x `{name}`",
                    v.name,
                    per_record / b
                ),
            }
        }
    }
    Ok(Vec::new())
}

/// Instructions of one `sluice run` of `records` events under callgrind, every thread (the
/// plugin's included).
fn callgrind(lib: &std::path::Path, v: &Variant, records: u64) -> Result<u64, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    // Batches cut by size only: under callgrind a 50 ms linger would cut them short.
    let (config, out) = write_config(dir.path(), lib, v, records, "60s")?;
    let profile = dir.path().join("callgrind.out");
    let status = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", profile.display()))
        .arg(sluice_bin()?)
        .arg("run")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run valgrind (is it installed?): {e}"))?;
    if !status.success() {
        return Err(format!(
            "{}: sluice under callgrind exited with {status}",
            v.name
        ));
    }
    check_output(&out, v, records)?;
    let text =
        std::fs::read_to_string(&profile).map_err(|e| format!("{}: {e}", profile.display()))?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })
        .and_then(|n| n.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("{}: no instruction total in {}", v.name, profile.display()))
}
