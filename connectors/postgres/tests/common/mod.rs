//! Helpers for the tests against the real PostgreSQL of this machine.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::{json, Value};
use sluice_postgres::{PostgresConfig, PostgresSink};
use sluice_sdk::{Health, Origin, Outcome, Record, RecordRef, Sink, SinkContext, SinkError};
use tokio_postgres::{Client, NoTls};

pub fn url() -> String {
    sluice_testkit::env::postgres_url()
}

/// An admin connection for setting up and checking tables.
pub async fn admin() -> Client {
    let (client, conn) = tokio_postgres::connect(&url(), NoTls)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL must run at {} for these tests: {e}", url()));
    tokio::spawn(conn);
    client
}

/// A table name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "t_{prefix}_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        nanos % 100_000
    )
}

/// Drops a test's table once it passed (a failed test leaves it for inspection).
pub async fn drop_table(table: &str) {
    admin()
        .await
        .batch_execute(&format!("DROP TABLE IF EXISTS {table}"))
        .await
        .unwrap();
}

pub async fn count(admin: &Client, table: &str) -> i64 {
    admin
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0)
}

pub fn sink(cfg: Value) -> PostgresSink {
    let cfg: PostgresConfig = sluice_sdk::config::from_value(cfg).unwrap();
    PostgresSink::new(cfg).unwrap()
}

pub async fn open(cfg: Value) -> (PostgresSink, Health) {
    let mut s = sink(cfg);
    let health = Health::new();
    s.open(SinkContext {
        pipeline: "test".into(),
        health: health.clone(),
    })
    .await
    .unwrap();
    (s, health)
}

/// An audit event as the generator writes it.
pub fn event(seq: u64) -> Record {
    let event_type = ["control.evaluated", "gap.identified"][(seq % 2) as usize];
    let v = json!({
        "seq": seq,
        "event_id": format!("evt-{seq:08}"),
        "event_type": event_type,
        "tenant_id": format!("tenant-{}", seq % 7),
        "actor": {"upn": format!("user{}@example.com", seq % 13)},
        "detail": "x".repeat(120),
    });
    let mut r = Record::new(
        serde_json::to_vec(&v).unwrap(),
        Origin::new("audit.events".into(), (seq % 3) as i32, seq as i64),
    );
    r.timestamp = Some(1_700_000_000_000 + seq as i64);
    r
}

pub fn events(range: std::ops::Range<u64>) -> Vec<Record> {
    range.map(event).collect()
}

/// Sends like the host does: the same batch again after `Unavailable`, records answered
/// `Retry` again alone. Returns the final outcome of every record and how many batches
/// were refused as a whole.
pub async fn deliver(sink: &PostgresSink, records: &[Record]) -> (Vec<Outcome>, usize) {
    let mut unavailable = 0;
    let mut out = vec![None; records.len()];
    let mut pending: Vec<usize> = (0..records.len()).collect();
    for _ in 0..5 {
        if pending.is_empty() {
            break;
        }
        let batch: Vec<RecordRef<'_>> = pending.iter().map(|&i| records[i].view()).collect();
        let outcomes = loop {
            match sink.send(&batch).await {
                Ok(o) => break o,
                Err(SinkError::Unavailable { .. }) => {
                    unavailable += 1;
                    assert!(unavailable < 500, "never recovered");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("unexpected batch error: {e}"),
            }
        };
        assert_eq!(outcomes.len(), batch.len());
        let mut again = Vec::new();
        for (i, o) in pending.iter().zip(outcomes) {
            match o {
                Outcome::Retry(_) => again.push(*i),
                o => out[*i] = Some(o),
            }
        }
        pending = again;
    }
    assert!(
        pending.is_empty(),
        "records still answered Retry: {pending:?}"
    );
    (out.into_iter().map(Option::unwrap).collect(), unavailable)
}

/// Delivers in batches of `size`.
pub async fn deliver_batches(
    sink: &PostgresSink,
    records: &[Record],
    size: usize,
) -> (Vec<Outcome>, usize) {
    let mut all = Vec::with_capacity(records.len());
    let mut unavailable = 0;
    for chunk in records.chunks(size) {
        let (o, u) = deliver(sink, chunk).await;
        all.extend(o);
        unavailable += u;
    }
    (all, unavailable)
}

/// The backends of one application name.
pub async fn terminate(admin: &Client, application: &str) -> u64 {
    admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&application],
        )
        .await
        .unwrap()
        .len() as u64
}

pub fn url_with_app(app: &str) -> String {
    let u = url();
    let sep = if u.contains('?') { '&' } else { '?' };
    format!("{u}{sep}application_name={app}")
}
