//! Throughput of the `redis` sink in stream mode.
//!
//! ```text
//! cargo run --release -p sluice-bench --example redis_throughput -- [ENTRIES] [BATCH]
//! ```
//! XADDs ENTRIES generator-like events (~330-byte JSON, whole record under `payload`) into one
//! stream in batches of BATCH and prints entries/s; the stream is deleted afterwards.

use std::time::Instant;

use serde_json::json;
use sluice_redis::{RedisConfig, RedisSink};
use sluice_sdk::{views, Health, Origin, Outcome, Record, Sink, SinkContext};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: u64 = args.get(1).map_or(300_000, |s| s.parse().expect("ENTRIES"));
    let batch: usize = args.get(2).map_or(1_000, |s| s.parse().expect("BATCH"));
    let url =
        std::env::var("SLUICE_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let key = format!("bench:stream:{}", std::process::id());
    let records: Vec<Record> = (0..n)
        .map(|i| {
            let v = format!(
                r#"{{"seq":{i},"event_id":"{i:08x}-0000-4abc-8def-{i:012x}","event_type":"control.evaluated","timestamp":"2026-01-01T00:00:00.000Z","tenant_id":"tenant-{}","assessment_id":"asm-{}","control_id":"AC-2","severity":"high","framework":"NIST-800-53","status":"pass","actor":"svc-assessor-{}@grc.example","source":"sluice-generator"}}"#,
                i % 8,
                i / 100,
                i % 16
            );
            Record::new(v.into_bytes(), Origin::new("bench".into(), 0, i as i64))
        })
        .collect();
    let cfg: RedisConfig =
        sluice_sdk::config::from_value(json!({"url": url, "mode": "stream", "key": key}))
            .expect("config");
    let mut sink = RedisSink::new(cfg).expect("sink");
    sink.open(SinkContext {
        pipeline: "bench".into(),
        health: Health::new(),
    })
    .await
    .expect("open");
    let batches = views(&records);
    let t0 = Instant::now();
    for chunk in batches.chunks(batch) {
        let o = sink.send(chunk).await.expect("send");
        assert!(o.iter().all(|o| *o == Outcome::Delivered));
    }
    let secs = t0.elapsed().as_secs_f64();
    let client = redis::Client::open(url.as_str()).expect("url");
    let mut c = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let len: u64 = redis::cmd("XLEN")
        .arg(&key)
        .query_async(&mut c)
        .await
        .expect("XLEN");
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut c)
        .await
        .expect("DEL");
    assert_eq!(len, n);
    println!(
        "entries={n} batch={batch}: {:.0} entries/s ({secs:.2}s)",
        n as f64 / secs
    );
}
