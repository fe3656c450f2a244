//! Kafka scenarios: 1,000,000 JSON events of about 300 bytes on a 4-partition topic, read by
//! (a) a bare rdkafka consumer that only counts (the practical ceiling of the broker and
//! librdkafka on this machine) and (b) `sluice run` from the `kafka` source into a sink.
//!
//! Both readers run as their own process and are measured the same way: wall time from spawn
//! until the last record was read, and user+sys CPU of that process until then. Sink scenarios are added
//! to [`SINKS`]: each is a sink YAML block plus an optional setup (an emulator to start).
//! After Sluice's `file` sink, `kafka-sinks` runs Apache Kafka Connect standalone with its
//! file sink on the same topic ([`connect`]), the reference a Connect user compares with.
//!
//! The broker is `SLUICE_TEST_KAFKA` (default 127.0.0.1:19092: Apache Kafka, KRaft, one
//! node, `scripts/start-kafka.sh`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

use crate::measure::{sluice_bin, wait_with_rusage, Report};

mod connect;
mod hec_receiver;
pub mod replay;

const RECORDS: u64 = 1_000_000;
const PARTITIONS: i32 = 4;
/// How long a reader may take before the scenario fails.
const READ_TIMEOUT: Duration = Duration::from_secs(600);

/// A sink for the `kafka -> sink` scenario. `setup` starts whatever the sink talks to.
pub struct SinkScenario {
    pub name: &'static str,
    pub setup: fn() -> Result<SinkSetup, String>,
}

/// What a sink scenario's setup returns.
pub struct SinkSetup {
    /// The sink block, YAML flow style on one line: `{ type: blackhole }`.
    pub yaml: String,
    /// Kept alive for the run (an emulator server, a temp dir).
    pub guard: Box<dyn std::any::Any>,
}

/// `, compression: <value>` for the sinks that gzip by default (`splunk_hec`,
/// `datadog_logs`) when `SLUICE_BENCH_COMPRESSION` is set (`none`, `gzip`); empty otherwise,
/// so they run with their defaults.
fn compression() -> String {
    std::env::var("SLUICE_BENCH_COMPRESSION")
        .map(|c| format!(", compression: {c}"))
        .unwrap_or_default()
}

/// Sinks measured after the bare consumer. Sink issues append theirs here.
pub const SINKS: &[SinkScenario] = &[
    SinkScenario {
        name: "blackhole",
        setup: || {
            Ok(SinkSetup {
                yaml: "{ type: blackhole }".to_string(),
                guard: Box::new(()),
            })
        },
    },
    SinkScenario {
        // One line per record, appended to a file on this machine's disk.
        name: "file",
        setup: || {
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            Ok(SinkSetup {
                yaml: format!(
                    "{{ type: file, path: \"{}\" }}",
                    dir.path().join("out.jsonl").display()
                ),
                guard: Box::new(dir),
            })
        },
    },
    SinkScenario {
        // Gzip on (the default; `SLUICE_BENCH_COMPRESSION` overrides it), metadata fixed,
        // time read from the record: a typical audit-trail configuration. The receiver only
        // counts.
        name: "splunk_hec",
        setup: || {
            let (url, counts) = hec_receiver::start()?;
            Ok(SinkSetup {
                yaml: format!(
                    "{{ type: splunk_hec, endpoint: \"{url}\", \
                     token: \"00000000-0000-0000-0000-000000000000\", index: main, \
                     sourcetype: \"cmmc:assessment:event\", time_field: timestamp{} }}",
                    compression()
                ),
                guard: Box::new(counts),
            })
        },
    },
    SinkScenario {
        // Defaults (op_type create, ids from topic-partition-offset, no compression on a
        // LAN), a fixed index. The receiver answers like a cluster but only counts.
        name: "elasticsearch",
        setup: || {
            let (rt, (server, count)) =
                counting_receiver(sluice_testkit::elasticsearch::start_counter)?;
            Ok(SinkSetup {
                yaml: format!(
                    "{{ type: elasticsearch, endpoints: [\"{}\"], index: audit, op_type: create }}",
                    server.url()
                ),
                guard: Box::new((count, server, rt)),
            })
        },
    },
    SinkScenario {
        // Gzip (the default, level 1; `SLUICE_BENCH_COMPRESSION` overrides it), fixed service
        // and source, the whole event as message.
        name: "datadog_logs",
        setup: || {
            let (rt, (server, count)) = counting_receiver(sluice_testkit::datadog::start_counter)?;
            Ok(SinkSetup {
                yaml: format!(
                    "{{ type: datadog_logs, endpoint: \"{}\", api_key: bench, \
                     service: cmmc-scout, ddsource: sluice{} }}",
                    server.url(),
                    compression()
                ),
                guard: Box::new((count, server, rt)),
            })
        },
    },
    SinkScenario {
        // The default audit table (`create_table: true`: a primary key on the event id and
        // indexes on time, type and tenant), binary COPY. Dropped after the run.
        name: "postgres",
        setup: || {
            let url = crate::stores::postgres_url();
            let table = format!("bench_kafka_{}", unix_millis());
            Ok(SinkSetup {
                yaml: format!(
                    "{{ type: postgres, url: \"{url}\", table: {table}, create_table: true }}"
                ),
                guard: Box::new(DropTable { url, table }),
            })
        },
    },
    SinkScenario {
        // Stream mode (`XADD key * payload <record>`), one pipelined round trip per batch.
        // The key is deleted after the run.
        name: "redis",
        setup: || {
            let url = crate::stores::redis_url();
            let key = format!("bench:kafka:{}", unix_millis());
            Ok(SinkSetup {
                yaml: format!("{{ type: redis, url: \"{url}\", mode: stream, key: \"{key}\" }}"),
                guard: Box::new(DeleteKey { url, key }),
            })
        },
    },
];

