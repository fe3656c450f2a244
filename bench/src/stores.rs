//! The audit store and the real-time store: generator -> `postgres` against `psql \copy` of
//! the same rows into an identical table, and generator -> `redis` (stream mode). Both talk
//! to the servers on this machine (`SLUICE_TEST_POSTGRES`, `SLUICE_TEST_REDIS`, or the
//! defaults on 127.0.0.1).

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::measure::{run_to_end, wait_with_rusage, Report};

const ROWS: u64 = 1_000_000;

pub(crate) fn postgres_url() -> String {
    std::env::var("SLUICE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

pub(crate) fn redis_url() -> String {
    std::env::var("SLUICE_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

pub(crate) fn psql(url: &str, sql: &str) -> Result<String, String> {
    let out = Command::new("psql")
        .args([url, "-qtAX", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .map_err(|e| format!("psql: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A config for a fresh run: the offsets of an earlier run in `dir` are removed first.
fn write_config(dir: &Path, sink: &str, count: u64) -> Result<std::path::PathBuf, String> {
    match std::fs::remove_dir_all(dir.join("data")) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.to_string()),
        _ => {}
    }
    let d = dir.display();
    let config = dir.join("bench.yaml");
    let yaml = format!(
        "host: {{ data_dir: \"{d}/data\" }}\npipelines:\n  - name: bench\n    source: {{ type: generator, count: {count} }}\n    sink: {sink}\n    batch: {{ max_events: 5000, max_bytes: 8MiB, linger: 50ms }}\n"
    );
    std::fs::write(&config, yaml).map_err(|e| e.to_string())?;
    Ok(config)
}

/// The generator's rows as the CSV `psql \copy` loads into the default audit table's
/// columns, in the sink's column order.
fn generator_csv(dir: &Path) -> Result<std::path::PathBuf, String> {
    let out = dir.join("rows.jsonl");
    let config = write_config(
        dir,
        &format!("{{ type: file, path: \"{}\" }}", out.display()),
        ROWS,
    )?;
    run_to_end("generator -> file (rows for \\copy)", &config, ROWS)?;
    let text = std::fs::read_to_string(&out).map_err(|e| e.to_string())?;
    let mut csv = String::with_capacity(text.len() * 3 / 2);
    for (offset, line) in text.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
        let field = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        let _ = writeln!(
            csv,
            "{},{},{},{},\"{}\",generator,0,{offset}",
            field("event_id"),
            field("event_type"),
            field("tenant_id"),
            field("timestamp"),
            line.replace('"', "\"\"")
        );
    }
    let path = dir.join("rows.csv");
    std::fs::write(&path, csv).map_err(|e| e.to_string())?;
    std::fs::remove_file(&out).map_err(|e| e.to_string())?;
    Ok(path)
}

/// `psql \copy` of the CSV into `table`, measured like sluice (wall, user+sys of psql).
fn psql_copy(url: &str, table: &str, csv: &Path) -> Result<Report, String> {
    let started = Instant::now();
    let child = Command::new("psql")
        .args([
            url,
            "-qX",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            &format!(
                "\\copy {table} (event_id, event_type, tenant_id, event_time, payload, source_topic, source_partition, source_offset) FROM '{}' WITH (FORMAT csv)",
                csv.display()
            ),
        ])
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("psql: {e}"))?;
    let (status, cpu) = wait_with_rusage(child.id() as libc::pid_t)?;
    let wall = started.elapsed();
    if status != 0 {
        return Err(format!("psql \\copy exited with status {status}"));
    }
    Ok(Report {
        scenario: "psql \\copy (CSV)".to_string(),
        records: ROWS,
        wall,
        cpu,
        baseline: false,
    })
}

fn count_rows(url: &str, table: &str) -> Result<u64, String> {
    psql(url, &format!("SELECT count(*) FROM {table}"))?
        .parse()
        .map_err(|e| format!("count of {table}: {e}"))
}

/// Generator -> `postgres` (`mode: append`, binary COPY) against `psql \copy` of the same
/// rows into an identical table, in the same run, twice: into the default audit table
/// (primary key on a random UUID plus three indexes, where the server's index maintenance
/// sets the pace) and into a table with the same columns and no index (an append-only
/// landing table). `psql \copy` goes first each time so the sink never gets a warmer cache.
pub fn postgres() -> Result<Vec<Report>, String> {
    let url = postgres_url();
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let csv = generator_csv(dir.path())?;
    let tag = std::process::id();
    let audit = format!("bench_audit_{tag}");
    let tables = [
        (format!("bench_copy_{tag}"), audit.clone(), "audit table"),
        (
            format!("bench_lean_copy_{tag}"),
            format!("bench_lean_{tag}"),
            "no index",
        ),
    ];
    let drop_all = || {
        for (copy, sink, _) in &tables {
            let _ = psql(
                &url,
                &format!("DROP TABLE IF EXISTS {copy}; DROP TABLE IF EXISTS {sink}"),
            );
        }
    };
    let result = (|| {
        // The sink creates the audit table; every other table copies its columns, and the
        // \copy target of the audit table its indexes too.
        let probe = write_config(
            dir.path(),
            &format!("{{ type: postgres, url: \"{url}\", table: {audit}, create_table: true }}"),
            0,
        )?;
        run_to_end("create the audit table", &probe, 0)?;
        psql(
            &url,
            &format!(
                "CREATE TABLE {} (LIKE {audit} INCLUDING ALL); \
                 CREATE TABLE {} (LIKE {audit} INCLUDING DEFAULTS); \
                 CREATE TABLE {} (LIKE {audit} INCLUDING DEFAULTS)",
                tables[0].0, tables[1].0, tables[1].1
            ),
        )?;
        let mut reports = Vec::new();
        for (copy_table, sink_table, what) in &tables {
            let mut copy = psql_copy(&url, copy_table, &csv)?;
            copy.scenario = format!("psql \\copy, {what}");
            copy.baseline = true;
            let config = write_config(
                dir.path(),
                &format!("{{ type: postgres, url: \"{url}\", table: {sink_table}, mode: append }}"),
                ROWS,
            )?;
            let sink = run_to_end(&format!("generator -> postgres, {what}"), &config, ROWS)?;
            for t in [copy_table, sink_table] {
                let n = count_rows(&url, t)?;
                if n != ROWS {
                    return Err(format!("{t}: expected {ROWS} rows, found {n}"));
                }
            }
            reports.push(copy);
            reports.push(sink);
        }
        Ok(reports)
    })();
    drop_all();
    result
}

/// Generator -> `redis` in `mode: stream` (`XADD`, the whole record under `payload`), one
/// pipelined round trip per batch.
pub fn redis() -> Result<Vec<Report>, String> {
    let url = redis_url();
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let key = format!("bench:stream:{}", std::process::id());
    let config = write_config(
        dir.path(),
        &format!("{{ type: redis, url: \"{url}\", mode: stream, key: \"{key}\" }}"),
        ROWS,
    )?;
    let report = run_to_end("generator -> redis (stream)", &config, ROWS);
    let len = redis_cli(&url, &["XLEN", &key]);
    let _ = redis_cli(&url, &["DEL", &key]);
    let report = report?;
    let len: u64 = len?.parse().map_err(|e| format!("XLEN: {e}"))?;
    if len != ROWS {
        return Err(format!("{key}: expected {ROWS} entries, found {len}"));
    }
    Ok(vec![report])
}

fn redis_cli(url: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new("redis-cli")
        .args(["-u", url])
        .args(args)
        .output()
        .map_err(|e| format!("redis-cli: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "redis-cli {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
