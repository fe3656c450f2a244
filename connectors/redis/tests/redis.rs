//! The `redis` sink against real Redis servers: the shared one of this machine (each test
//! under its own key prefix) and, for the restart test, a private one on a free port.

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::time::Duration;

use futures::StreamExt;
use redis::AsyncCommands;
use serde_json::{json, Value};
use sluice_redis::{RedisConfig, RedisSink};
use sluice_sdk::{views, Health, Origin, Outcome, Record, Sink, SinkContext, SinkError};

fn url() -> String {
    sluice_testkit::env::redis_url()
}

fn prefix(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "sluicetest:{name}:{}:{}",
        std::process::id(),
        nanos % 1_000_000_000
    )
}

async fn client(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("Redis must run at {url} for these tests: {e}"))
}

async fn open(cfg: Value) -> (RedisSink, Health) {
    let cfg: RedisConfig = sluice_sdk::config::from_value(cfg).unwrap();
    let mut sink = RedisSink::new(cfg).unwrap();
    let health = Health::new();
    sink.open(SinkContext {
        pipeline: "test".into(),
        health: health.clone(),
    })
    .await
    .unwrap();
    (sink, health)
}

fn event(seq: u64) -> Record {
    let v = json!({
        "event_id": format!("evt-{seq:08}"),
        "event_type": if seq.is_multiple_of(2) { "control.evaluated" } else { "gap.identified" },
        "tenant_id": format!("tenant-{}", seq % 5),
        "severity": seq % 4,
        "ok": seq.is_multiple_of(3),
        "actor": {"upn": format!("u{}@example.com", seq % 11)},
        "note": null,
    });
    Record::new(
        serde_json::to_vec(&v).unwrap(),
        Origin::new("audit".into(), 0, seq as i64),
    )
}

fn events(range: std::ops::Range<u64>) -> Vec<Record> {
    range.map(event).collect()
}