/// Drops the postgres scenario's table when the run is over.
struct DropTable {
    url: String,
    table: String,
}

impl Drop for DropTable {
    fn drop(&mut self) {
        if let Err(e) =
            crate::stores::psql(&self.url, &format!("DROP TABLE IF EXISTS {}", self.table))
        {
            eprintln!("drop {}: {e}", self.table);
        }
    }
}

/// Deletes the redis scenario's stream when the run is over.
struct DeleteKey {
    url: String,
    key: String,
}

impl Drop for DeleteKey {
    fn drop(&mut self) {
        let _ = Command::new("redis-cli")
            .args(["-u", &self.url, "DEL", &self.key])
            .stdout(Stdio::null())
            .status();
    }
}

/// Starts an in-process receiver from `sluice-testkit` on its own runtime thread.
pub(crate) fn counting_receiver<T, F>(
    start: fn() -> F,
) -> Result<(tokio::runtime::Runtime, T), String>
where
    F: std::future::Future<Output = T>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| format!("receiver runtime: {e}"))?;
    let started = rt.block_on(start());
    Ok((rt, started))
}

pub(crate) fn brokers() -> String {
    std::env::var("SLUICE_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:19092".to_string())
}

/// Rounds of [`blackhole`]: a single run of about a second swings by 10% on a shared VM.
const ROUNDS: usize = 5;

/// `kafka-blackhole`: on one topic, [`ROUNDS`] rounds of the bare consumer, then sluice with
/// `format: json` and `format: raw` into the discarding sink, interleaved so that a slow
/// spell of the machine falls on all three alike. Each round's ratios go to stderr; the
/// reports are the runs of median records/s.
pub fn blackhole() -> Result<Vec<Report>, String> {
    let brokers = brokers();
    let topic = filled_topic(&brokers, RECORDS, PARTITIONS)?;
    let SinkSetup {
        yaml,
        guard: _guard,
    } = (SINKS[0].setup)()?;
    let (mut bare, mut json, mut raw) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        let b = bare_consumer(&brokers, &topic, RECORDS)?;
        let j = sluice(
            "sluice kafka(json) -> blackhole (median)",
            &brokers,
            &topic,
            RECORDS,
            "json",
            &yaml,
        )?;
        let r = sluice(
            "sluice kafka(raw) -> blackhole (median)",
            &brokers,
            &topic,
            RECORDS,
            "raw",
            &yaml,
        )?;
        eprintln!(
            "round {round}: bare {:.0} records/s ({:.3} us); json {:.1}% ({:.3} us); raw {:.1}% ({:.3} us)",
            b.per_second(),
            b.cpu_us_per_record(),
            100.0 * j.per_second() / b.per_second(),
            j.cpu_us_per_record(),
            100.0 * r.per_second() / b.per_second(),
            r.cpu_us_per_record(),
        );
        bare.push(b);
        json.push(j);
        raw.push(r);
    }
    let mut bare = median(bare);
    bare.scenario = "bare rdkafka consumer (count only, median)".into();
    Ok(vec![bare, median(json), median(raw)])
}

