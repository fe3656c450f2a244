//! The `http_server` source in the real binary: events posted over HTTP reach the sink,
//! counted per tenant; a sink that cannot deliver turns into 503 once the write-ahead log is
//! above its high-water mark; `kill -9` under load loses no event that was answered 2xx.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::common::*;

const TOKEN_A: &str = "e2e-token-a";
const TOKEN_B: &str = "e2e-token-b";

fn config(w: &Workdir, port: u16, admin: u16, sink: &str, extra: &str) -> std::path::PathBuf {
    w.config(
        "ingest.yaml",
        &format!(
            r#"
host: {{ data_dir: "{{dir}}/data", admin: {{ listen: "127.0.0.1:{admin}" }} }}
pipelines:
  - name: ingest
    source:
      type: http_server
      listen: "127.0.0.1:{port}"
      auth: {{ tokens: {{ tenant-a: "${{TOKEN_A}}", tenant-b: "${{TOKEN_B}}" }} }}
{extra}
    sink: {sink}
    batch: {{ max_events: 200, linger: 20ms }}
"#
        ),
    )
}

fn start(w: &Workdir, cfg: &std::path::Path, port: u16) -> Sluice {
    let s = w.start_with(cfg, &[("TOKEN_A", TOKEN_A), ("TOKEN_B", TOKEN_B)]);
    wait_for(Duration::from_secs(30), "the http_server listener", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    s
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

async fn post(
    c: &reqwest::Client,
    url: &str,
    token: &str,
    body: String,
) -> Result<(u16, Option<String>), reqwest::Error> {
    let r = c
        .post(url)
        .bearer_auth(token)
        .body(body)
        .timeout(Duration::from_secs(10))
        .send()
        .await?;
    let status = r.status().as_u16();
    let ra = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let _ = r.bytes().await?;
    Ok((status, ra))
}

#[test]
fn posted_events_reach_the_sink_and_are_counted_per_tenant() {
    let w = Workdir::new();
    let (port, admin) = (free_port(), free_port());
    let sink = format!(
        r#"{{ type: file, path: "{}" }}"#,
        w.join("out.jsonl").display()
    );
    let cfg = config(&w, port, admin, &sink, "");
    let _s = start(&w, &cfg, port);
    let base = format!("http://127.0.0.1:{port}");
    runtime().block_on(async {
        let c = reqwest::Client::new();
        let one = json!({"eventType": "login", "entityId": "u-1"}).to_string();
        assert_eq!(
            post(&c, &format!("{base}/events"), TOKEN_A, one)
                .await
                .unwrap()
                .0,
            200
        );
        let bulk =
            json!({"events": [{"entityId": "u-2"}, {"tenantId": "tenant-a", "entityId": "u-3"}]});
        assert_eq!(
            post(
                &c,
                &format!("{base}/events/bulk"),
                TOKEN_B,
                bulk.to_string()
            )
            .await
            .unwrap()
            .0,
            207
        );
        assert_eq!(
            post(&c, &format!("{base}/events"), "wrong", "{}".into())
                .await
                .unwrap()
                .0,
            401
        );
    });
    let out = w.join("out.jsonl");
    wait_for(
        Duration::from_secs(20),
        "two records in the file sink",
        || (count_lines(&out) >= 2).then_some(()),
    );
    let got = read_jsonl(&out);
    assert_eq!(
        got,
        vec![
            json!({"tenantId": "tenant-a", "eventType": "login", "entityId": "u-1"}),
            json!({"tenantId": "tenant-b", "entityId": "u-2"}),
        ]
    );
    let (_, metrics) = http_get(&format!("http://127.0.0.1:{admin}/metrics")).expect("metrics");
    let count = |tenant: &str, outcome: &str| -> Option<f64> {
        metrics
            .lines()
            .filter(|l| l.starts_with("sluice_http_events_total{"))
            .find(|l| {
                l.contains("pipeline=\"ingest\"")
                    && l.contains(&format!("tenant=\"{tenant}\""))
                    && l.contains(&format!("outcome=\"{outcome}\""))
            })
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    };
    assert_eq!(count("tenant-a", "accepted"), Some(1.0), "{metrics}");
    assert_eq!(count("tenant-b", "accepted"), Some(1.0));
    assert_eq!(count("tenant-b", "forbidden"), Some(1.0));
    assert_eq!(count("unknown", "unauthorized"), Some(1.0));
    // Tokens never reach the logs.
    assert!(!std::fs::read_to_string(&_s.log).unwrap().contains(TOKEN_A));
}

#[test]
fn a_sink_that_cannot_deliver_turns_into_503_after_the_high_water_mark() {
    let w = Workdir::new();
    let (port, admin, dead) = (free_port(), free_port(), free_port());
    let sink =
        format!(r#"{{ type: splunk_hec, endpoint: "http://127.0.0.1:{dead}", token: "t" }}"#);
    let cfg = config(
        &w,
        port,
        admin,
        &sink,
        "      high_water_bytes: 20KiB\n      retry_after: 3s",
    );
    let s = start(&w, &cfg, port);
    let url = format!("http://127.0.0.1:{port}/events/bulk");
    let (accepted, refused) = runtime().block_on(async {
        let c = reqwest::Client::new();
        let batch = json!({"events": (0..20).map(|i| json!({"n": i, "pad": "z".repeat(200)})).collect::<Vec<_>>()}).to_string();
        let mut accepted = 0;
        for _ in 0..100 {
            match post(&c, &url, TOKEN_A, batch.clone()).await.unwrap() {
                (200, _) => accepted += 1,
                (503, ra) => return (accepted, ra),
                (other, _) => panic!("unexpected {other}"),
            }
        }
        panic!("no 503 after {accepted} accepted requests");
    });
    assert_eq!(refused.as_deref(), Some("3"));
    // About 20 KiB of 20 events of ~250 bytes: four or five requests got in.
    assert!((4..=6).contains(&accepted), "{accepted}");
    let health = http_get(&format!("http://127.0.0.1:{admin}/health")).expect("health");
    assert_eq!(health.0, 503, "{}", health.1);
    drop(s);
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_event() {
    let w = Workdir::new();
    let (port, admin) = (free_port(), free_port());
    let sink = format!(
        r#"{{ type: file, path: "{}" }}"#,
        w.join("out.jsonl").display()
    );
    let cfg = config(&w, port, admin, &sink, "");
    let mut s = start(&w, &cfg, port);
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let sent: Arc<Mutex<HashSet<String>>> = Arc::default();
    let rt = runtime();
    let url = format!("http://127.0.0.1:{port}/events");
    let stop_at = Instant::now() + Duration::from_secs(3);
    let mut clients = Vec::new();
    for c in 0..8 {
        let (acked, sent, url) = (acked.clone(), sent.clone(), url.clone());
        clients.push(rt.spawn(async move {
            let client = reqwest::Client::new();
            for n in 0.. {
                if Instant::now() > stop_at {
                    return;
                }
                // Half single events, half small bulks.
                let ids: Vec<String> = (0..1 + (n % 2) * 4)
                    .map(|k| format!("{c}-{n}-{k}"))
                    .collect();
                let body = if ids.len() == 1 {
                    json!({"id": ids[0]}).to_string()
                } else {
                    json!(ids.iter().map(|id| json!({"id": id})).collect::<Vec<_>>()).to_string()
                };
                sent.lock().extend(ids.iter().cloned());
                match post(&client, &url, TOKEN_A, body).await {
                    Ok((200, _)) => acked.lock().extend(ids),
                    Ok((s, _)) => panic!("unexpected {s}"),
                    // Killed: refused or cut connections until the restart.
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(1200));
    s.kill9();
    let acked_at_kill = acked.lock().len();
    assert!(
        acked_at_kill > 100,
        "only {acked_at_kill} events acknowledged before the kill"
    );
    let _again = start(&w, &cfg, port);
    for c in clients {
        rt.block_on(c).expect("client task");
    }
    let acked = acked.lock().clone();
    let sent = sent.lock().clone();
    let out = w.join("out.jsonl");
    let delivered = || -> HashSet<String> {
        read_jsonl(&out)
            .iter()
            .map(|v: &Value| v["id"].as_str().expect("id").to_string())
            .collect()
    };
    wait_for(
        Duration::from_secs(60),
        "every acknowledged event delivered",
        || acked.is_subset(&delivered()).then_some(()),
    );
    let delivered = delivered();
    assert!(
        delivered.is_subset(&sent),
        "the sink holds events nobody sent"
    );
    assert!(
        acked.len() > acked_at_kill,
        "no event acknowledged after the restart"
    );
    // Every delivered record is whole JSON with the token's tenant stamped.
    assert!(read_jsonl(&out).iter().all(|v| v["tenantId"] == "tenant-a"));
}

#[test]
fn a_corrupt_log_entry_stops_the_pipeline_naming_the_segment_and_offset() {
    let w = Workdir::new();
    let (port, admin, dead) = (free_port(), free_port(), free_port());
    // A sink that cannot deliver: nothing is committed, the whole log is checked on restart.
    let sink =
        format!(r#"{{ type: splunk_hec, endpoint: "http://127.0.0.1:{dead}", token: "t" }}"#);
    let cfg = config(&w, port, admin, &sink, "");
    let mut s = start(&w, &cfg, port);
    let url = format!("http://127.0.0.1:{port}/events");
    runtime().block_on(async {
        let c = reqwest::Client::new();
        for i in 0..3 {
            let body = json!({"i": i}).to_string();
            assert_eq!(post(&c, &url, TOKEN_A, body).await.unwrap().0, 200);
        }
    });
    s.kill9();
    let seg = w.join("data/wal/ingest/00000000000000000000.wal");
    let mut bytes = std::fs::read(&seg).expect("the segment");
    // Three entries of the same length (a 16-byte header and `{"tenantId":"tenant-a","i":N}`):
    // flip a bit in the second one's payload.
    assert_eq!(bytes.len() % 3, 0);
    let second = bytes.len() / 3;
    bytes[second + 20] ^= 0x01;
    std::fs::write(&seg, &bytes).unwrap();

    let s = w.start_with(&cfg, &[("TOKEN_A", TOKEN_A), ("TOKEN_B", TOKEN_B)]);
    let line = wait_for(Duration::from_secs(30), "the corruption error", || {
        s.logs()
            .lines()
            .find(|l| l.contains("is corrupt at byte"))
            .map(str::to_string)
    });
    assert!(line.contains(&seg.display().to_string()), "{line}");
    assert!(
        line.contains(&format!(
            "at byte {second} (log offset {second}): checksum mismatch"
        )),
        "{line}"
    );
    // Nothing listens on a corrupt log: no event can be accepted onto it.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    let health = http_get(&format!("http://127.0.0.1:{admin}/health")).expect("health");
    assert_eq!(health.0, 503, "{}", health.1);
}
