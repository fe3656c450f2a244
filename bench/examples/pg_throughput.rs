//! Throughput of the `postgres` sink against `psql \copy` of the same rows.
//!
//! ```text
//! cargo run --release -p sluice-bench --example pg_throughput -- [ROWS] [BATCH] [append|upsert] [COPY_THRESHOLD]
//! ```
//! Writes ROWS generator-like events (~300-byte JSON) into a fresh default audit table in
//! batches of BATCH, then loads the same rows with `psql \copy` (CSV) into another fresh
//! table, and prints rows/s of both and the sink's CPU time per row (user+sys of this
//! process, which also builds the records; the server's CPU is not counted).

use std::io::Write;
use std::time::Instant;

use futures::StreamExt;
use serde_json::json;
use sluice_postgres::{PostgresConfig, PostgresSink};
use sluice_sdk::{views, Health, Origin, Outcome, Record, Sink, SinkContext};

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut ru: libc_rusage::Rusage = unsafe { std::mem::zeroed() };
    unsafe { libc_rusage::getrusage(0, &mut ru) };
    let tv = |t: libc_rusage::Timeval| t.sec as f64 + t.usec as f64 / 1e6;
    tv(ru.utime) + tv(ru.stime)
}

/// The two fields of `struct rusage` we need, declared by hand to avoid a libc dependency.
mod libc_rusage {
    #[repr(C)]
    #[derive(Clone, Copy)]
    pub struct Timeval {
        pub sec: i64,
        pub usec: i64,
    }
    #[repr(C)]
    pub struct Rusage {
        pub utime: Timeval,
        pub stime: Timeval,
        pub rest: [i64; 14],
    }
    extern "C" {
        pub fn getrusage(who: i32, usage: *mut Rusage) -> i32;
    }
}

fn event(seq: u64) -> Vec<u8> {
    format!(
        r#"{{"seq":{seq},"event_id":"{:08x}-{:04x}-4abc-8def-{:012x}","event_type":"control.evaluated","timestamp":"2026-01-01T00:00:00.000Z","tenant_id":"tenant-{}","assessment_id":"asm-{}","control_id":"AC-2","severity":"high","framework":"NIST-800-53","status":"pass","actor":"svc-assessor-{}@grc.example","source":"sluice-generator"}}"#,
        seq >> 16,
        seq & 0xffff,
        seq,
        seq % 8,
        seq / 100,
        seq % 16
    )
    .into_bytes()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rows: u64 = args.get(1).map_or(200_000, |s| s.parse().expect("ROWS"));
    let batch: usize = args.get(2).map_or(5_000, |s| s.parse().expect("BATCH"));
    let mode = args.get(3).cloned().unwrap_or_else(|| "append".to_string());
    let copy_threshold: usize = args
        .get(4)
        .map_or(64, |s| s.parse().expect("COPY_THRESHOLD"));
    let url = std::env::var("SLUICE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
    let tag = std::process::id();
    let table = format!("bench_sink_{tag}");
    let copy_table = format!("bench_copy_{tag}");

    let records: Vec<Record> = (0..rows)
        .map(|i| {
            let mut r = Record::new(event(i), Origin::new("bench".into(), 0, i as i64));
            r.timestamp = Some(1_767_225_600_000 + i as i64);
            r
        })
        .collect();
    let avg = records.iter().map(|r| r.value.len()).sum::<usize>() / records.len();

    let cfg: PostgresConfig = sluice_sdk::config::from_value(json!({
        "url": url, "table": table, "create_table": true, "mode": mode,
        "copy_threshold": copy_threshold,
    }))
    .expect("config");
    let mut sink = PostgresSink::new(cfg).expect("sink");
    sink.open(SinkContext {
        pipeline: "bench".into(),
        health: Health::new(),
    })
    .await
    .expect("open");
    let batches = views(&records);
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    // As the host does: up to the sink's default concurrency batches in flight.
    let inflight = sink.default_concurrency();
    let sink = &sink;
    let mut sends = futures::stream::iter(batches.chunks(batch))
        .map(|chunk| async move { sink.send(chunk).await.expect("send") })
        .buffer_unordered(inflight);
    while let Some(o) = sends.next().await {
        assert!(o.iter().all(|o| *o == Outcome::Delivered));
    }
    drop(sends);
    let sink_secs = t0.elapsed().as_secs_f64();
    let sink_cpu = cpu_seconds() - cpu0;

    // The same rows as CSV for psql \copy into an identical table.
    let dir = std::env::temp_dir().join(format!("pg_bench_{tag}.csv"));
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&dir).expect("csv"));
        for r in &records {
            let v: serde_json::Value = serde_json::from_slice(&r.value).expect("json");
            let payload = String::from_utf8_lossy(&r.value).replace('"', "\"\"");
            writeln!(
                f,
                "{},{},{},2026-01-01T00:00:00.000Z,\"{payload}\",bench,0,{}",
                v["event_id"].as_str().unwrap_or_default(),
                v["event_type"].as_str().unwrap_or_default(),
                v["tenant_id"].as_str().unwrap_or_default(),
                r.origin.offset
            )
            .expect("write");
        }
    }
    let ddl = format!("CREATE TABLE {copy_table} (LIKE {table} INCLUDING ALL)");
    let psql = |sql: &str| {
        let st = std::process::Command::new("psql")
            .args([url.as_str(), "-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .status()
            .expect("psql");
        assert!(st.success(), "psql failed: {sql}");
    };
    psql(&ddl);
    let t1 = Instant::now();
    psql(&format!(
        "\\copy {copy_table} (event_id, event_type, tenant_id, event_time, payload, source_topic, source_partition, source_offset) FROM '{}' WITH (FORMAT csv)",
        dir.display()
    ));
    let copy_secs = t1.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&dir);
    psql(&format!("DROP TABLE {table}; DROP TABLE {copy_table}"));

    let sink_rate = rows as f64 / sink_secs;
    let copy_rate = rows as f64 / copy_secs;
    println!("rows={rows} batch={batch} mode={mode} in_flight={inflight} payload_avg={avg}B");
    println!(
        "sink:       {sink_rate:>9.0} rows/s  ({sink_secs:.2}s, {:.2} us CPU/row in this process)",
        sink_cpu * 1e6 / rows as f64
    );
    println!("psql \\copy: {copy_rate:>9.0} rows/s  ({copy_secs:.2}s)");
    println!("ratio:      {:.0}%", 100.0 * sink_rate / copy_rate);
}
