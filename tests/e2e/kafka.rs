//! The real binary reading Kafka (the broker at SLUICE_TEST_KAFKA): every event once into a file,
//! no loss across `kill -9` and across a member dying in a two-process group, non-JSON and
//! unknown Avro schema ids in the Kafka DLQ with Kafka Connect headers, Avro decoded with an
//! emulated Schema Registry, and a broker that is down at start.
//!
//! Test producers batch as applications do (`linger.ms`, many records per batch), so commits
//! and restarts land inside batches. Group failover, broker outages, transactions, compaction
//! and topic patterns are in `kafka_broker.rs`.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use serde_json::{json, Value};

use crate::common::*;
use sluice_testkit::kafka::{create_topic, read_topic, real_broker as broker, unique, ReadBack};

const SECS: Duration = Duration::from_secs(1);

pub(crate) fn producer(brokers: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "200000")
        .create()
        .expect("producer")
}

pub(crate) fn event(seq: u64) -> String {
    format!(
        r#"{{"seq":{seq},"event_type":"control.evaluated","tenant_id":"tenant-{}","control_id":"AC.L2-3.1.{}","status":"NOT_MET","actor":"scanner@cmmc-scout"}}"#,
        seq % 4,
        seq % 22
    )
}

/// Produces JSON events `seqs` round-robin over `partitions`; returns after every ack.
pub(crate) fn produce_events(
    brokers: &str,
    topic: &str,
    partitions: i32,
    seqs: std::ops::Range<u64>,
) {
    let p = producer(brokers);
    for seq in seqs {
        let value = event(seq);
        let key = format!("k{seq}");
        let mut rec = BaseRecord::to(topic)
            .payload(value.as_bytes())
            .key(key.as_bytes())
            .partition((seq % partitions as u64) as i32);
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((e, back)) => {
                    assert_eq!(
                        e.rdkafka_error_code(),
                        Some(rdkafka::types::RDKafkaErrorCode::QueueFull),
                        "produce: {e}"
                    );
                    rec = back;
                    p.poll(Duration::from_millis(10));
                }
            }
        }
    }
    p.flush(Duration::from_secs(120))
        .expect("all events acknowledged");
}

pub(crate) fn produce_raw(
    brokers: &str,
    topic: &str,
    value: &[u8],
    key: &[u8],
    headers: OwnedHeaders,
) {
    let p = producer(brokers);
    p.send(
        BaseRecord::to(topic)
            .payload(value)
            .key(key)
            .partition(0)
            .headers(headers),
    )
    .map_err(|(e, _)| e)
    .expect("enqueue");
    p.flush(Duration::from_secs(30)).expect("acknowledged");
}

/// A kafka -> file pipeline with an admin listener; returns (config path, admin, out path).
pub(crate) struct Pipeline {
    pub config: std::path::PathBuf,
    pub admin: String,
    pub out: std::path::PathBuf,
}

pub(crate) fn kafka_to_file(w: &Workdir, name: &str, source: &str, dead_letter: &str) -> Pipeline {
    let admin = format!("127.0.0.1:{}", free_port());
    let out = w.join(&format!("{name}.jsonl"));
    let config = w.config(
        &format!("{name}.yaml"),
        &format!(
            "host:\n  data_dir: {{dir}}/data-{name}\n  admin: {{ listen: \"{admin}\" }}\n\
             pipelines:\n  - name: {name}\n    source: {source}\n    \
             sink: {{ type: file, path: \"{}\" }}\n    \
             batch: {{ max_events: 2000, max_bytes: 4MiB, linger: 50ms }}\n{dead_letter}",
            out.display()
        ),
    );
    Pipeline { config, admin, out }
}

pub(crate) fn kafka_source(brokers: &str, topic: &str, group: &str, extra: &str) -> String {
    format!(
        "{{ type: kafka, brokers: \"{brokers}\", topics: [\"{topic}\"], group_id: \"{group}\", \
         options: {{ session.timeout.ms: 6000, heartbeat.interval.ms: 500 }}{extra} }}"
    )
}

