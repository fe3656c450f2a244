//! Generator to file: the host's own overhead with no external service.

use crate::measure::{run_to_end, Report};

const RECORDS: u64 = 1_000_000;

fn run(name: &str, transforms: &str) -> Result<Vec<Report>, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let d = dir.path().display();
    let config = dir.path().join("bench.yaml");
    let yaml = format!(
        "host: {{ data_dir: \"{d}/data\" }}\npipelines:\n  - name: bench\n    source: {{ type: generator, count: {RECORDS} }}\n{transforms}    sink: {{ type: file, path: \"{d}/out.jsonl\" }}\n    batch: {{ max_events: 1000, max_bytes: 4MiB, linger: 50ms }}\n"
    );
    std::fs::write(&config, yaml).map_err(|e| e.to_string())?;
    let report = run_to_end(name, &config, RECORDS)?;
    let written = std::fs::read(dir.path().join("out.jsonl"))
        .map_err(|e| e.to_string())?
        .iter()
        .filter(|&&b| b == b'\n')
        .count() as u64;
    if written != RECORDS {
        return Err(format!("expected {RECORDS} lines, found {written}"));
    }
    Ok(vec![report])
}

pub fn plain() -> Result<Vec<Report>, String> {
    run("generator -> file", "")
}

pub fn with_transforms() -> Result<Vec<Report>, String> {
    // The filter keeps every record (all have a severity) so both runs write the same count.
    run(
        "generator -> filter+add_fields -> file",
        "    transforms:\n      - { type: filter, field: severity, exists: true }\n      - { type: add_fields, fields: { tenant_region: eu-west-1 } }\n",
    )
}

/// The environment variable the privacy scenario's `encrypt` reads its key from (a fixed
/// 32-byte test key: the bench measures cost, not secrecy).
const BENCH_AES_KEY_ENV: &str = "SLUICE_BENCH_AES_KEY";

/// Plain, then `redact` of three built-in patterns over every string value, then `encrypt`
/// of one field: each run's CPU per record against the plain one.
pub fn privacy() -> Result<Vec<Report>, String> {
    std::env::set_var(
        BENCH_AES_KEY_ENV,
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    );
    let mut reports = plain()?;
    reports.extend(run(
        "generator -> redact(email, ipv4, us_ssn over *) -> file",
        "    transforms:\n      - { type: redact, fields: [\"*\"], patterns: [email, ipv4, us_ssn] }\n",
    )?);
    reports.extend(run(
        "generator -> encrypt(actor) -> file",
        &format!("    transforms:\n      - {{ type: encrypt, fields: [actor], key_env: {BENCH_AES_KEY_ENV}, key_id: bench }}\n"),
    )?);
    Ok(reports)
}
