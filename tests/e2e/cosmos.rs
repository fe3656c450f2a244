//! `cosmos_change_feed` with the real binary: cosmos -> file against the in-process Cosmos
//! emulator (no Cosmos DB runs here), key taken from the environment.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use sluice_testkit::cosmos::{CosmosEmulator, CosmosOptions};

use crate::common::*;

/// A valid base64 key the emulator does not accept.
const WRONG_KEY: &str = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5LXdyb25nLWtleQ==";

/// The emulator runs on its own runtime threads while the test drives the binary.
fn emulator() -> (tokio::runtime::Runtime, CosmosEmulator) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let emu = rt.block_on(CosmosEmulator::with_options(CosmosOptions {
        pkranges_page_size: 3,
        ..CosmosOptions::default()
    }));
    (rt, emu)
}

fn write(emu: &CosmosEmulator, from: usize, n: usize) {
    for i in from..from + n {
        emu.upsert(json!({
            "id": format!("ctl-{i:05}"),
            "pk": format!("tenant-{}", i % 37),
            "type": "control",
            "status": "implemented",
        }));
    }
}

fn pipeline(w: &Workdir, emu: &CosmosEmulator, admin: &str) -> PathBuf {
    w.config(
        "cosmos.yaml",
        &format!(
            r#"host:
  data_dir: "{{dir}}/data"
  admin: {{ listen: "{admin}" }}
pipelines:
  - name: grc
    source:
      type: cosmos_change_feed
      endpoint: "{endpoint}"
      key: "${{COSMOS_KEY}}"
      database: grc
      container: controls
      poll_interval: 50ms
    sink: {{ type: file, path: "{{dir}}/out.jsonl" }}
    batch: {{ max_events: 100, linger: 20ms }}
    commit_interval: 100ms
"#,
            endpoint = emu.endpoint(),
        ),
    )
}

/// `sluice offsets --json <config>` (the config reads the key from the environment).
fn offsets(w: &Workdir, cfg: &std::path::Path) -> serde_json::Value {
    let out = std::process::Command::new(sluice_bin())
        .args(["offsets", "--json"])
        .arg(cfg)
        .current_dir(w.path())
        .env("COSMOS_KEY", WRONG_KEY)
        .output()
        .expect("run sluice offsets");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "sluice offsets failed: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("offsets --json: {e}: {stdout}"))
}

/// How many times each document id was written to the file.
fn id_counts(path: &std::path::Path) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for v in read_jsonl(path) {
        let id = v["id"].as_str().expect("id").to_string();
        *m.entry(id).or_default() += 1;
    }
    m
}