/// The run of median records/s.
fn median(mut runs: Vec<Report>) -> Report {
    runs.sort_by(|a, b| a.per_second().total_cmp(&b.per_second()));
    runs.swap_remove(runs.len() / 2)
}

/// `kafka-sinks`: the bare consumer, then every sink in [`SINKS`], and Kafka Connect's file
/// sink after Sluice's. `SLUICE_BENCH_SINKS` (names, comma-separated) runs only those sinks,
/// and Connect only when all of them.
pub fn all_sinks() -> Result<Vec<Report>, String> {
    let Ok(names) = std::env::var("SLUICE_BENCH_SINKS") else {
        return run_sinks(SINKS);
    };
    let names: Vec<&str> = names.split(',').map(str::trim).collect();
    if let Some(unknown) = names.iter().find(|n| !SINKS.iter().any(|s| s.name == **n)) {
        return Err(format!(
            "SLUICE_BENCH_SINKS: no sink scenario `{unknown}` (there are: {})",
            SINKS.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
        ));
    }
    let picked: Vec<SinkScenario> = SINKS
        .iter()
        .filter(|s| names.contains(&s.name))
        .map(|s| SinkScenario {
            name: s.name,
            setup: s.setup,
        })
        .collect();
    run_sinks(&picked)
}

/// Whether [`run_sinks`] runs Kafka Connect after Sluice's `file` sink: only when every sink
/// runs, so the narrower scenarios need no JVM.
fn with_connect(sinks: &[SinkScenario]) -> bool {
    sinks.len() == SINKS.len()
}

fn run_sinks(sinks: &[SinkScenario]) -> Result<Vec<Report>, String> {
    let brokers = brokers();
    let topic = filled_topic(&brokers, RECORDS, PARTITIONS)?;
    let load = Load::start();
    let mut reports = vec![bare_consumer(&brokers, &topic, RECORDS)?];
    load.report(&reports[0]);
    for sink in sinks {
        let SinkSetup {
            yaml,
            guard: _guard,
        } = (sink.setup)()?;
        let load = Load::start();
        reports.push(sluice(
            &format!("sluice kafka(json) -> {}", sink.name),
            &brokers,
            &topic,
            RECORDS,
            "json",
            &yaml,
        )?);
        load.report(&reports[reports.len() - 1]);
        if sink.name == "blackhole" {
            let load = Load::start();
            reports.push(sluice(
                "sluice kafka(raw) -> blackhole",
                &brokers,
                &topic,
                RECORDS,
                "raw",
                &yaml,
            )?);
            load.report(&reports[reports.len() - 1]);
        }
        if sink.name == "file" && with_connect(sinks) {
            let ours = reports.last().map(|r| r.cpu_us_per_record());
            let load = Load::start();
            let theirs = connect::file_sink(&brokers, &topic)?;
            load.report(&theirs);
            if let Some(ours) = ours {
                eprintln!(
                    "sluice file sink: {:.3} CPU us/record, {:.2}x of Kafka Connect's {:.3} \
                     (JVM start-up included)",
                    ours,
                    ours / theirs.cpu_us_per_record(),
                    theirs.cpu_us_per_record()
                );
            }
            reports.push(theirs);
        }
    }
    Ok(reports)
}

fn unix_millis() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
}