/// Like `wait_for`, but shows the tail of each process log when it times out.
pub(crate) fn wait_logged<T>(
    timeout: Duration,
    what: &str,
    procs: &[&Sluice],
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            for p in procs {
                let logs = p.logs();
                let lines: Vec<&str> = logs.lines().collect();
                eprintln!(
                    "--- {} (last 40 lines)\n{}",
                    p.log.display(),
                    lines[lines.len().saturating_sub(40)..].join("\n")
                );
            }
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub(crate) fn unique_seqs(counts: &HashMap<u64, u32>) -> usize {
    counts.len()
}

pub(crate) fn duplicates(counts: &HashMap<u64, u32>) -> u32 {
    counts.values().map(|c| c - 1).sum()
}

pub(crate) fn assert_all(counts: &HashMap<u64, u32>, n: u64) {
    let missing: Vec<u64> = (0..n).filter(|s| !counts.contains_key(s)).collect();
    assert!(
        missing.is_empty(),
        "{} of {n} events missing, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(counts.keys().all(|s| *s < n), "unexpected events");
}

#[test]
fn hundred_thousand_events_reach_the_file_sink_each_once() {
    let brokers = broker();
    let topic = unique("e2e.events");
    create_topic(&brokers, &topic, 4);
    produce_events(&brokers, &topic, 4, 0..100_000);

    let w = Workdir::new();
    let p = kafka_to_file(
        &w,
        "once",
        &kafka_source(&brokers, &topic, &unique("g"), ""),
        "",
    );
    let mut s = w.start(&p.config);
    wait_for(Duration::from_secs(90), "100,000 lines in the file", || {
        (count_lines(&p.out) >= 100_000).then_some(())
    });
    std::thread::sleep(SECS); // nothing more may arrive
    s.sigterm();
    assert!(s.wait(Duration::from_secs(60)).success(), "{}", s.logs());
    let counts = seq_counts(&p.out);
    assert_all(&counts, 100_000);
    assert_eq!(
        duplicates(&counts),
        0,
        "a clean run delivers each event once"
    );
    assert_eq!(count_lines(&p.out), 100_000);
}

#[test]
fn kill_dash_nine_mid_run_then_restart_loses_nothing() {
    let brokers = broker();
    let topic = unique("e2e.kill9");
    create_topic(&brokers, &topic, 4);

    let w = Workdir::new();
    let group = unique("g");
    let p = kafka_to_file(&w, "kill9", &kafka_source(&brokers, &topic, &group, ""), "");
    let mut s = w.start(&p.config);
    // Events keep arriving while sluice reads (2,000 every 50 ms): the kill lands mid-stream.
    let producing = {
        let (brokers, topic) = (brokers.clone(), topic.clone());
        std::thread::spawn(move || {
            for chunk in (0..100_000).step_by(2_000) {
                produce_events(&brokers, &topic, 4, chunk..chunk + 2_000);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    wait_for(
        Duration::from_secs(60),
        "30,000 lines before the kill",
        || (count_lines(&p.out) >= 30_000).then_some(()),
    );
    s.kill9();
    let before = count_lines(&p.out);
    producing.join().expect("producer thread");
    assert!(before < 100_000, "the run finished before the kill");
    // Restarted at once: the dead member still counts in the group until its session (6 s)
    // expires, then the group rebalances and the new process takes every partition.
    let mut s = w.start(&p.config);
    wait_for(
        Duration::from_secs(60),
        "every event after the restart",
        || (unique_seqs(&seq_counts(&p.out)) >= 100_000).then_some(()),
    );
    std::thread::sleep(SECS);
    s.sigterm();
    assert!(s.wait(Duration::from_secs(60)).success(), "{}", s.logs());
    let counts = seq_counts(&p.out);
    assert_all(&counts, 100_000);
    println!(
        "kafka kill -9 at {before} lines: {} duplicates after the restart (uncommitted tail)",
        duplicates(&counts)
    );
}

pub(crate) fn check_connect_headers(m: &ReadBack, topic: &str, pipeline: &str, class: &str) {
    let h = |k: &str| m.header(k);
    assert_eq!(h("__connect.errors.topic").as_deref(), Some(topic));
    assert_eq!(h("__connect.errors.partition").as_deref(), Some("0"));
    assert!(h("__connect.errors.offset").is_some_and(|o| o.parse::<i64>().is_ok()));
    assert_eq!(
        h("__connect.errors.connector.name").as_deref(),
        Some(pipeline)
    );
    assert_eq!(
        h("__connect.errors.stage").as_deref(),
        Some("VALUE_CONVERTER")
    );
    assert_eq!(
        h("__connect.errors.exception.class.name").as_deref(),
        Some(class)
    );
    assert!(h("__connect.errors.exception.message").is_some_and(|m| !m.is_empty()));
    assert_eq!(h("sluice.errors.attempts").as_deref(), Some("0"));
}

#[test]
fn a_non_json_message_lands_in_the_dlq_topic_with_connect_headers() {
    let brokers = broker();
    let topic = unique("e2e.dlq");
    let dlq = format!("{topic}.dlq");
    create_topic(&brokers, &topic, 1);
    create_topic(&brokers, &dlq, 1);
    produce_events(&brokers, &topic, 1, 0..10);
    produce_raw(
        &brokers,
        &topic,
        b"<event>not json</event>",
        b"bad-key",
        OwnedHeaders::new().insert(Header {
            key: "trace-id",
            value: Some(&b"abc123"[..]),
        }),
    );
    produce_events(&brokers, &topic, 1, 10..20);

    let w = Workdir::new();
    let p = kafka_to_file(
        &w,
        "dlq",
        &kafka_source(&brokers, &topic, &unique("g"), ""),
        &format!("    dead_letter: {{ type: kafka, brokers: \"{brokers}\" }}\n"),
    );
    let mut s = w.start(&p.config);
    wait_for(
        Duration::from_secs(120),
        "20 good events in the file",
        || (count_lines(&p.out) >= 20).then_some(()),
    );
    let back = read_topic(&brokers, &dlq, 1, 60 * SECS);
    s.sigterm();
    assert!(s.wait(Duration::from_secs(60)).success(), "{}", s.logs());
    assert_eq!(back.len(), 1, "one dead letter in {dlq}");
    let m = &back[0];
    assert_eq!(m.value, b"<event>not json</event>");
    assert_eq!(m.key.as_deref(), Some(&b"bad-key"[..]));
    assert_eq!(m.header("trace-id").as_deref(), Some("abc123"));
    assert_eq!(m.headers[0].0, "trace-id", "original headers come first");
    check_connect_headers(m, &topic, "dlq", "decode_error");
    assert_eq!(m.header("__connect.errors.offset").as_deref(), Some("10"));
    assert_all(&seq_counts(&p.out), 20);
}

const SCHEMA: &str = r#"{"type":"record","name":"Observation","namespace":"cmmc",
  "fields":[{"name":"seq","type":"long"},
            {"name":"control","type":"string"},
            {"name":"status","type":{"type":"enum","name":"Status","symbols":["MET","NOT_MET"]}},
            {"name":"note","type":["null","string"],"default":null}]}"#;

#[test]
fn avro_with_the_registry_decodes_to_json_and_unknown_ids_go_to_the_dlq() {
    use sluice_testkit::schema_registry::{avro_datum, frame, SchemaRegistry};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let registry = rt.block_on(SchemaRegistry::start_with_auth("sr-key", "sr-secret"));
    let id = registry.register("observation-value", SCHEMA);

    let brokers = broker();
    let topic = unique("e2e.avro");
    let dlq = format!("{topic}.dlq");
    create_topic(&brokers, &topic, 1);
    create_topic(&brokers, &dlq, 1);
    let expected: Vec<Value> = (0..5)
        .map(|i| {
            json!({"seq": i, "control": format!("AC.L2-3.1.{i}"),
                   "status": if i % 2 == 0 { "MET" } else { "NOT_MET" },
                   "note": if i == 3 { json!("reviewed") } else { Value::Null }})
        })
        .collect();
    for (i, v) in expected.iter().enumerate() {
        if i == 2 {
            let unknown = frame(id + 1000, &avro_datum(SCHEMA, v));
            produce_raw(&brokers, &topic, &unknown, b"unknown", OwnedHeaders::new());
        }
        produce_raw(
            &brokers,
            &topic,
            &frame(id, &avro_datum(SCHEMA, v)),
            b"k",
            OwnedHeaders::new(),
        );
    }

    let w = Workdir::new();
    let source = kafka_source(
        &brokers,
        &topic,
        &unique("g"),
        &format!(
            ", format: avro, schema_registry: {{ url: \"{}\", username: sr-key, \
             password: \"${{SR_PASSWORD}}\" }}",
            registry.url()
        ),
    );
    let p = kafka_to_file(
        &w,
        "avro",
        &source,
        &format!("    dead_letter: {{ type: kafka, brokers: \"{brokers}\" }}\n"),
    );
    let mut s = w.start_with(&p.config, &[("SR_PASSWORD", "sr-secret")]);
    wait_for(Duration::from_secs(120), "5 decoded events", || {
        (count_lines(&p.out) >= 5).then_some(())
    });
    let back = read_topic(&brokers, &dlq, 1, 60 * SECS);
    s.sigterm();
    assert!(s.wait(Duration::from_secs(60)).success(), "{}", s.logs());
    let got = read_jsonl(&p.out);
    assert_eq!(got, expected, "Avro decoded to the JSON that was encoded");
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].key.as_deref(), Some(&b"unknown"[..]));
    assert_eq!(
        back[0].value,
        frame(id + 1000, &avro_datum(SCHEMA, &expected[2]))
    );
    check_connect_headers(&back[0], &topic, "avro", "decode_error");
    assert!(back[0]
        .header("__connect.errors.exception.message")
        .is_some_and(|m| m.contains("40403")));
    assert_eq!(registry.fetches_of(id), 1, "schema fetched once");
    assert!(
        !s.logs().contains("sr-secret"),
        "the password is never logged"
    );
}

/// A free loopback port for a broker, below Linux's ephemeral range (32768 and up): a port from
/// that range can be taken as the local port of any outgoing connection while the broker is
/// down, and the broker then cannot bind it again on restart. The port is also reserved for
/// an hour with a file that only one test process can create, so a broker stopped for a while
/// does not find its port taken by another test's broker when it starts again.
pub(crate) fn broker_port() -> u16 {
    let dir = std::env::temp_dir().join("sluice-e2e-broker-ports");
    let _ = std::fs::create_dir_all(&dir);
    let reserve = |port: u16| {
        let file = dir.join(port.to_string());
        let stale = std::fs::metadata(&file)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > std::time::Duration::from_secs(3600));
        if stale {
            let _ = std::fs::remove_file(&file);
        }
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&file)
            .is_ok()
    };
    for _ in 0..1000 {
        let port = bindable_broker_port();
        if reserve(port) {
            return port;
        }
    }
    panic!("no unreserved port in 20000..32000 ({})", dir.display());
}

/// A port below the ephemeral range that can be bound right now.
fn bindable_broker_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default()
        ^ std::process::id();
    for _ in 0..1000 {
        let n = u32::from(NEXT.fetch_add(1, Ordering::Relaxed));
        let port = 20_000 + ((seed.wrapping_add(n.wrapping_mul(7919))) % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 20000..32000");
}

/// A private Kafka broker on its own ports and data directory (the shared one must stay up
/// for other tests), started and stopped with scripts/start-kafka.sh.
pub(crate) struct PrivateBroker {
    env: Vec<(&'static str, String)>,
}

impl PrivateBroker {
    /// Starts it and returns once it answers (the script waits for that). The controller's
    /// port is picked here, and another test process may pick the same one between the
    /// check and the broker's bind: a start that fails is tried again on a fresh port and a
    /// fresh data directory, and each failure shows the end of the broker's log.
    pub(crate) fn start(port: u16, data: &Path) -> Self {
        let mut failures = Vec::new();
        for _ in 0..3 {
            let broker = PrivateBroker {
                env: vec![
                    ("SLUICE_TEST_KAFKA", format!("127.0.0.1:{port}")),
                    ("SLUICE_KAFKA_CONTROLLER_PORT", broker_port().to_string()),
                    ("SLUICE_KAFKA_DATA", data.display().to_string()),
                ],
            };
            let status = broker.script("start");
            if status.success() {
                return broker;
            }
            let log = std::fs::read_to_string(data.join("server.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            eprintln!(
                "private broker did not start ({status}); server.log ends:\n{}",
                tail.join("\n")
            );
            failures.push(status.to_string());
            drop(broker);
            // The next try formats the directory again, for its own controller port: a
            // half-started broker's metadata names the old one.
            let _ = std::fs::remove_dir_all(data);
        }
        panic!(
            "scripts/start-kafka.sh start failed three times: {failures:?} (see {}/server.log)",
            data.display()
        );
    }

    /// Stops it (a controlled shutdown) or starts it again on the same ports and data.
    pub(crate) fn script(&self, command: &str) -> std::process::ExitStatus {
        Command::new(repo_root().join("scripts/start-kafka.sh"))
            .arg(command)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .status()
            .expect("run scripts/start-kafka.sh")
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        let _ = self.script("stop");
    }
}

pub(crate) fn health(admin: &str) -> Option<(u16, Value)> {
    let (code, body) = http_get(&format!("http://{admin}/health"))?;
    Some((code, serde_json::from_str(&body).ok()?))
}

#[test]
fn broker_down_at_start_is_retried_reported_and_delivery_resumes() {
    let port = broker_port();
    let brokers = format!("127.0.0.1:{port}");
    let topic = unique("e2e.late");
    let w = Workdir::new();
    let p = kafka_to_file(
        &w,
        "late",
        &kafka_source(&brokers, &topic, &unique("g"), ""),
        "",
    );
    let mut s = w.start(&p.config);

    let problem = wait_for(
        Duration::from_secs(60),
        "/health to report the broker",
        || match health(&p.admin) {
            Some((503, v)) => v["pipelines"]["late"]["problem"]
                .as_str()
                .map(str::to_string),
            _ => None,
        },
    );
    println!("health while the broker is down: {problem}");
    assert!(problem.contains("kafka consumer"), "{problem}");
    assert!(
        problem.contains("refused") || problem.contains("down"),
        "{problem}"
    );
    std::thread::sleep(3 * SECS);
    assert!(
        s.child.try_wait().unwrap().is_none(),
        "sluice keeps running"
    );

    let _broker = PrivateBroker::start(port, &w.join("kafka"));
    wait_for(Duration::from_secs(30), "the private broker", || {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()
            .ok()?;
        c.fetch_metadata(None, SECS).ok().map(|_| ())
    });
    create_topic(&brokers, &topic, 4);
    produce_events(&brokers, &topic, 4, 0..5_000);
    wait_for(
        Duration::from_secs(120),
        "every event after the broker came up",
        || (unique_seqs(&seq_counts(&p.out)) >= 5_000).then_some(()),
    );
    wait_for(Duration::from_secs(30), "/health to be 200 again", || {
        matches!(health(&p.admin), Some((200, _))).then_some(())
    });
    s.sigterm();
    assert!(s.wait(Duration::from_secs(60)).success(), "{}", s.logs());
    let counts = seq_counts(&p.out);
    assert_all(&counts, 5_000);
    assert_eq!(duplicates(&counts), 0);
}