#[test]
fn restart_after_delivery_delivers_nothing_again_and_picks_up_new_documents() {
    let (_rt, emu) = emulator();
    write(&emu, 0, 1_500);
    let w = Workdir::new();
    let admin = format!("127.0.0.1:{}", free_port());
    let cfg = pipeline(&w, &emu, &admin);
    let out = w.join("out.jsonl");

    let mut s = w.start_with(&cfg, &[("COSMOS_KEY", emu.key())]);
    wait_for(
        Duration::from_secs(60),
        "1,500 documents in the file",
        || (count_lines(&out) >= 1_500).then_some(()),
    );
    s.sigterm();
    let status = s.wait(Duration::from_secs(30));
    assert!(status.success(), "exit {status:?}: {}", s.logs());
    let counts = id_counts(&out);
    assert_eq!(counts.len(), 1_500);
    assert!(
        counts.values().all(|&n| n == 1),
        "a document was written twice"
    );

    // One saved position per partition key range, visible to `sluice offsets`.
    let v = offsets(&w, &cfg);
    let text = v.to_string();
    let positions = v["grc"]["positions"].as_object().expect("positions");
    assert_eq!(positions.len(), 4, "{text}");
    assert!(positions
        .values()
        .all(|p| p.as_str().unwrap().contains("etag")));

    // Written while sluice is down.
    write(&emu, 1_500, 200);
    let mut s = w.start_with(&cfg, &[("COSMOS_KEY", emu.key())]);
    wait_for(Duration::from_secs(60), "the 200 new documents", || {
        (count_lines(&out) >= 1_700).then_some(())
    });
    // And one written while it runs; then give it time to (wrongly) repeat anything.
    write(&emu, 1_700, 1);
    wait_for(Duration::from_secs(30), "the live document", || {
        (count_lines(&out) >= 1_701).then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    s.sigterm();
    let status = s.wait(Duration::from_secs(30));
    assert!(status.success(), "exit {status:?}: {}", s.logs());
    let counts = id_counts(&out);
    assert_eq!(counts.len(), 1_701);
    let repeated: Vec<_> = counts.iter().filter(|(_, &n)| n > 1).collect();
    assert!(repeated.is_empty(), "delivered again: {repeated:?}");
}

#[test]
fn a_wrong_key_is_a_clear_error_and_saves_no_offsets() {
    let (_rt, emu) = emulator();
    write(&emu, 0, 50);
    let w = Workdir::new();
    let admin = format!("127.0.0.1:{}", free_port());
    let cfg = pipeline(&w, &emu, &admin);
    let mut s = w.start_with(&cfg, &[("COSMOS_KEY", WRONG_KEY)]);

    let health = wait_for(Duration::from_secs(30), "/health naming the cause", || {
        let (code, body) = http_get(&format!("http://{admin}/health"))?;
        (code == 503 && body.contains("signature")).then_some(body)
    });
    assert!(health.contains("master key"), "{health}");
    assert!(!health.contains(WRONG_KEY), "the key leaked: {health}");
    s.sigterm();
    let status = s.wait(Duration::from_secs(30));
    let logs = s.logs();
    assert!(
        logs.contains("rejected the request signature (401 Unauthorized)"),
        "exit {status:?}, logs:\n{logs}"
    );
    assert!(!logs.contains(WRONG_KEY), "the key leaked into the logs");
    assert_eq!(count_lines(&w.join("out.jsonl")), 0);

    let v = offsets(&w, &cfg);
    let text = v.to_string();
    let none = v["grc"]["positions"]
        .as_object()
        .is_none_or(|p| p.is_empty());
    assert!(none, "offsets were saved: {text}");
    assert!(emu.requests().iter().all(|r| r.status == 401));
}

#[test]
fn a_split_while_running_loses_and_repeats_nothing_across_a_restart() {
    let (_rt, emu) = emulator();
    write(&emu, 0, 1_000);
    let w = Workdir::new();
    let admin = format!("127.0.0.1:{}", free_port());
    let cfg = pipeline(&w, &emu, &admin);
    let out = w.join("out.jsonl");

    let mut s = w.start_with(&cfg, &[("COSMOS_KEY", emu.key())]);
    wait_for(Duration::from_secs(60), "the first documents", || {
        (count_lines(&out) >= 300).then_some(())
    });
    let [a, _] = emu.split("0");
    emu.split("3");
    write(&emu, 1_000, 500);
    emu.split(&a);
    write(&emu, 1_500, 500);
    wait_for(Duration::from_secs(60), "2,000 documents", || {
        (count_lines(&out) >= 2_000).then_some(())
    });
    s.sigterm();
    let status = s.wait(Duration::from_secs(30));
    assert!(status.success(), "exit {status:?}: {}", s.logs());
    assert!(
        emu.requests().iter().any(|r| r.status == 410),
        "no split was seen"
    );

    let mut s = w.start_with(&cfg, &[("COSMOS_KEY", emu.key())]);
    write(&emu, 2_000, 100);
    wait_for(
        Duration::from_secs(60),
        "documents written after the restart",
        || (count_lines(&out) >= 2_100).then_some(()),
    );
    std::thread::sleep(Duration::from_millis(500));
    s.sigterm();
    let status = s.wait(Duration::from_secs(30));
    assert!(status.success(), "exit {status:?}: {}", s.logs());
    let counts = id_counts(&out);
    assert_eq!(counts.len(), 2_100);
    let repeated: Vec<_> = counts.iter().filter(|(_, &n)| n > 1).collect();
    assert!(repeated.is_empty(), "delivered again: {repeated:?}");
    // Positions of the live ranges (and of the split ones, kept for lineage).
    let v = offsets(&w, &cfg);
    let positions = v["grc"]["positions"].as_object().expect("positions");
    for r in emu.ranges() {
        assert!(
            positions.contains_key(&r.id),
            "no position for range {}: {v}",
            r.id
        );
    }
}