/// Sends like the host: the same batch again after `Unavailable`.
async fn deliver(sink: &RedisSink, records: &[Record]) -> (Vec<Outcome>, usize) {
    let mut unavailable = 0;
    let batch = views(records);
    loop {
        match sink.send(&batch).await {
            Ok(o) => {
                assert_eq!(o.len(), records.len());
                return (o, unavailable);
            }
            Err(SinkError::Unavailable { .. }) => {
                unavailable += 1;
                assert!(unavailable < 600, "Redis never came back");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("unexpected batch error: {e}"),
        }
    }
}

fn delivered(o: &[Outcome]) -> usize {
    o.iter().filter(|o| **o == Outcome::Delivered).count()
}

/// Every entry of a stream as field -> value maps.
async fn read_stream(
    c: &mut redis::aio::MultiplexedConnection,
    key: &str,
) -> Vec<HashMap<String, String>> {
    let reply: redis::streams::StreamRangeReply = c.xrange_all(key).await.unwrap();
    reply
        .ids
        .into_iter()
        .map(|id| {
            id.map
                .into_iter()
                .map(|(k, v)| (k, redis::from_redis_value::<String>(&v).unwrap()))
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn hundred_thousand_records_become_stream_entries() {
    let p = prefix("bulk");
    let (sink, health) = open(json!({
        "url": url(), "mode": "stream", "key": format!("{p}:{{{{ tenant_id }}}}"),
        "fields": ["event_id", "event_type", "severity", "ok", "actor.upn", "note"],
        "payload_field": "payload",
    }))
    .await;
    let records = events(0..100_000);
    let mut total = 0;
    for chunk in records.chunks(2000) {
        let (o, _) = deliver(&sink, chunk).await;
        total += delivered(&o);
    }
    assert_eq!(total, 100_000);
    assert!(health.problem().is_none());

    let mut c = client(&url()).await;
    let mut seen = HashSet::new();
    for t in 0..5 {
        let key = format!("{p}:tenant-{t}");
        let entries = read_stream(&mut c, &key).await;
        assert_eq!(entries.len(), 20_000, "{key}");
        for e in entries {
            let id = &e["event_id"];
            let seq: u64 = id[4..].parse().unwrap();
            assert_eq!(seq % 5, t);
            assert_eq!(
                e["event_type"],
                if seq.is_multiple_of(2) {
                    "control.evaluated"
                } else {
                    "gap.identified"
                }
            );
            assert_eq!(e["severity"], (seq % 4).to_string());
            assert_eq!(e["ok"], seq.is_multiple_of(3).to_string());
            assert_eq!(e["actor.upn"], format!("u{}@example.com", seq % 11));
            assert!(!e.contains_key("note"), "null fields are left out");
            let payload: Value = serde_json::from_str(&e["payload"]).unwrap();
            assert_eq!(payload["event_id"], *id);
            assert_eq!(e.len(), 6);
            seen.insert(seq);
        }
        let _: () = c.del(&key).await.unwrap();
    }
    assert_eq!(seen.len(), 100_000);
}

#[tokio::test]
async fn stream_maxlen_trims_approximately() {
    let p = prefix("maxlen");
    let key = format!("{p}:s");
    let (sink, _) = open(json!({"url": url(), "mode": "stream", "key": key, "maxlen": 1000})).await;
    for chunk in events(0..10_000).chunks(500) {
        deliver(&sink, chunk).await;
    }
    let mut c = client(&url()).await;
    let len: u64 = c.xlen(&key).await.unwrap();
    assert!((1000..2000).contains(&len), "XLEN {len}");
    // Only the payload field by default, and the newest entry is the last record.
    let last: redis::streams::StreamRangeReply =
        c.xrevrange_count(&key, "+", "-", 1).await.unwrap();
    let fields = &last.ids[0].map;
    assert_eq!(fields.len(), 1);
    let payload: String = redis::from_redis_value(&fields["payload"]).unwrap();
    assert_eq!(payload.as_bytes(), &event(9_999).value[..]);
    let _: () = c.del(&key).await.unwrap();
}

#[tokio::test]
async fn hash_list_set_and_publish_modes() {
    let p = prefix("modes");
    let mut c = client(&url()).await;
    let records = events(0..50);

    // hash: one hash per event with every top-level field.
    let (sink, _) = open(json!({"url": url(), "mode": "hash",
        "key": format!("{p}:h:{{{{ event_id }}}}"), "fields": ["*"], "ttl": "1h"}))
    .await;
    assert_eq!(delivered(&deliver(&sink, &records).await.0), 50);
    let h: HashMap<String, String> = c.hgetall(format!("{p}:h:evt-00000007")).await.unwrap();
    assert_eq!(h["event_id"], "evt-00000007");
    assert_eq!(h["severity"], "3");
    assert_eq!(h["ok"], "false");
    assert_eq!(h["actor"], r#"{"upn":"u7@example.com"}"#);
    assert_eq!(h.len(), 6, "{h:?}");
    let ttl: i64 = c.pttl(format!("{p}:h:evt-00000007")).await.unwrap();
    assert!(ttl > 3_500_000 && ttl <= 3_600_000, "{ttl}");

    // list: the records in order, byte for byte.
    let (sink, _) = open(json!({"url": url(), "mode": "list", "key": format!("{p}:l")})).await;
    assert_eq!(delivered(&deliver(&sink, &records).await.0), 50);
    let items: Vec<Vec<u8>> = c.lrange(format!("{p}:l"), 0, -1).await.unwrap();
    let want: Vec<Vec<u8>> = records.iter().map(|r| r.value.to_vec()).collect();
    assert_eq!(items, want);

    // set with a TTL.
    let (sink, _) = open(json!({"url": url(), "mode": "set",
        "key": format!("{p}:k:{{{{ event_id }}}}"), "ttl": "90s"}))
    .await;
    assert_eq!(delivered(&deliver(&sink, &records).await.0), 50);
    let v: Vec<u8> = c.get(format!("{p}:k:evt-00000042")).await.unwrap();
    assert_eq!(v, records[42].value.to_vec());
    let ttl: i64 = c.pttl(format!("{p}:k:evt-00000042")).await.unwrap();
    assert!(ttl > 80_000 && ttl <= 90_000, "{ttl}");

    // publish: a subscriber gets every record.
    let channel = format!("{p}:ch");
    let mut sub = redis::Client::open(url())
        .unwrap()
        .get_async_pubsub()
        .await
        .unwrap();
    sub.subscribe(&channel).await.unwrap();
    let (sink, _) = open(json!({"url": url(), "mode": "publish", "key": channel})).await;
    assert_eq!(delivered(&deliver(&sink, &records).await.0), 50);
    let mut stream = sub.on_message();
    let mut got = Vec::new();
    while got.len() < 50 {
        let m = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("published messages arrive")
            .expect("subscription open");
        got.push(m.get_payload_bytes().to_vec());
    }
    assert_eq!(got, want);
    drop(stream);

    let keys: Vec<String> = c.keys(format!("{p}:*")).await.unwrap();
    let _: () = c.del(keys).await.unwrap();
}

#[tokio::test]
async fn a_key_of_the_wrong_type_rejects_only_its_records() {
    let p = prefix("wrongtype");
    let mut c = client(&url()).await;
    let _: () = c.set(format!("{p}:tenant-2"), "a string").await.unwrap();
    let (sink, _) = open(json!({"url": url(), "mode": "stream",
        "key": format!("{p}:{{{{ tenant_id }}}}")}))
    .await;
    let mut records = events(0..20);
    records[5].value = br#"{"event_id":"no-tenant"}"#.to_vec().into();
    let (o, _) = deliver(&sink, &records).await;
    for (i, o) in o.iter().enumerate() {
        match o {
            Outcome::Reject(r) if i == 5 => assert_eq!(r.kind, "redis.key_template"),
            Outcome::Reject(r) if i % 5 == 2 => {
                assert_eq!(r.kind, "redis.WRONGTYPE");
                assert!(r.message.contains("wrong kind of value"), "{}", r.message);
            }
            Outcome::Delivered if i != 5 && i % 5 != 2 => {}
            other => panic!("record {i}: {other:?}"),
        }
    }
    let keys: Vec<String> = c.keys(format!("{p}:*")).await.unwrap();
    let _: () = c.del(keys).await.unwrap();
}

#[tokio::test]
async fn unreachable_redis_is_unavailable_and_unhealthy() {
    let cfg: RedisConfig = sluice_sdk::config::from_value(json!({
        "url": "redis://127.0.0.1:1", "mode": "list", "key": "k", "connect_timeout": "1s"}))
    .unwrap();
    let mut sink = RedisSink::new(cfg).unwrap();
    let health = Health::new();
    let e = sink
        .open(SinkContext {
            pipeline: "p".into(),
            health: health.clone(),
        })
        .await
        .unwrap_err();
    assert!(matches!(e, SinkError::Unavailable { .. }), "{e:?}");
    assert!(health.problem().is_some());
    let e = sink.send(&views(&events(0..2))).await.unwrap_err();
    assert!(matches!(e, SinkError::Unavailable { .. }), "{e:?}");
}

/// A redis-server of its own, with every write fsynced to its append-only file so a crash
/// loses nothing that was acknowledged.
struct PrivateRedis {
    port: u16,
    dir: tempfile::TempDir,
}

impl PrivateRedis {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let r = PrivateRedis {
            port,
            dir: tempfile::tempdir().unwrap(),
        };
        r.launch();
        r
    }

    fn launch(&self) {
        let status = Command::new("redis-server")
            .args(["--daemonize", "yes", "--bind", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
            ])
            .arg(self.dir.path())
            .arg("--pidfile")
            .arg(self.dir.path().join("redis.pid"))
            .arg("--logfile")
            .arg(self.dir.path().join("redis.log"))
            .status()
            .expect("redis-server must be installed for this test");
        assert!(status.success());
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("private redis-server did not start on port {}", self.port);
    }

    fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.dir.path().join("redis.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// SIGKILL: a crash, not a clean shutdown.
    fn crash(&self) {
        let pid = self.pid().expect("pid file");
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
                let _ = std::fs::remove_file(self.dir.path().join("redis.pid"));
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server {pid} did not stop");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

#[tokio::test]
async fn redis_crash_and_restart_mid_run_loses_no_entry() {
    let redis = PrivateRedis::start();
    let (sink, health) = open(json!({"url": redis.url(), "mode": "stream", "key": "audit",
        "fields": ["event_id"], "request_timeout": "2s"}))
    .await;
    let records = events(0..30_000);
    let mut unavailable = 0;
    let mut saw_unhealthy = false;
    for (i, chunk) in records.chunks(500).enumerate() {
        if i == 20 {
            redis.crash();
            // Let a few batches fail while the server is down, then bring it back.
            let restart = tokio::task::spawn_blocking({
                let dir = redis.dir.path().to_path_buf();
                let port = redis.port;
                move || {
                    std::thread::sleep(Duration::from_millis(700));
                    (dir, port)
                }
            });
            let e = sink.send(&views(chunk)).await.unwrap_err();
            assert!(matches!(e, SinkError::Unavailable { .. }), "{e:?}");
            saw_unhealthy = health.problem().is_some();
            restart.await.unwrap();
            redis.launch();
        }
        let (o, u) = deliver(&sink, chunk).await;
        assert_eq!(delivered(&o), chunk.len());
        unavailable += u;
    }
    assert!(saw_unhealthy, "unhealthy while Redis was down");
    assert!(health.problem().is_none(), "healthy again");

    let mut c = client(&redis.url()).await;
    let entries = read_stream(&mut c, "audit").await;
    let ids: HashSet<&str> = entries.iter().map(|e| e["event_id"].as_str()).collect();
    assert_eq!(ids.len(), 30_000, "every record is in the stream");
    // A batch cut while in flight may be written twice (at least once), never more.
    assert!(
        entries.len() - ids.len() <= 500,
        "{} duplicates",
        entries.len() - ids.len()
    );
    eprintln!(
        "{} entries for 30000 records after a crash; {unavailable} batches retried",
        entries.len()
    );
}
