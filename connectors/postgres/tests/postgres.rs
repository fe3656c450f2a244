//! The `postgres` sink against the real PostgreSQL of this machine. Each test writes to its
//! own table, so the tests run in parallel.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use sluice_sdk::{views, Outcome, Record, Sink, SinkError};

fn delivered(outcomes: &[Outcome]) -> usize {
    outcomes
        .iter()
        .filter(|o| **o == Outcome::Delivered)
        .count()
}

#[tokio::test]
async fn hundred_thousand_records_become_rows_of_the_audit_table() {
    let table = unique("bulk");
    let (sink, health) = open(json!({
        "url": url(), "table": table, "create_table": true, "mode": "append",
    }))
    .await;
    let records = events(0..100_000);
    // 5000-record batches take the COPY path; the odd tail the multi-row INSERT.
    let (outcomes, _) = deliver_batches(&sink, &records[..99_990], 5000).await;
    let (tail, _) = deliver(&sink, &records[99_990..]).await;
    assert_eq!(delivered(&outcomes) + delivered(&tail), 100_000);
    assert!(health.problem().is_none());

    let db = admin().await;
    assert_eq!(count(&db, &table).await, 100_000);
    let distinct: i64 = db
        .query_one(
            &format!("SELECT count(DISTINCT event_id) FROM {table}"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(distinct, 100_000);
    for seq in [0u64, 4_321, 99_995] {
        let row = db
            .query_one(
                &format!(
                    "SELECT event_type, tenant_id, event_time = to_timestamp($2::float8 / 1000), \
                     payload->>'seq', payload->'actor'->>'upn', source_topic, source_partition, \
                     source_offset, received_at IS NOT NULL FROM {table} WHERE event_id = $1"
                ),
                &[
                    &format!("evt-{seq:08}"),
                    &(1_700_000_000_000f64 + seq as f64),
                ],
            )
            .await
            .unwrap();
        assert_eq!(
            row.get::<_, &str>(0),
            ["control.evaluated", "gap.identified"][(seq % 2) as usize]
        );
        assert_eq!(row.get::<_, String>(1), format!("tenant-{}", seq % 7));
        assert!(row.get::<_, bool>(2), "event_time of {seq}");
        assert_eq!(row.get::<_, String>(3), seq.to_string());
        assert_eq!(
            row.get::<_, String>(4),
            format!("user{}@example.com", seq % 13)
        );
        assert_eq!(row.get::<_, &str>(5), "audit.events");
        assert_eq!(row.get::<_, i32>(6), (seq % 3) as i32);
        assert_eq!(row.get::<_, i64>(7), seq as i64);
        assert!(row.get::<_, bool>(8));
    }
    let indexes: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_indexes WHERE tablename = $1",
            &[&table],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(indexes, 4, "primary key + time, type and tenant indexes");
    drop_table(&table).await;
}

#[tokio::test]
async fn upsert_replay_keeps_one_row_per_event() {
    let table = unique("upsert");
    let (sink, _) = open(json!({
        "url": url(), "table": table, "create_table": true, "mode": "upsert",
    }))
    .await;
    let records = events(0..20_000);
    let (o, _) = deliver_batches(&sink, &records, 4000).await;
    assert_eq!(delivered(&o), 20_000);
    // Replay everything, through both paths, with a changed field on the second pass.
    let changed: Vec<Record> = records
        .iter()
        .map(|r| {
            let mut v: Value = r.json().unwrap();
            v["event_type"] = json!("replayed");
            let mut r2 = r.clone();
            r2.value = serde_json::to_vec(&v).unwrap().into();
            r2
        })
        .collect();
    let (o, _) = deliver_batches(&sink, &changed, 4000).await;
    assert_eq!(delivered(&o), 20_000);
    let (o, _) = deliver_batches(&sink, &changed[..500], 10).await;
    assert_eq!(delivered(&o), 500);
    // The same event twice in one batch: the last one wins, both count as delivered.
    let mut dup = vec![records[7].clone(), changed[7].clone(), records[7].clone()];
    dup[2].value = br#"{"event_id":"evt-00000007","event_type":"last"}"#.to_vec().into();
    let (o, _) = deliver(&sink, &dup).await;
    assert_eq!(delivered(&o), 3);

    let db = admin().await;
    assert_eq!(count(&db, &table).await, 20_000);
    let replayed: i64 = db
        .query_one(
            &format!("SELECT count(*) FROM {table} WHERE event_type = 'replayed'"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(replayed, 19_999);
    let last: String = db
        .query_one(
            &format!("SELECT event_type FROM {table} WHERE event_id = 'evt-00000007'"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(last, "last");
    drop_table(&table).await;
}

#[tokio::test]
async fn upsert_do_nothing_keeps_the_first_version() {
    let table = unique("nothing");
    let (sink, _) = open(json!({
        "url": url(), "table": table, "create_table": true, "mode": "upsert",
        "on_conflict": "nothing",
    }))
    .await;
    let records = events(0..300);
    deliver_batches(&sink, &records, 100).await;
    let mut again = records.clone();
    for (i, r) in again.iter_mut().enumerate() {
        r.value = format!(r#"{{"event_id":"evt-{i:08}","event_type":"other"}}"#)
            .into_bytes()
            .into();
    }
    let (o, _) = deliver_batches(&sink, &again, 100).await;
    assert_eq!(delivered(&o), 300);
    let db = admin().await;
    assert_eq!(count(&db, &table).await, 300);
    let other: i64 = db
        .query_one(
            &format!("SELECT count(*) FROM {table} WHERE event_type = 'other'"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(other, 0);
    drop_table(&table).await;
}

/// The Purview-style audit table of configs/kafka-to-postgres.yaml.
async fn audit_table(db: &tokio_postgres::Client, table: &str) {
    db.batch_execute(&format!(
        "CREATE TABLE {table} (
            audit_id uuid PRIMARY KEY,
            correlation_id uuid,
            operation varchar(64) NOT NULL,
            actor text NOT NULL,
            status text,
            duration_ms integer CHECK (duration_ms >= 0),
            occurred_at timestamptz,
            metadata jsonb)"
    ))
    .await
    .unwrap();
}

fn audit_event(i: u32) -> Record {
    let v = json!({
        "id": format!("00000000-0000-4000-8000-{i:012}"),
        "correlationId": format!("11111111-0000-4000-8000-{:012}", i / 10),
        "operation": "FileAccessed",
        "user": {"upn": format!("u{i}@contoso.com")},
        "result": {"status": if i.is_multiple_of(2) { "Succeeded" } else { "Failed" }, "durationMs": i % 500},
        "creationTime": "2024-05-01T12:00:00Z",
        "extra": {"site": "hr", "n": i},
    });
    Record::new(
        serde_json::to_vec(&v).unwrap(),
        sluice_sdk::Origin::new("purview".into(), 0, i as i64),
    )
}

fn audit_columns(table: &str) -> Value {
    json!({
        "url": url(), "table": table, "mode": "upsert", "key": ["audit_id"],
        "columns": {
            "audit_id": "id", "correlation_id": "correlationId", "operation": "operation",
            "actor": "user.upn", "status": "result.status", "duration_ms": "result.durationMs",
            "occurred_at": "creationTime", "metadata": "extra",
        },
    })
}

#[tokio::test]
async fn mapped_columns_fill_an_existing_table_with_their_types() {
    let table = unique("mapped");
    let db = admin().await;
    audit_table(&db, &table).await;
    let (sink, _) = open(audit_columns(&table)).await;
    let records: Vec<Record> = (0..1000).map(audit_event).collect();
    // One COPY batch and several small INSERT batches.
    let (o, _) = deliver(&sink, &records[..600]).await;
    assert_eq!(delivered(&o), 600);
    let (o, _) = deliver_batches(&sink, &records[600..], 7).await;
    assert_eq!(delivered(&o), 400);
    assert_eq!(count(&db, &table).await, 1000);
    let row = db
        .query_one(
            &format!(
                "SELECT correlation_id::text, operation, actor, status, duration_ms, \
                 occurred_at = '2024-05-01T12:00:00Z'::timestamptz, metadata->>'site', \
                 (metadata->>'n')::int FROM {table} WHERE audit_id = '00000000-0000-4000-8000-000000000777'"
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, &str>(0),
        "11111111-0000-4000-8000-000000000077"
    );
    assert_eq!(row.get::<_, &str>(1), "FileAccessed");
    assert_eq!(row.get::<_, &str>(2), "u777@contoso.com");
    assert_eq!(row.get::<_, &str>(3), "Failed");
    assert_eq!(row.get::<_, i32>(4), 277);
    assert!(row.get::<_, bool>(5));
    assert_eq!(row.get::<_, &str>(6), "hr");
    assert_eq!(row.get::<_, i32>(7), 777);
    drop_table(&table).await;
}

fn with(record: &Record, f: impl FnOnce(&mut Value)) -> Record {
    let mut v: Value = record.json().unwrap();
    f(&mut v);
    let mut r = record.clone();
    r.value = serde_json::to_vec(&v).unwrap().into();
    r
}

fn rejected(o: &Outcome) -> Option<(&str, &str)> {
    match o {
        Outcome::Reject(r) => Some((r.kind.as_str(), r.message.as_str())),
        _ => None,
    }
}

#[tokio::test]
async fn a_row_violating_a_constraint_is_rejected_with_its_sqlstate_and_the_rest_written() {
    let table = unique("reject");
    let db = admin().await;
    audit_table(&db, &table).await;
    let (sink, health) = open(audit_columns(&table)).await;

    // A COPY-sized batch with one CHECK violation.
    let mut records: Vec<Record> = (0..2000).map(audit_event).collect();
    records[1234] = with(&records[1234], |v| v["result"]["durationMs"] = json!(-5));
    let (o, _) = deliver(&sink, &records).await;
    assert_eq!(delivered(&o), 1999);
    let (kind, message) = rejected(&o[1234]).expect("record 1234 rejected");
    assert_eq!(kind, "postgres.sqlstate=23514");
    assert!(message.contains("violates check constraint"), "{message}");
    assert_eq!(count(&db, &table).await, 1999);

    // A small batch: NOT NULL on a mapped column, a value of the wrong type, a string too
    // long for varchar(64), and a record that is not JSON.
    let mut small: Vec<Record> = (5000..5020).map(audit_event).collect();
    small[3] = with(&small[3], |v| v["user"] = json!({}));
    small[8] = with(&small[8], |v| v["result"]["durationMs"] = json!("fast"));
    small[11] = with(&small[11], |v| v["operation"] = json!("x".repeat(65)));
    small[15].value = b"{not json".to_vec().into();
    let (o, _) = deliver(&sink, &small).await;
    assert_eq!(delivered(&o), 16);
    assert_eq!(rejected(&o[3]).unwrap().0, "postgres.sqlstate=23502");
    assert!(rejected(&o[3]).unwrap().1.contains("\"actor\""));
    assert_eq!(rejected(&o[8]).unwrap().0, "postgres.sqlstate=22P02");
    assert!(rejected(&o[8])
        .unwrap()
        .1
        .contains("invalid input syntax for type integer"));
    assert_eq!(rejected(&o[11]).unwrap().0, "postgres.sqlstate=22001");
    assert_eq!(rejected(&o[15]).unwrap().0, "postgres.record.invalid_json");
    assert_eq!(count(&db, &table).await, 1999 + 16);
    assert!(
        health.problem().is_none(),
        "row errors do not make the sink unhealthy"
    );
    drop_table(&table).await;
}

#[tokio::test]
async fn append_duplicates_are_rejected_as_unique_violations() {
    let table = unique("dupkey");
    let (sink, _) = open(json!({"url": url(), "table": table, "create_table": true})).await;
    let records = events(0..100);
    deliver(&sink, &records).await;
    let mixed: Vec<Record> = events(95..105);
    let (o, _) = deliver(&sink, &mixed).await;
    assert_eq!(delivered(&o), 5);
    for o in &o[..5] {
        assert_eq!(rejected(o).unwrap().0, "postgres.sqlstate=23505");
    }
    assert_eq!(count(&admin().await, &table).await, 105);
    drop_table(&table).await;
}

#[tokio::test]
async fn a_cut_connection_is_unavailable_then_writing_resumes() {
    let table = unique("cut");
    let app = unique("app");
    let db = admin().await;
    let (sink, health) = open(json!({
        "url": url_with_app(&app), "table": table, "create_table": true, "mode": "upsert",
    }))
    .await;
    let records = events(0..1000);
    let (o, _) = deliver(&sink, &records[..500]).await;
    assert_eq!(delivered(&o), 500);

    // Hold a lock so the next batch is in flight on the server, then cut its connection.
    let mut locker = admin().await;
    let tx = locker.transaction().await.unwrap();
    tx.batch_execute(&format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
        .await
        .unwrap();
    let rest = views(&records[500..]);
    let send = sink.send(&rest);
    let cut = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(terminate(&db, &app).await, 1);
    };
    let (result, ()) = tokio::join!(send, cut);
    match result {
        Err(SinkError::Unavailable { message, .. }) => {
            assert!(!message.is_empty());
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(
        health.problem().is_some(),
        "unhealthy while the connection is down"
    );
    tx.rollback().await.unwrap();

    // The host sends the same batch again: the sink reconnects by itself.
    let (o, _) = deliver(&sink, &records[500..]).await;
    assert_eq!(delivered(&o), 500);
    assert!(health.problem().is_none());
    assert_eq!(count(&db, &table).await, 1000);
    drop_table(&table).await;
}

#[tokio::test]
async fn connections_killed_during_a_long_run_lose_no_row() {
    let table = unique("kill");
    let app = unique("app");
    let db = admin().await;
    let (sink, _) = open(json!({
        "url": url_with_app(&app), "table": table, "create_table": true, "mode": "upsert",
    }))
    .await;
    let records = events(0..60_000);
    let done = std::sync::atomic::AtomicBool::new(false);
    let killer = async {
        let mut kills = 0;
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(150)).await;
            kills += terminate(&db, &app).await;
        }
        kills
    };
    let writer = async {
        let r = deliver_batches(&sink, &records, 1000).await;
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        r
    };
    let ((o, unavailable), kills) = tokio::join!(writer, killer);
    assert!(kills >= 3, "the connection was cut {kills} times");
    assert_eq!(delivered(&o), 60_000);
    assert_eq!(count(&db, &table).await, 60_000);
    eprintln!("{kills} connections killed, {unavailable} batches answered Unavailable");
    drop_table(&table).await;
}

#[tokio::test]
async fn unreachable_server_is_unavailable_and_unhealthy() {
    let mut s = sink(json!({
        "url": "postgres://postgres@127.0.0.1:1/postgres", "table": "t", "connect_timeout": "2s",
    }));
    let health = sluice_sdk::Health::new();
    let e = s
        .open(sluice_sdk::SinkContext {
            pipeline: "p".into(),
            health: health.clone(),
        })
        .await
        .unwrap_err();
    assert!(matches!(e, SinkError::Unavailable { .. }), "{e:?}");
    assert!(health.problem().is_some());
    let e = s.send(&views(&events(0..3))).await.unwrap_err();
    assert!(matches!(e, SinkError::Unavailable { .. }), "{e:?}");
}

#[tokio::test]
async fn a_missing_table_or_column_is_fatal() {
    let table = unique("missing");
    let mut s = sink(json!({"url": url(), "table": table}));
    let ctx = sluice_sdk::SinkContext {
        pipeline: "p".into(),
        health: sluice_sdk::Health::new(),
    };
    match s.open(ctx.clone()).await {
        Err(SinkError::Fatal(m)) => assert!(m.contains("does not exist"), "{m}"),
        other => panic!("{other:?}"),
    }
    let db = admin().await;
    db.batch_execute(&format!("CREATE TABLE {table} (id text)"))
        .await
        .unwrap();
    let mut s = sink(json!({"url": url(), "table": table, "columns": {"id": "a", "nope": "b"}}));
    match s.open(ctx).await {
        Err(SinkError::Fatal(m)) => assert!(m.contains("`nope`"), "{m}"),
        other => panic!("{other:?}"),
    }
    drop_table(&table).await;
}

#[tokio::test]
async fn tls_require_encrypts_and_verify_full_checks_the_host_name() {
    let db = admin().await;
    let ssl: String = db.query_one("SHOW ssl", &[]).await.unwrap().get(0);
    assert_eq!(ssl, "on", "the test PostgreSQL must have TLS enabled");
    let table = unique("tls");
    let app = unique("app");
    let (sink, _) = open(json!({
        "url": url_with_app(&app), "table": table, "create_table": true, "tls": "require",
    }))
    .await;
    let (o, _) = deliver(&sink, &events(0..10)).await;
    assert_eq!(delivered(&o), 10);
    let encrypted: bool = db
        .query_one(
            "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = $1",
            &[&app],
        )
        .await
        .unwrap()
        .get(0);
    assert!(encrypted);

    // The server's certificate is issued for `localhost`.
    let ca = "/etc/ssl/certs/ssl-cert-snakeoil.pem";
    let local = url().replace("127.0.0.1", "localhost");
    let (sink, _) = open(json!({
        "url": local, "table": table, "tls": {"mode": "verify-full", "ca_file": ca},
    }))
    .await;
    let (o, _) = deliver(&sink, &events(10..20)).await;
    assert_eq!(delivered(&o), 10);
    let mut wrong_name = common::sink(json!({
        "url": url(), "table": table, "tls": {"mode": "verify-full", "ca_file": ca},
    }));
    let e = wrong_name
        .open(sluice_sdk::SinkContext {
            pipeline: "p".into(),
            health: sluice_sdk::Health::new(),
        })
        .await
        .unwrap_err();
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
    drop_table(&table).await;
}

/// A PostgreSQL cluster of its own (initdb in a temp dir, a free port), so stopping the
/// server does not disturb the shared one.
struct PrivateCluster {
    bin: std::path::PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl PrivateCluster {
    fn start() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries under /usr/lib/postgresql")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .find(|p| p.join("initdb").exists())
            .expect("initdb under /usr/lib/postgresql/*/bin");
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // initdb refuses to run as root: the cluster belongs to the postgres user.
        let owner = Self::postgres_ids();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let c = PrivateCluster { bin, dir, port };
        let data = c.data();
        c.run(
            "initdb",
            &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync"],
        );
        c.pg_ctl_start();
        c
    }

    fn postgres_ids() -> Option<(u32, u32)> {
        let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
        let line = passwd.lines().find(|l| l.starts_with("postgres:"))?;
        let f: Vec<&str> = line.split(':').collect();
        Some((f[2].parse().ok()?, f[3].parse().ok()?))
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// The tool, run as the postgres user when this test runs as root.
    fn command(&self, tool: &str) -> std::process::Command {
        use std::os::unix::fs::MetadataExt;
        let exe = self.bin.join(tool);
        let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
        if root {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            std::process::Command::new(exe)
        }
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let out = self.command(tool).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn pg_ctl_start(&self) {
        let data = self.data();
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log").display().to_string();
        self.run(
            "pg_ctl",
            &["-D", &data, "-o", &opts, "-l", &log, "-w", "start"],
        );
    }

    fn stop(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self
            .command("pg_ctl")
            .args(["-D", &data, "-m", "immediate", "-w", "stop"])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_stopped_and_restarted_mid_run_loses_no_row() {
    let cluster = tokio::task::spawn_blocking(PrivateCluster::start)
        .await
        .unwrap();
    let (sink, health) = open(json!({
        "url": cluster.url(), "table": "audit", "create_table": true, "mode": "upsert",
        "connect_timeout": "1s",
    }))
    .await;
    let records = events(0..40_000);
    let mut unavailable_total = 0;
    let mut was_unhealthy = false;
    for (i, chunk) in records.chunks(1000).enumerate() {
        if i == 15 {
            let c = &cluster;
            tokio::task::block_in_place(|| c.stop());
            let e = sink.send(&views(chunk)).await.unwrap_err();
            assert!(matches!(e, SinkError::Unavailable { .. }), "{e:?}");
            was_unhealthy = health.problem().is_some();
            tokio::time::sleep(Duration::from_millis(500)).await;
            let e = sink.send(&views(chunk)).await.unwrap_err();
            assert!(
                matches!(e, SinkError::Unavailable { .. }),
                "still down: {e:?}"
            );
            tokio::task::block_in_place(|| c.pg_ctl_start());
        }
        let (o, u) = deliver(&sink, chunk).await;
        assert_eq!(delivered(&o), chunk.len());
        unavailable_total += u;
    }
    assert!(was_unhealthy);
    assert!(health.problem().is_none());
    let (client, conn) = tokio_postgres::connect(&cluster.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    assert_eq!(count(&client, "audit").await, 40_000);
    eprintln!(
        "server restarted mid-run; {unavailable_total} more Unavailable answers while it came back"
    );
}

#[tokio::test]
async fn append_copy_writes_typed_values_and_leaves_unusual_ones_to_postgres() {
    let table = unique("typed");
    let db = admin().await;
    db.batch_execute(&format!(
        "CREATE TABLE {table} (id uuid PRIMARY KEY, n integer, big bigint, x float8, \
         ok boolean, at timestamptz, doc jsonb, label varchar(8))"
    ))
    .await
    .unwrap();
    let (sink, _) = open(json!({"url": url(), "table": table, "columns": {
        "id": "id", "n": "n", "big": "big", "x": "x", "ok": "ok", "at": "at", "doc": "doc",
        "label": "label"}}))
    .await;
    let rec = |i: u32, v: Value| {
        let mut v = v;
        v["id"] = json!(format!("00000000-0000-4000-8000-{i:012}"));
        Record::new(
            serde_json::to_vec(&v).unwrap(),
            sluice_sdk::Origin::new("t".into(), 0, i as i64),
        )
    };
    // Strict forms: the sink encodes them itself (binary COPY straight into the table).
    let strict: Vec<Record> = (0..200)
        .map(|i| {
            rec(
                i,
                json!({"n": i, "big": 1_i64 << 40, "x": 0.25, "ok": i % 2 == 0,
                "at": "2024-05-01T12:00:00.5+02:00", "doc": {"i": i}, "label": "abc"}),
            )
        })
        .collect();
    let (o, _) = deliver(&sink, &strict).await;
    assert_eq!(delivered(&o), 200);
    // Forms only PostgreSQL's parser reads, and one bad value: the batch goes through the
    // staging table and PostgreSQL names the bad row.
    let mut loose: Vec<Record> = (200..400)
        .map(|i| {
            rec(
                i,
                json!({"n": format!(" {i} "), "ok": "yes", "at": "May 1 2024 10:00:00.5 UTC",
                "x": "Infinity", "doc": "a string", "label": "abc"}),
            )
        })
        .collect();
    loose[77] = rec(277, json!({"n": "fast"}));
    let (o, _) = deliver(&sink, &loose).await;
    assert_eq!(delivered(&o), 199);
    assert_eq!(rejected(&o[77]).unwrap().0, "postgres.sqlstate=22P02");

    assert_eq!(count(&db, &table).await, 399);
    let same: i64 = db
        .query_one(
            &format!(
                "SELECT count(*) FROM {table} WHERE at = '2024-05-01T10:00:00.5Z' AND label = 'abc' \
                 AND ((n < 200 AND big = 1099511627776 AND x = 0.25 AND ok = (n % 2 = 0) \
                       AND (doc->>'i')::int = n) \
                   OR (n >= 200 AND ok AND x = 'Infinity' AND doc = '\"a string\"'::jsonb))"
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(same, 399);
    drop_table(&table).await;
}

#[tokio::test]
async fn upsert_records_without_their_key_are_rejected_not_acknowledged_unwritten() {
    let table = unique("nokey");
    let db = admin().await;
    // A nullable key column: PostgreSQL would take any number of NULL keys.
    db.batch_execute(&format!(
        "CREATE TABLE {table} (id text UNIQUE, kind text, body jsonb)"
    ))
    .await
    .unwrap();
    let (sink, _) = open(json!({
        "url": url(), "table": table, "mode": "upsert", "key": ["id"],
        "columns": {"id": "id", "kind": "kind", "body": "$value"},
    }))
    .await;
    let record = |v: Value, offset: i64| {
        Record::new(
            serde_json::to_vec(&v).unwrap(),
            sluice_sdk::Origin::new("t".into(), 0, offset),
        )
    };
    let batch = vec![
        record(json!({"kind": "first without id"}), 0),
        record(json!({"id": "a-1", "kind": "normal"}), 1),
        record(json!({"id": null, "kind": "second without id"}), 2),
    ];
    let (o, _) = deliver(&sink, &batch).await;
    assert_eq!(o[1], Outcome::Delivered);
    for i in [0, 2] {
        let (kind, message) = rejected(&o[i]).unwrap_or_else(|| panic!("{i}: {:?}", o[i]));
        assert_eq!(kind, "postgres.missing_key");
        assert!(message.contains("`id`"), "{message}");
    }
    assert_eq!(count(&db, &table).await, 1);
    let kind: String = db
        .query_one(&format!("SELECT kind FROM {table} WHERE id = 'a-1'"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(kind, "normal");
    drop_table(&table).await;
}

#[tokio::test]
async fn tls_prefer_is_the_default_and_falls_back_only_when_the_server_has_no_tls() {
    // The shared server offers TLS: the default encrypts.
    let table = unique("prefer");
    let app = unique("app");
    let (sink, _) = open(json!({
        "url": url_with_app(&app), "table": table, "create_table": true,
    }))
    .await;
    let (o, _) = deliver(&sink, &events(0..5)).await;
    assert_eq!(delivered(&o), 5);
    let db = admin().await;
    let encrypted: bool = db
        .query_one(
            "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = $1",
            &[&app],
        )
        .await
        .unwrap()
        .get(0);
    assert!(encrypted, "tls: prefer encrypts when the server offers TLS");
    drop(sink);
    drop_table(&table).await;

    // A cluster without TLS: the default connects in plaintext, `require` refuses clearly.
    let cluster = tokio::task::spawn_blocking(PrivateCluster::start)
        .await
        .unwrap();
    let (sink, _) = open(json!({
        "url": cluster.url(), "table": "plain", "create_table": true,
    }))
    .await;
    let (o, _) = deliver(&sink, &events(0..5)).await;
    assert_eq!(delivered(&o), 5);
    let mut strict = common::sink(json!({
        "url": cluster.url(), "table": "plain", "tls": "require",
    }));
    let e = strict
        .open(sluice_sdk::SinkContext {
            pipeline: "p".into(),
            health: sluice_sdk::Health::new(),
        })
        .await
        .unwrap_err();
    match &e {
        SinkError::Fatal(m) => assert!(
            m.contains("does not offer TLS") && m.contains("tls: require"),
            "{m}"
        ),
        other => panic!("expected a fatal error, got {other:?}"),
    }
    tokio::task::spawn_blocking(move || drop(cluster))
        .await
        .unwrap();
}
