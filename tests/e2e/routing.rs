//! Routing and fan-out with the real binary: one source, several named sinks, each record in
//! every sink its route takes it to, nothing committed before every one of them has it.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde_json::Value;
use sluice_testkit::hec::{HecEvent, HecOptions, HecServer};

use crate::common::*;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn validate_places_every_problem_of_named_sinks() {
    let w = Workdir::new();
    let cfg = w.config(
        "c.yaml",
        r#"pipelines:
  - name: one
    source: { type: generator, count: 1 }
    sinks:
      a:
        type: file
        path: out.jsonl
        route: { feild: event_type, equals: x }
      d:
        type: blackhole
        transforms:
          - { type: set, field: y }
      e:
        type: blackhole
        fallback: { sink: { type: file, path: f.jsonl } }
    unrouted: keep
  - name: two
    source: { type: generator, count: 1 }
    sink: { type: blackhole }
    sinks:
      x: { type: blackhole }
  - name: three
    source: { type: generator, count: 1 }
    sinks:
      "a.b": { type: blackhole }
  - name: four
    source: { type: generator, count: 1 }
    sinks:
      b:
        type: nosuch
      c:
        type: blackhole
        route: { field: event_type, matches: "(" }
        batch: { max_events: 0 }
      d:
        type: blackhole
        route: { any: [ { field: x, exists: true }, { field: y } ] }
      ok:
        type: file
        path: out.jsonl
        nope: 1
        fallback: { after: 0s, sink: { type: nosuch } }
"#,
    );
    let o = w.sluice(&["validate", &cfg.display().to_string()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    let at = |pos: &str, text: &str| {
        assert!(
            err.lines()
                .any(|l| l.contains(&format!("c.yaml:{pos}:")) && l.contains(text)),
            "no `{text}` at {pos}:\n{err}"
        )
    };
    // Problems of the YAML itself.
    at("8:18", "unknown field `feild`");
    at("8:18", "did you mean `field`?");
    at("12:13", "missing field `value`");
    at("15:9", "missing field `after`");
    at("16:5", "unknown variant `keep`");
    at("20:5", "`sink` and `sinks` cannot both be given");
    at("25:7", "sink name `a.b`");
    // Problems found once the YAML is read: connectors, routes, values.
    at("30:9", "unknown sink type `nosuch`");
    at("33:37", "invalid regex");
    at("34:18", "max_events must be at least 1");
    at("37:53", "route needs exactly one of");
    at("41:9", "sinks.ok `file`: unknown field `nope`");
    at("42:21", "after must be longer than 0s");
    at("42:40", "unknown sink type `nosuch`");
    // A valid fan-out passes.
    let ok = w.config(
        "ok.yaml",
        r#"pipelines:
  - name: ok
    source: { type: generator, count: 1 }
    transforms:
      - { type: set, field: routed, value: true }
    sinks:
      gaps:
        type: file
        path: gaps.jsonl
        route: { all: [ { field: event_type, one_of: [gap.identified] }, { field: severity, exists: true } ] }
        batch: { max_events: 10 }
        retry: { max_attempts: 3 }
        concurrency: 2
        rate_limit: { events_per_second: 100 }
        dead_letter: { type: file }
        transforms: [ { type: drop, fields: [routed] } ]
        fallback: { after: 30s, sink: { type: file, path: fb.jsonl } }
      all: { type: blackhole }
    unrouted: drop
"#,
    );
    let o = w.sluice(&["validate", &ok.display().to_string()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

/// `event_type` of each line of a JSON-lines file, by `seq`.
fn types_by_seq(path: &std::path::Path) -> BTreeMap<u64, String> {
    read_jsonl(path)
        .iter()
        .map(|v| {
            (
                v["seq"].as_u64().expect("seq"),
                v["event_type"].as_str().expect("event_type").to_string(),
            )
        })
        .collect()
}

#[test]
fn records_go_where_their_route_says_and_the_unrouted_are_dead_lettered() {
    let w = Workdir::new();
    let admin = format!("127.0.0.1:{}", free_port());
    let cfg = w.config(
        "r.yaml",
        &format!(
            r#"host: {{ data_dir: "{{dir}}/data", admin: {{ listen: "{admin}" }} }}
pipelines:
  - name: route
    source: {{ type: generator, count: 2000 }}
    sinks:
      gaps:
        type: file
        path: "{{dir}}/gaps.jsonl"
        route: {{ field: event_type, equals: gap.identified }}
        transforms: [ {{ type: set, field: routed_to, value: gaps }} ]
      work:
        type: file
        path: "{{dir}}/work.jsonl"
        route: {{ any: [ {{ field: event_type, equals: control.evaluated }}, {{ field: event_type, matches: "^assessment\\." }} ] }}
      evaluated:
        type: file
        path: "{{dir}}/evaluated.jsonl"
        route: {{ field: event_type, one_of: [control.evaluated] }}
    batch: {{ max_events: 100, linger: 20ms }}
    commit_interval: 50ms
"#
        ),
    );
    let mut s = w.start(&cfg);
    let status = s.wait(Duration::from_secs(60));
    assert!(status.success(), "{}", s.logs());
    let gaps = types_by_seq(&w.join("gaps.jsonl"));
    let work = types_by_seq(&w.join("work.jsonl"));
    let evaluated = types_by_seq(&w.join("evaluated.jsonl"));
    assert!(gaps.values().all(|t| t == "gap.identified"));
    assert!(work
        .values()
        .all(|t| t == "control.evaluated" || t == "assessment.started"));
    assert!(evaluated.values().all(|t| t == "control.evaluated"));
    // The per-sink transform touched only that sink's copy.
    assert!(read_jsonl(&w.join("gaps.jsonl"))
        .iter()
        .all(|v| v["routed_to"] == "gaps"));
    assert!(read_jsonl(&w.join("work.jsonl"))
        .iter()
        .all(|v| v.get("routed_to").is_none()));
    let dlq = read_jsonl(&w.join("data/dlq/route.jsonl"));
    for d in &dlq {
        assert_eq!(
            d["__connect.errors.exception.class.name"], "unrouted",
            "{d}"
        );
        assert_eq!(d["__connect.errors.connector.name"], "route");
        let v: Value =
            serde_json::from_str(d["value"].as_str().unwrap_or("{}")).unwrap_or_default();
        if let Some(t) = v["event_type"].as_str() {
            assert_eq!(t, "report.generated", "{d}");
        }
    }
    // Every record is in exactly the places its type sends it, and only there.
    let unrouted = dlq.len();
    let controls = evaluated.len();
    assert_eq!(
        gaps.len() + work.len() + unrouted,
        2000,
        "gaps {} work {} unrouted {unrouted}",
        gaps.len(),
        work.len()
    );
    assert_eq!(
        controls,
        work.values().filter(|t| *t == "control.evaluated").count()
    );
    assert!(gaps.len() > 300 && unrouted > 300 && controls > 300);
    assert_eq!(
        stored_offsets(&w.join("data"), "route").expect("stored")["0"],
        "2000"
    );
}

#[test]
fn unrouted_drop_counts_the_records_as_filtered() {
    let w = Workdir::new();
    let admin = format!("127.0.0.1:{}", free_port());
    let types = [
        "gap.identified",
        "control.evaluated",
        "report.generated",
        "x",
    ];
    let body: String = (0..1000)
        .map(|i| format!("{{\"seq\":{i},\"event_type\":\"{}\"}}\n", types[i % 4]))
        .collect();
    std::fs::write(w.join("in.jsonl"), body).unwrap();
    let cfg = w.config(
        "d.yaml",
        &format!(
            r#"host: {{ data_dir: "{{dir}}/data", admin: {{ listen: "{admin}" }} }}
pipelines:
  - name: drop
    source: {{ type: file, path: "{{dir}}/in.jsonl" }}
    sinks:
      gaps:
        type: file
        path: "{{dir}}/gaps.jsonl"
        route: {{ field: event_type, equals: gap.identified }}
    unrouted: drop
    batch: {{ max_events: 100, linger: 20ms }}
"#
        ),
    );
    let _s = w.start(&cfg);
    let (sent, filtered) = wait_for(Duration::from_secs(30), "every record counted", || {
        let sent = sink_metric(&admin, "sluice_records_sent_total", "drop", "gaps")?;
        let filtered = metric(&admin, "sluice_records_filtered_total", "drop")?;
        (sent + filtered == 1000.0).then_some((sent, filtered))
    });
    assert_eq!((sent, filtered), (250.0, 750.0));
    assert_eq!(count_lines(&w.join("gaps.jsonl")), 250);
    assert!(!w.join("data/dlq/drop.jsonl").exists());
}

/// The emulator runs on its own runtime threads while the test drives the binary.
fn hec_server() -> (tokio::runtime::Runtime, HecServer) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let server = rt.block_on(HecServer::start(HecOptions {
        token: TOKEN.into(),
        ..HecOptions::default()
    }));
    (rt, server)
}

const TOKEN: &str = "3f2b9c1e-7d4a-4e8b-9c0d-1a2b3c4d5e6f";

fn hec_seqs(events: &[HecEvent]) -> HashMap<u64, u32> {
    let mut m = HashMap::new();
    for e in events {
        if let Some(s) = e.event["seq"].as_u64() {
            *m.entry(s).or_insert(0) += 1;
        }
    }
    m
}

/// generator -> file `a`, file `b`, splunk_hec `siem`.
fn three_sinks(
    w: &Workdir,
    server: &HecServer,
    admin: &str,
    generator: &str,
) -> std::path::PathBuf {
    w.config(
        "three.yaml",
        &format!(
            r#"host: {{ data_dir: "{{dir}}/data", admin: {{ listen: "{admin}" }} }}
pipelines:
  - name: three
    source: {{ type: generator, {generator} }}
    sinks:
      a: {{ type: file, path: "{{dir}}/a.jsonl" }}
      b: {{ type: file, path: "{{dir}}/b.jsonl", batch: {{ max_events: 50, linger: 10ms }} }}
      siem:
        type: splunk_hec
        endpoint: "{url}"
        token: "{TOKEN}"
        retry: {{ max_attempts: 5, initial_backoff: 50ms, max_backoff: 1s }}
    batch: {{ max_events: 100, linger: 20ms }}
    commit_interval: 100ms
"#,
            url = server.url(),
        ),
    )
}

fn committed(w: &Workdir, pipeline: &str) -> u64 {
    stored_offsets(&w.join("data"), pipeline)
        .and_then(|p| p["0"].as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0)
}

#[test]
fn a_sink_down_for_20s_holds_the_commit_and_all_catch_up() {
    let (_rt, server) = hec_server();
    let w = Workdir::new();
    let admin = format!("127.0.0.1:{}", free_port());
    let total = 12_000u64;
    let cfg = three_sinks(&w, &server, &admin, &format!("count: {total}, rate: 400"));
    let _s = w.start(&cfg);
    wait_for(Duration::from_secs(30), "HEC receives", || {
        (server.event_count() > 500).then_some(())
    });
    server.set_busy_rate(1.0);
    let down = std::time::Instant::now();
    let mut max_ahead = 0usize;
    while down.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(500));
        let hec = hec_seqs(&server.events());
        let c = committed(&w, "three");
        // Nothing committed past what the sink that is down has.
        assert!(
            (0..c).all(|s| hec.contains_key(&s)),
            "committed {c} while HEC lacks some record below it"
        );
        let a = count_lines(&w.join("a.jsonl"));
        max_ahead = max_ahead.max(a.saturating_sub(hec.len()));
    }
    // The others kept writing, up to the queue bound, then waited.
    let a1 = count_lines(&w.join("a.jsonl"));
    let hec_len = hec_seqs(&server.events()).len();
    assert!(
        a1 > hec_len,
        "file sink kept writing: a {a1}, hec {hec_len}"
    );
    assert!(
        max_ahead <= 1000,
        "the file sink ran {max_ahead} records ahead of the sink that is down"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        count_lines(&w.join("a.jsonl")) <= a1 + 100,
        "the source slowed down while a sink was down"
    );
    server.set_busy_rate(0.0);
    wait_for(Duration::from_secs(120), "all sinks catch up", || {
        (committed(&w, "three") == total).then_some(())
    });
    let hec = hec_seqs(&server.events());
    let a = seq_counts(&w.join("a.jsonl"));
    let b = seq_counts(&w.join("b.jsonl"));
    for s in 0..total {
        assert!(hec.contains_key(&s), "HEC lost {s}");
        assert!(a.contains_key(&s), "a lost {s}");
        assert!(b.contains_key(&s), "b lost {s}");
    }
    assert_eq!(hec.len() + a.len() + b.len(), 3 * total as usize);
}

#[test]
fn kill_9_with_three_sinks_loses_nothing() {
    let (_rt, server) = hec_server();
    let w = Workdir::new();
    let admin = format!("127.0.0.1:{}", free_port());
    let total = 20_000u64;
    let cfg = three_sinks(&w, &server, &admin, &format!("count: {total}, rate: 4000"));
    let mut s = w.start(&cfg);
    wait_for(Duration::from_secs(30), "half way", || {
        (count_lines(&w.join("a.jsonl")) > 8_000).then_some(())
    });
    s.kill9();
    let before = committed(&w, "three");
    assert!(before < total, "killed before the end");
    let mut s = w.start(&cfg);
    let status = s.wait(Duration::from_secs(120));
    assert!(status.success(), "{}", s.logs());
    let hec = hec_seqs(&server.events());
    let a = seq_counts(&w.join("a.jsonl"));
    let b = seq_counts(&w.join("b.jsonl"));
    let mut duplicates = [0u32; 3];
    for (i, m) in [&a, &b, &hec].iter().enumerate() {
        for seq in 0..total {
            let n = m.get(&seq).copied().unwrap_or(0);
            assert!(n >= 1, "sink {i} lost record {seq}");
            duplicates[i] += n - 1;
        }
    }
    println!(
        "duplicates after kill -9 (committed {before}): a {}, b {}, siem {}",
        duplicates[0], duplicates[1], duplicates[2]
    );
    assert_eq!(committed(&w, "three"), total);
}

#[test]
fn dead_letters_name_the_sink_that_refused() {
    let (_rt, server) = hec_server();
    server.reject_events_where(|e| e.event["seq"] == 7);
    let w = Workdir::new();
    let admin = format!("127.0.0.1:{}", free_port());
    let cfg = three_sinks(&w, &server, &admin, "count: 300");
    let mut s = w.start(&cfg);
    let status = s.wait(Duration::from_secs(60));
    assert!(status.success(), "{}", s.logs());
    let dlq = read_jsonl(&w.join("data/dlq/three.jsonl"));
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    assert_eq!(dlq[0]["sluice.errors.sink"], "siem");
    assert_eq!(dlq[0]["__connect.errors.connector.name"], "three");
    assert_eq!(count_lines(&w.join("a.jsonl")), 300);
    assert_eq!(count_lines(&w.join("b.jsonl")), 300);
    assert_eq!(server.event_count(), 299);
}

/// A PostgreSQL cluster of this test's own, which it may stop and start (`pg_ctl`).
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
        let port = free_port();
        // initdb refuses to run as root: the cluster belongs to the postgres user.
        if let Some((uid, gid)) = Self::postgres_ids() {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let c = PrivateCluster { bin, dir, port };
        c.run(
            "initdb",
            &[
                "-D",
                &c.data(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
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
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log").display().to_string();
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-o", &opts, "-l", &log, "-w", "start"],
        );
    }

    fn stop(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// `seq` of every row of the default audit table, with how often each appears.
    fn seqs(&self) -> HashMap<u64, u32> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let Ok((client, conn)) =
                tokio_postgres::connect(&self.url(), tokio_postgres::NoTls).await
            else {
                return HashMap::new();
            };
            tokio::spawn(conn);
            let rows = client
                .query("SELECT (payload->>'seq')::bigint FROM audit_events", &[])
                .await
                .unwrap_or_default();
            let mut m = HashMap::new();
            for r in rows {
                let s: i64 = r.get(0);
                *m.entry(s as u64).or_insert(0) += 1;
            }
            m
        })
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args(["-D", &self.data(), "-m", "immediate", "stop"])
            .output();
    }
}

/// `/health` with details (no token is set).
fn health(admin: &str) -> Option<Value> {
    let (_, body) = http_get(&format!("http://{admin}/health"))?;
    serde_json::from_str(&body).ok()
}

#[test]
fn a_stopped_database_falls_back_to_files_and_takes_new_records_when_back() {
    let cluster = PrivateCluster::start();
    let w = Workdir::new();
    let admin = format!("127.0.0.1:{}", free_port());
    let total = 6000u64;
    let cfg = w.config(
        "fb.yaml",
        &format!(
            r#"host: {{ data_dir: "{{dir}}/data", admin: {{ listen: "{admin}" }} }}
pipelines:
  - name: audit
    source: {{ type: generator, count: {total}, rate: 250 }}
    sinks:
      db:
        type: postgres
        url: "{url}"
        table: audit_events
        create_table: true
        mode: upsert
        connect_timeout: 1s
        retry: {{ initial_backoff: 50ms, max_backoff: 500ms }}
        fallback: {{ after: 2s, sink: {{ type: file, path: "{{dir}}/fallback/audit_%Y%m%d.jsonl" }} }}
      purview: {{ type: file, path: "{{dir}}/purview.jsonl" }}
    batch: {{ max_events: 50, linger: 20ms }}
    commit_interval: 100ms
"#,
            url = cluster.url(),
        ),
    );
    let mut s = w.start(&cfg);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while cluster.seqs().len() <= 300 {
        assert!(
            std::time::Instant::now() < deadline,
            "no rows in PostgreSQL: {}",
            s.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    cluster.stop();
    let stopped_at = committed(&w, "audit");
    let fallback_file = || {
        std::fs::read_dir(w.join("fallback"))
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .map(|e| e.path())
    };
    // After `after`, the fallback takes the records and the commit moves on.
    let degraded = wait_for(Duration::from_secs(30), "/health degraded", || {
        let h = health(&admin)?;
        (h["status"] == "degraded").then_some(h)
    });
    let why = degraded["pipelines"]["audit"]["degraded"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(why.contains("sink `db`"), "{degraded}");
    wait_for(
        Duration::from_secs(30),
        "the commit moves past the outage",
        || (committed(&w, "audit") > stopped_at + 500).then_some(()),
    );
    let path = fallback_file().expect("a fallback file");
    let lines = read_jsonl(&path);
    assert!(!lines.is_empty());
    assert!(
        lines.iter().all(|v| v["sluice"]["fallback_of"] == "db"),
        "every fallback record is marked"
    );
    let fb_metric = sink_metric(&admin, "sluice_records_fallback_total", "audit", "db")
        .expect("fallback counted");
    assert!(fb_metric >= lines.len() as f64 - 1.0, "{fb_metric}");
    // PostgreSQL back: new records go to it again.
    cluster.pg_ctl_start();
    let back = std::time::Instant::now();
    let rows_back = cluster.seqs().len();
    wait_for(
        Duration::from_secs(60),
        "new rows after the restart",
        || (cluster.seqs().len() > rows_back + 200).then_some(()),
    );
    let healthy = wait_for(Duration::from_secs(30), "/health ok", || {
        let h = health(&admin)?;
        (h["status"] == "ok").then_some(h)
    });
    assert_eq!(healthy["pipelines"]["audit"]["sinks"][0]["state"], "ok");
    let status = s.wait(Duration::from_secs(90));
    assert!(status.success(), "{}", s.logs());
    assert_eq!(committed(&w, "audit"), total);
    // Every record is in PostgreSQL or in the fallback file (both for a batch at a switch).
    let db = cluster.seqs();
    let fb: HashMap<u64, u32> = read_jsonl(&path)
        .iter()
        .filter_map(|v| v["seq"].as_u64())
        .fold(HashMap::new(), |mut m, s| {
            *m.entry(s).or_insert(0) += 1;
            m
        });
    let mut both = 0;
    for seq in 0..total {
        let (d, f) = (db.contains_key(&seq), fb.contains_key(&seq));
        assert!(d || f, "record {seq} is lost");
        both += usize::from(d && f);
    }
    // Records after the primary came back went to it, not to the fallback.
    let last_fb = fb.keys().max().copied().unwrap_or(0);
    assert!(
        last_fb < total - 200,
        "fallback took {last_fb} after {back:?}"
    );
    assert!(both <= 200, "{both} records in both");
    println!(
        "fallback: {} in PostgreSQL, {} in the fallback file, {both} in both",
        db.len(),
        fb.len()
    );
    let purview = seq_counts(&w.join("purview.jsonl"));
    assert!((0..total).all(|s| purview.contains_key(&s)));
}

/// Audit events with `seqs`, keyed by `key_field`, on partition 0 of `topic`.
fn produce_audit(brokers: &str, topic: &str, seqs: std::ops::Range<u64>) {
    use rdkafka::producer::{BaseRecord, Producer};
    let p = crate::kafka::producer(brokers);
    for seq in seqs {
        let value = format!(
            r#"{{"seq":{seq},"audit_id":"aud-{seq}","event_id":"ev-{seq}","assessment_id":"asm-{}","event_type":"{}","actor":"user{}@forge","timestamp":"2026-01-05T10:{:02}:{:02}Z","tenant_id":"tenant-{}","query":{{"rows":{seq}}}}}"#,
            seq / 10,
            ["query.executed", "gap.identified", "control.evaluated"][(seq % 3) as usize],
            seq % 7,
            (seq / 60) % 60,
            seq % 60,
            seq % 3
        );
        let key = format!("asm-{}", seq / 10);
        p.send(
            BaseRecord::to(topic)
                .payload(value.as_bytes())
                .key(key.as_bytes())
                .partition(0),
        )
        .map_err(|(e, _)| e)
        .expect("enqueue");
    }
    p.flush(Duration::from_secs(60)).expect("acknowledged");
}

#[test]
fn example_audit_events_postgres_writes_rows_and_daily_files() {
    use sluice_testkit::kafka::{create_topic, read_topic, real_broker, unique};
    let brokers = real_broker();
    let topic = unique("audit-example");
    create_topic(&brokers, &topic, 1);
    create_topic(&brokers, &format!("{topic}.dlq"), 1);
    let schema = format!("audit_ex_{}_{}", std::process::id(), free_port());
    let table = format!("{schema}.events");
    let pg = sluice_testkit::env::postgres_url();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&pg, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL must run at {pg}: {e}"));
        tokio::spawn(conn);
        client
    });
    rt.block_on(client.batch_execute(&format!(
        "CREATE SCHEMA {schema}; CREATE TABLE {table} (audit_id text PRIMARY KEY, event_type text NOT NULL, actor text, occurred_at timestamptz, metadata jsonb NOT NULL, received_at timestamptz NOT NULL DEFAULT now());"
    )))
    .unwrap();
    let n = 600u64;
    produce_audit(&brokers, &topic, 0..n);
    // One the database refuses: no event_type (NOT NULL).
    {
        use rdkafka::producer::{BaseRecord, Producer};
        let p = crate::kafka::producer(&brokers);
        p.send(
            BaseRecord::to(&topic)
                .payload(r#"{"seq":9999,"audit_id":"aud-bad","timestamp":"2026-01-05T11:00:00Z"}"#)
                .key("bad")
                .partition(0),
        )
        .map_err(|(e, _)| e)
        .expect("enqueue");
        p.flush(Duration::from_secs(30)).expect("acknowledged");
    }
    let w = Workdir::new();
    let admin = format!("127.0.0.1:{}", free_port());
    let cfg = example_config(&w, "audit-events-postgres.yaml", &admin);
    let logs = w.join("logs").display().to_string();
    let group = unique("audit-consumer");
    let _s = w.start_with(
        &cfg,
        &[
            ("KAFKA_BROKERS", brokers.as_str()),
            ("KAFKA_TOPICS", topic.as_str()),
            ("KAFKA_GROUP_ID", group.as_str()),
            ("DATABASE_URL", pg.as_str()),
            ("AUDIT_TABLE", table.as_str()),
            ("LOG_DIR", logs.as_str()),
        ],
    );
    let count = |sql: &str| -> i64 {
        rt.block_on(client.query_one(sql, &[]))
            .map(|r| r.get(0))
            .unwrap_or(0)
    };
    wait_for(Duration::from_secs(60), "every row", || {
        (count(&format!("SELECT count(*) FROM {table}")) == n as i64).then_some(())
    });
    assert_eq!(
        count(&format!(
            "SELECT count(*) FROM {table} WHERE metadata->>'audit_id' = audit_id AND occurred_at IS NOT NULL"
        )),
        n as i64
    );
    let purview = w.join("logs/purview/audit_20260105.jsonl");
    wait_for(Duration::from_secs(30), "the daily Purview file", || {
        (count_lines(&purview) == n as usize + 1).then_some(())
    });
    let dlq = read_topic(
        &brokers,
        &format!("{topic}.dlq"),
        1,
        Duration::from_secs(30),
    );
    assert_eq!(dlq.len(), 1);
    let header = |k: &str| {
        dlq[0]
            .headers
            .iter()
            .find(|(h, _)| h == k)
            .and_then(|(_, v)| v.clone())
            .map(|v| String::from_utf8_lossy(&v).into_owned())
    };
    assert_eq!(header("sluice.errors.sink").as_deref(), Some("db"));
    assert_eq!(
        header("__connect.errors.connector.name").as_deref(),
        Some("audit-events")
    );
    assert!(
        !w.join("logs/fallback").exists(),
        "no fallback while the database is up"
    );
    rt.block_on(client.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")))
        .unwrap();
}

#[test]
fn example_cmmc_siem_fanout_feeds_splunk_elasticsearch_and_datadog() {
    use sluice_testkit::datadog::DdEmulator;
    use sluice_testkit::elasticsearch::{EsAuth, EsEmulator, EsOptions};
    use sluice_testkit::kafka::{create_topic, real_broker, unique};
    let brokers = real_broker();
    let topic = unique("cmmc-example");
    create_topic(&brokers, &topic, 1);
    let n = 900u64;
    produce_audit(&brokers, &topic, 0..n);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let hec = rt.block_on(HecServer::start(HecOptions {
        token: TOKEN.into(),
        ..HecOptions::default()
    }));
    let api_key = "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==";
    let es = rt.block_on(EsEmulator::start_with(EsOptions {
        auth: Some(EsAuth::ApiKey(api_key.into())),
        ..EsOptions::default()
    }));
    let dd = rt.block_on(DdEmulator::start("dd-key-0123456789abcdef0123456789ab"));
    let w = Workdir::new();
    let admin = format!("127.0.0.1:{}", free_port());
    let cfg = example_config(&w, "cmmc-siem-fanout.yaml", &admin);
    let group = unique("cmmc");
    let (hec_url, es_url, dd_url) = (hec.url(), es.url(), dd.url());
    let _s = w.start_with(
        &cfg,
        &[
            ("KAFKA_BROKERS", brokers.as_str()),
            ("KAFKA_TOPICS", topic.as_str()),
            ("KAFKA_GROUP_ID", group.as_str()),
            ("SPLUNK_HEC_URL", hec_url.as_str()),
            ("SPLUNK_HEC_TOKEN", TOKEN),
            ("ES_ENDPOINT", es_url.as_str()),
            ("ELASTIC_API_KEY", api_key),
            ("DD_ENDPOINT", dd_url.as_str()),
            ("DD_API_KEY", "dd-key-0123456789abcdef0123456789ab"),
        ],
    );
    wait_for(
        Duration::from_secs(60),
        "every SIEM has every event",
        || {
            (hec_seqs(&hec.events()).len() == n as usize
                && es.documents("cmmc-audit-2026.01.05").len() == n as usize
                && dd.logs().len() >= n as usize)
                .then_some(())
        },
    );
    assert!(hec.events().iter().all(|e| e.index == "cmmc"));
    assert!(hec.violations().is_empty(), "{:?}", hec.violations());
    let tags: Vec<String> = dd
        .logs()
        .iter()
        .filter_map(|l| l["ddtags"].as_str().map(str::to_string))
        .collect();
    assert!(
        tags.iter().any(|t| t.contains("event_type:gap.identified")),
        "{tags:?}"
    );
    let health = health(&admin).expect("/health");
    let sinks: Vec<&str> = health["pipelines"]["cmmc-siem-fanout"]["sinks"]
        .as_array()
        .expect("sinks")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(sinks, ["splunk", "elastic", "datadog"]);
}

#[test]
fn example_grc_change_feed_routes_by_family_to_kafka_redis_and_postgres() {
    use redis::Commands;
    use sluice_testkit::cosmos::{CosmosEmulator, CosmosOptions};
    use sluice_testkit::kafka::{create_topic, read_topic, real_broker, unique};
    let brokers = real_broker();
    let prefix = unique("grc");
    for family in ["policy", "control", "risk"] {
        create_topic(&brokers, &format!("{prefix}.{family}.events"), 1);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let emu = rt.block_on(CosmosEmulator::with_options(CosmosOptions {
        container: "events".into(),
        ..CosmosOptions::default()
    }));
    let types = [
        "POLICY_VIOLATION",
        "CONTROL_UPDATED",
        "RISK_ACCEPTED",
        "EVIDENCE_ADDED",
    ];
    let tenants = [
        format!("{prefix}-a"),
        format!("{prefix}-b"),
        "test-x".to_string(),
    ];
    let n = 240usize;
    for i in 0..n {
        emu.upsert(serde_json::json!({
            "id": format!("evt-{i:04}"),
            "pk": tenants[i % 3],
            "tenantId": tenants[i % 3],
            "eventType": types[i % 4],
            "timestamp": "2026-01-05T10:00:00Z",
            "seq": i,
        }));
    }
    let schema = format!("grc_ex_{}_{}", std::process::id(), free_port());
    let table = format!("{schema}.events");
    let pg = sluice_testkit::env::postgres_url();
    let db = rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&pg, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL must run at {pg}: {e}"));
        tokio::spawn(conn);
        client
    });
    rt.block_on(db.batch_execute(&format!(
        "CREATE SCHEMA {schema}; CREATE TABLE {table} (event_id text PRIMARY KEY, event_type text NOT NULL, tenant_id text NOT NULL, occurred_at timestamptz, payload jsonb NOT NULL);"
    )))
    .unwrap();
    let w = Workdir::new();
    let admin = format!("127.0.0.1:{}", free_port());
    let cfg = example_config(&w, "grc-change-feed.yaml", &admin);
    let endpoint = emu.endpoint();
    let redis_url = sluice_testkit::env::redis_url();
    let _s = w.start_with(
        &cfg,
        &[
            ("COSMOS_ENDPOINT", endpoint.as_str()),
            ("COSMOS_KEY", emu.key()),
            ("KAFKA_BROKERS", brokers.as_str()),
            ("GRC_TOPIC_PREFIX", prefix.as_str()),
            ("REDIS_URL", redis_url.as_str()),
            ("DATABASE_URL", pg.as_str()),
            ("ANALYTICS_TABLE", table.as_str()),
        ],
    );
    // Two tenants of three are kept: 160 events, 40 of each type.
    let kept = n * 2 / 3;
    let rows = || -> i64 {
        rt.block_on(db.query_one(&format!("SELECT count(*) FROM {table}"), &[]))
            .map(|r| r.get(0))
            .unwrap_or(0)
    };
    wait_for(
        Duration::from_secs(60),
        "every kept event in PostgreSQL",
        || (rows() == kept as i64).then_some(()),
    );
    let mut r = redis::Client::open(redis_url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let streams = |r: &mut redis::Connection| -> (usize, usize, usize) {
        let len = |r: &mut redis::Connection, t: &str| -> usize {
            r.xlen(format!("grc:{t}")).unwrap_or(0)
        };
        (len(r, &tenants[0]), len(r, &tenants[1]), len(r, "test-x"))
    };
    wait_for(Duration::from_secs(30), "a stream per kept tenant", || {
        let (a, b, _) = streams(&mut r);
        (a + b == kept).then_some(())
    });
    assert_eq!(streams(&mut r).2, 0, "test tenants are filtered out");
    for (family, prefix_of_type) in [
        ("policy", "POLICY_"),
        ("control", "CONTROL_"),
        ("risk", "RISK_"),
    ] {
        let got = read_topic(
            &brokers,
            &format!("{prefix}.{family}.events"),
            kept / 4,
            Duration::from_secs(30),
        );
        assert_eq!(got.len(), kept / 4, "{family}");
        for m in &got {
            let v: Value = serde_json::from_slice(&m.value).unwrap();
            assert!(
                v["eventType"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with(prefix_of_type),
                "{family}: {v}"
            );
        }
    }
    let _: () = r
        .del(&[format!("grc:{}", tenants[0]), format!("grc:{}", tenants[1])])
        .unwrap_or(());
    rt.block_on(db.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")))
        .unwrap();
}