/// A bench topic, deleted when the scenario is over (each holds a few hundred MB).
pub(crate) struct BenchTopic {
    name: String,
    brokers: String,
}

impl std::ops::Deref for BenchTopic {
    type Target = str;
    fn deref(&self) -> &str {
        &self.name
    }
}

impl Drop for BenchTopic {
    fn drop(&mut self) {
        let deleted = admin(&self.brokers).and_then(|admin| {
            futures::executor::block_on(admin.delete_topics(
                &[self.name.as_str()],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            ))
            .map_err(|e| e.to_string())
        });
        if let Err(e) = deleted {
            eprintln!("delete topic {}: {e}", self.name);
        }
    }
}

/// A new topic of `partitions` partitions holding `records` events spread evenly over them.
pub(crate) fn filled_topic(
    brokers: &str,
    records: u64,
    partitions: i32,
) -> Result<BenchTopic, String> {
    let name = format!("bench-{}-{}", std::process::id(), unix_millis());
    create_topic(brokers, &name, partitions)?;
    let topic = BenchTopic {
        name,
        brokers: brokers.to_string(),
    };
    let bytes = produce(brokers, &topic, records, partitions)?;
    eprintln!(
        "produced {records} events ({:.0} B average) to {} ({partitions} partitions)",
        bytes as f64 / records as f64,
        topic.name
    );
    Ok(topic)
}

fn admin(brokers: &str) -> Result<AdminClient<DefaultClientContext>, String> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(|e| format!("admin client: {e}"))
}

fn create_topic(brokers: &str, topic: &str, partitions: i32) -> Result<(), String> {
    let admin = admin(brokers)?;
    let results = futures::executor::block_on(admin.create_topics(
        &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
    ))
    .map_err(|e| {
        format!("create topic on {brokers} (is the broker up? scripts/start-kafka.sh): {e}")
    })?;
    for r in results {
        r.map_err(|(t, e)| format!("create topic {t}: {e}"))?;
    }
    Ok(())
}

/// One event: realistic fields, about 300 bytes.
pub(crate) fn event(seq: u64, out: &mut Vec<u8>) {
    out.clear();
    let _ = write!(
        out,
        concat!(
            r#"{{"seq":{seq},"event_id":"7f1c{seq:012x}-4a1b-9c2d","event_type":"control.evaluated","#,
            r#""timestamp":"2026-11-22T10:15:{sec:02}.{ms:03}Z","tenant_id":"tenant-{tenant}","#,
            r#""assessment_id":"asm-{asm:06}","control_id":"AC.L2-3.1.{ctl}","severity":"high","#,
            r#""framework":"CMMC 2.0","status":"NOT_MET","actor":"scanner@cmmc-scout","#,
            r#""source":"bench"}}"#
        ),
        seq = seq,
        sec = seq % 60,
        ms = seq % 1000,
        tenant = seq % 8,
        asm = seq % 1000,
        ctl = seq % 22,
    );
}

