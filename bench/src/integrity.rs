//! Tamper evidence: the CPU that `integrity:` stamping adds per record (generator -> file
//! with and without it), and `sluice verify` over a JSON-lines file of stamped records.

use std::path::Path;
use std::process::Command;

use crate::measure::{command_to_end, run_to_end, sluice_bin, Report};

const RECORDS: u64 = 1_000_000;
/// Each of the two stamp runs is repeated; the medians are reported (a 2-core machine
/// shared with builds moves single runs by 10-20 %).
const RUNS: usize = 5;

/// (private seed, public key) from `sluice integrity keygen`.
fn keygen() -> Result<(String, String), String> {
    let out = Command::new(sluice_bin()?)
        .args(["integrity", "keygen"])
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let get = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .ok_or_else(|| format!("keygen printed no {name}"))
    };
    Ok((get("private_seed:")?, get("public_key:")?))
}

/// Generator -> file, with `integrity` when a seed is given.
fn pipeline(dir: &Path, seed: Option<&str>) -> Result<std::path::PathBuf, String> {
    let d = dir.display();
    let integrity = seed
        .map(|s| format!("    integrity: {{ signing_key: \"{s}\" }}\n"))
        .unwrap_or_default();
    let yaml = format!(
        "host: {{ data_dir: \"{d}/data\" }}\npipelines:\n  - name: bench\n    source: {{ type: generator, count: {RECORDS} }}\n    sink: {{ type: file, path: \"{d}/out.jsonl\" }}\n    batch: {{ max_events: 1000, max_bytes: 4MiB, linger: 50ms }}\n{integrity}"
    );
    let config = dir.join("bench.yaml");
    std::fs::write(&config, yaml).map_err(|e| e.to_string())?;
    Ok(config)
}

fn median(mut runs: Vec<Report>) -> Report {
    runs.sort_by_key(|a| a.cpu);
    let mid = runs.len() / 2;
    runs.swap_remove(mid)
}

fn one_run(name: &str, seed: Option<&str>) -> Result<Report, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let config = pipeline(dir.path(), seed)?;
    run_to_end(name, &config, RECORDS)
}

/// Generator -> file without and with `integrity:`, alternating, medians of `RUNS`.
pub fn stamp() -> Result<Vec<Report>, String> {
    let (seed, _) = keygen()?;
    let (mut plain, mut stamped) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        plain.push(one_run("generator -> file", None)?);
        stamped.push(one_run("generator -> file, integrity", Some(&seed))?);
    }
    let mut base = median(plain);
    base.baseline = true;
    let with = median(stamped);
    println!(
        "integrity stamping adds {:.3} CPU us/record (median of {RUNS} runs each)",
        with.cpu_us_per_record() - base.cpu_us_per_record()
    );
    Ok(vec![base, with])
}

/// `sluice verify` over the 1,000,000 stamped lines a run wrote (and its digest log).
pub fn verify() -> Result<Vec<Report>, String> {
    let (seed, public) = keygen()?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let config = pipeline(dir.path(), Some(&seed))?;
    run_to_end("stamp (setup)", &config, RECORDS)?;
    let out = dir.path().join("out.jsonl").display().to_string();
    let digests = dir
        .path()
        .join("data/integrity/bench.digests")
        .display()
        .to_string();
    let mut runs = Vec::new();
    for _ in 0..3 {
        runs.push(command_to_end(
            "sluice verify --file (1M stamped)",
            &[
                "verify",
                "--file",
                &out,
                "--digests",
                &digests,
                "--public-key",
                &public,
            ],
            RECORDS,
        )?);
    }
    let mut r = median(runs);
    r.baseline = true;
    Ok(vec![r])
}