/// Produces the events in large batches; returns the payload bytes written.
fn produce(brokers: &str, topic: &str, records: u64, partitions: i32) -> Result<u64, String> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "50")
        .set("batch.num.messages", "10000")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "500000")
        .create()
        .map_err(|e| format!("producer: {e}"))?;
    let mut buf = Vec::with_capacity(512);
    let mut bytes = 0u64;
    for seq in 0..records {
        event(seq, &mut buf);
        bytes += buf.len() as u64;
        let key = seq.to_string();
        let mut record = BaseRecord::to(topic)
            .payload(&buf[..])
            .key(key.as_bytes())
            .partition((seq % partitions as u64) as i32);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((e, back)) => {
                    if e.rdkafka_error_code() != Some(rdkafka::types::RDKafkaErrorCode::QueueFull) {
                        return Err(format!("produce: {e}"));
                    }
                    record = back;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .map_err(|e| format!("flush: {e}"))?;
    Ok(bytes)
}

/// `sluice-bench __bare-consumer BROKERS TOPIC COUNT`: reads COUNT messages with a plain
/// consumer group member and exits. Run as a child so it is measured like sluice. It fetches
/// with the `kafka` source's `fetch.queue.backoff.ms` (10 ms): with librdkafka's 1 s default
/// a full local queue stops fetching for up to a second, a stall the source does not have.
pub fn bare_consumer_main(args: &[String]) -> Result<(), String> {
    let [brokers, topic, count] = args else {
        return Err("usage: __bare-consumer BROKERS TOPIC COUNT".into());
    };
    let count: u64 = count.parse().map_err(|_| "COUNT must be a number")?;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("bench-bare-{}", unix_millis()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.queue.backoff.ms", "10")
        .create()
        .map_err(|e| format!("consumer: {e}"))?;
    consumer
        .subscribe(&[topic])
        .map_err(|e| format!("subscribe: {e}"))?;
    let (mut n, mut bytes) = (0u64, 0u64);
    while n < count {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                n += 1;
                bytes += m.payload_len() as u64;
            }
            Some(Err(e)) => eprintln!("bare consumer: {e}"),
            None => {}
        }
    }
    // The parent takes its measurement at this line; closing the consumer (leaving the
    // group, joining librdkafka's threads: about 0.1 s) comes after and is not counted.
    let mut out = std::io::stdout().lock();
    writeln!(out, "done")
        .and_then(|()| out.flush())
        .map_err(|e| e.to_string())?;
    eprintln!("bare consumer: {n} messages, {bytes} bytes");
    Ok(())
}

pub(crate) fn bare_consumer(brokers: &str, topic: &str, records: u64) -> Result<Report, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut child = Command::new(exe)
        .args(["__bare-consumer", brokers, topic, &records.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn bare consumer: {e}"))?;
    // Measured when the child says it counted the last record, as `sluice` is when its
    // metrics say so: neither reader's shutdown is counted.
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line)
            .map_err(|e| format!("read bare consumer: {e}"))?;
    }
    let wall = started.elapsed();
    let cpu = proc_cpu(child.id());
    let (status, _) = wait_with_rusage(child.id() as libc::pid_t)?;
    if status != 0 || line.trim() != "done" {
        return Err(format!(
            "bare consumer exited with {status} without reporting its last record"
        ));
    }
    Ok(Report {
        scenario: "bare rdkafka consumer (count only)".into(),
        records,
        wall,
        cpu: cpu?,
        baseline: false,
    })
}

/// The pipeline's `batch:` in the Kafka scenarios.
pub(crate) const BATCH: &str = "{ max_events: 2000, max_bytes: 4MiB, linger: 50ms }";

/// Runs `sluice run` kafka -> sink until the sink has taken every record, then stops it.
pub(crate) fn sluice(
    name: &str,
    brokers: &str,
    topic: &str,
    records: u64,
    format: &str,
    sink_yaml: &str,
) -> Result<Report, String> {
    sluice_batched(name, brokers, topic, records, format, sink_yaml, BATCH)
}

/// [`sluice`] with the pipeline's `batch:` given.
pub(crate) fn sluice_batched(
    name: &str,
    brokers: &str,
    topic: &str,
    records: u64,
    format: &str,
    sink_yaml: &str,
    batch: &str,
) -> Result<Report, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| e.to_string())?;
    let admin = format!("127.0.0.1:{port}");
    let config = dir.path().join("bench.yaml");
    let yaml = format!(
        "host: {{ data_dir: \"{d}/data\", admin: {{ listen: \"{admin}\" }} }}\n\
         pipelines:\n  - name: bench\n    source: {{ type: kafka, brokers: \"{brokers}\", \
         topics: [\"{topic}\"], group_id: \"bench-sluice-{ms}\", format: {format} }}\n    \
         sink: {sink_yaml}\n    batch: {batch}\n",
        d = dir.path().display(),
        ms = unix_millis(),
    );
    std::fs::write(&config, yaml).map_err(|e| e.to_string())?;
    let log = std::fs::File::create(dir.path().join("sluice.log")).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut child = Command::new(sluice_bin()?)
        .args(["run", &config.display().to_string()])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("spawn sluice: {e}"))?;
    let pid = child.id();
    let result = (|| loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Err(format!("sluice exited early ({status})"));
        }
        if started.elapsed() > READ_TIMEOUT {
            return Err(format!("sluice did not deliver {records} records in time"));
        }
        if sent(&admin).is_some_and(|n| n >= records) {
            let wall = started.elapsed();
            let cpu = proc_cpu(pid)?;
            return Ok(Report {
                scenario: name.to_string(),
                records,
                wall,
                cpu,
                baseline: false,
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    })();
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = child.wait();
    if result.is_err() {
        let log = std::fs::read_to_string(dir.path().join("sluice.log")).unwrap_or_default();
        eprintln!("{}", tail(&log, 30));
    }
    result
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `sluice_records_sent_total{pipeline="bench",sink="default"}` from the admin server.
fn sent(admin: &str) -> Option<u64> {
    let mut s = TcpStream::connect(admin).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {admin}\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    let prefix = "sluice_records_sent_total{pipeline=\"bench\",sink=\"default\"} ";
    body.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

/// What else used the machine during a run: the broker's CPU (its pid from the pid file
/// `scripts/start-kafka.sh` writes), this process's (the HTTP sinks' receivers) and the busy
/// share of all cores (`/proc/stat`). With the
/// broker on the same cores, a client that needs more CPU per record than the cores left
/// over can give it reads fewer records a second: this shows whether that was the limit.
struct Load {
    broker: Option<(u32, Duration)>,
    /// This process: the receivers the HTTP sinks post to run in it.
    receivers: Option<Duration>,
    machine: Option<(u64, u64)>,
}

impl Load {
    fn start() -> Self {
        let broker = broker_pid().and_then(|pid| Some((pid, proc_cpu(pid).ok()?)));
        Load {
            broker,
            receivers: proc_cpu(std::process::id()).ok(),
            machine: machine_ticks(),
        }
    }

    fn report(&self, run: &Report) {
        let mut parts = Vec::new();
        if let Some((pid, before)) = self.broker {
            if let Ok(after) = proc_cpu(pid) {
                let us = after.saturating_sub(before).as_secs_f64() * 1e6 / run.records as f64;
                parts.push(format!("broker {us:.3} CPU us/record"));
            }
        }
        if let (Some(before), Ok(after)) = (self.receivers, proc_cpu(std::process::id())) {
            let us = after.saturating_sub(before).as_secs_f64() * 1e6 / run.records as f64;
            parts.push(format!("bench process (receivers) {us:.3} CPU us/record"));
        }
        if let (Some((busy0, all0)), Some((busy1, all1))) = (self.machine, machine_ticks()) {
            let share = (busy1 - busy0) as f64 / (all1 - all0).max(1) as f64;
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            parts.push(format!(
                "machine busy {:.0}% of {cores} cores",
                share * 100.0
            ));
        }
        if !parts.is_empty() {
            eprintln!("  {}: {}", run.scenario, parts.join(", "));
        }
    }
}

fn broker_pid() -> Option<u32> {
    let data = std::env::var("SLUICE_KAFKA_DATA").ok().unwrap_or_else(|| {
        format!(
            "{}/.cache/sluice/kafka-data",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    std::fs::read_to_string(Path::new(&data).join("broker.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Busy and total ticks of all cores since boot (the first line of `/proc/stat`; idle and
/// iowait count as not busy).
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4)?;
    Some((total - idle, total))
}

/// user+sys CPU of a running process from `/proc/<pid>/stat` (fields 14 and 15, in ticks).
fn proc_cpu(pid: u32) -> Result<Duration, String> {
    let stat = std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat"))
        .map_err(|e| format!("read /proc/{pid}/stat: {e}"))?;
    // The command name (field 2) may contain spaces; fields after it follow the last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or("unreadable /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<u64, String> {
        fields
            .get(i)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| "unreadable /proc stat field".to_string())
    };
    // After ')': field 3 is index 0, so utime (14) is index 11 and stime (15) index 12.
    let total = ticks(11)? + ticks(12)?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(Duration::from_micros(total * 1_000_000 / hz))
}
