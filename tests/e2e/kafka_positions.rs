//! Kafka positions against the real broker (SLUICE_TEST_KAFKA): a committed offset that
//! retention passed resumes at the earliest record with the gap logged and counted (even with
//! `start_from: latest`), records deleted while the pipeline reads are logged and counted
//! too, a record batch damaged on the broker's disk stops its partition (nothing altered is
//! delivered, nothing skipped) until `sluice offsets reset` moves past it, a damaged batch
//! of a Kafka DLQ is refused by `sluice dlq` instead of shown or replayed altered, and
//! `/pipelines` and `sluice offsets` show the group's partitions.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value;

use crate::common::*;
use crate::kafka::{
    broker_port, health, kafka_source, kafka_to_file, produce_raw, wait_logged, PrivateBroker,
};
use rdkafka::message::OwnedHeaders;
use sluice_testkit::kafka::{create_topic, read_topic, real_broker, unique};

const SECS: Duration = Duration::from_secs(1);

/// Produces `seqs` to partition 0 with the producer's `settings` beside the brokers.
fn produce(brokers: &str, topic: &str, seqs: std::ops::Range<u64>, settings: &[(&str, &str)]) {
    produce_to(brokers, topic, 0, seqs, settings);
}

/// [`produce`] to `partition`.
fn produce_to(
    brokers: &str,
    topic: &str,
    partition: i32,
    seqs: std::ops::Range<u64>,
    settings: &[(&str, &str)],
) {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", brokers);
    for (k, v) in settings {
        cfg.set(*k, *v);
    }
    let p: BaseProducer = cfg.create().expect("producer");
    for seq in seqs {
        let value = format!(r#"{{"seq":{seq}}}"#);
        p.send(
            BaseRecord::<[u8], _>::to(topic)
                .payload(value.as_bytes())
                .partition(partition),
        )
        .map_err(|(e, _)| e)
        .expect("enqueue");
    }
    p.flush(Duration::from_secs(30)).expect("acknowledged");
}

/// A fresh one-partition topic and a pipeline `name` reading it into `out.jsonl`, with the
/// admin endpoint on; `source` adds keys to the kafka source, `pipeline` to the pipeline.
struct Setup {
    brokers: String,
    topic: String,
    w: Workdir,
    admin: String,
    out: std::path::PathBuf,
    config: std::path::PathBuf,
}

fn setup(name: &str, source: &str, pipeline: &str) -> Setup {
    let brokers = real_broker();
    let topic = unique(name);
    let group = unique("g");
    create_topic(&brokers, &topic, 1);
    let w = Workdir::new();
    let admin = format!("127.0.0.1:{}", free_port());
    let out = w.join("out.jsonl");
    let config = w.config(
        "p.yaml",
        &format!(
            "host:\n  data_dir: {{dir}}/data\n  admin: {{ listen: \"{admin}\" }}\n\
             pipelines:\n  - name: {name}\n    source: {{ type: kafka, brokers: \"{brokers}\", \
             topics: [\"{topic}\"], group_id: \"{group}\", {source} }}\n    \
             sink: {{ type: file, path: \"{}\" }}\n{pipeline}",
            out.display()
        ),
    );
    Setup {
        brokers,
        topic,
        w,
        admin,
        out,
        config,
    }
}

/// Deletes the records of partition 0 below `before`, as retention would.
fn delete_records(brokers: &str, topic: &str, before: i64) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin client");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(before))
        .expect("offset list");
    let done = futures::executor::block_on(admin.delete_records(
        &tpl,
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
    ))
    .expect("delete records");
    for e in done.elements() {
        assert!(e.error().is_ok(), "delete records: {:?}", e.error());
    }
}

fn seqs(path: &std::path::Path) -> Vec<u64> {
    read_jsonl(path)
        .iter()
        .filter_map(|v| v["seq"].as_u64())
        .collect()
}

fn offsets_json(w: &Workdir, config: &std::path::Path) -> Value {
    let out = w.sluice(&["offsets", "--json", config.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("offsets --json")
}

#[test]
fn a_retention_gap_resumes_at_the_earliest_record_and_positions_are_shown() {
    let Setup {
        brokers,
        topic,
        w,
        admin,
        out,
        config,
    } = setup(
        "pos",
        "start_from: latest, options: { statistics.interval.ms: 500 }",
        "    batch: { linger: 50ms }\n",
    );

    // First run: no committed offset, so `latest` applies; then 20 records arrive.
    let mut s = w.start(&config);
    wait_for(30 * SECS, "partition assigned", || {
        s.logs().contains("kafka partitions assigned").then_some(())
    });
    produce(&brokers, &topic, 0..20, &[]);
    wait_for(30 * SECS, "20 records", || {
        (seqs(&out).len() >= 20).then_some(())
    });
    // While running, /pipelines shows the assigned partition with its position.
    let part = wait_for(30 * SECS, "partitions in /pipelines", || {
        let (_, body) = http_get(&format!("http://{admin}/pipelines"))?;
        let v: Value = serde_json::from_str(&body).ok()?;
        let p = v["pipelines"][0]["partitions"][0].clone();
        (p["stream"] == topic.as_str() && p["end"] == 20).then_some(p)
    });
    assert_eq!(part["partition"], 0, "{part}");
    s.sigterm();
    assert!(s.wait(30 * SECS).success());

    // Offline: the group's committed offset, the partition's end and the lag.
    let v = offsets_json(&w, &config);
    let p = &v["pos"]["upstream"]["partitions"][0];
    assert_eq!(p["stream"], topic.as_str(), "{v}");
    assert_eq!(
        (
            p["committed"].as_i64(),
            p["end"].as_i64(),
            p["lag"].as_i64()
        ),
        (Some(20), Some(20), Some(0)),
        "{v}"
    );

    // While stopped: 30 more records, and retention removes everything below offset 35.
    produce(&brokers, &topic, 20..50, &[]);
    delete_records(&brokers, &topic, 35);
    let v = offsets_json(&w, &config);
    let p = &v["pos"]["upstream"]["partitions"][0];
    assert_eq!(
        (
            p["committed"].as_i64(),
            p["end"].as_i64(),
            p["lag"].as_i64()
        ),
        (Some(20), Some(50), Some(15)),
        "{v}"
    );
    let text = w.sluice(&["offsets", config.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(&format!("{topic}/0: committed 20, end 50, lag 15")),
        "{text}"
    );

    // Second run: the committed offset 20 is gone; reading resumes at 35 (not at the end,
    // despite `start_from: latest`), the gap of 15 is logged and counted.
    let mut s = w.start(&config);
    wait_for(30 * SECS, "records after the gap", || {
        (seqs(&out).len() >= 35).then_some(())
    });
    let got = seqs(&out);
    assert_eq!(got[20..], (35..50).collect::<Vec<_>>()[..], "{got:?}");
    let skipped = wait_for(10 * SECS, "skipped metric", || {
        metric(&admin, "sluice_source_skipped_records_total", "pos").filter(|v| *v > 0.0)
    });
    assert_eq!(skipped, 15.0);
    let logs = s.logs();
    let warn = logs
        .lines()
        .find(|l| l.contains("WARN") && l.contains("no longer readable"))
        .unwrap_or_else(|| panic!("no WARN about the gap:\n{logs}"));
    assert!(warn.contains("15 records skipped"), "{warn}");
    s.sigterm();
    assert!(s.wait(30 * SECS).success());
}

/// Retention overtaking a slow pipeline while it reads: librdkafka goes on from the earliest
/// record; the records deleted before they were read are logged and counted, so every
/// record is either delivered or counted as skipped.
#[test]
fn records_deleted_while_the_pipeline_reads_are_logged_and_counted() {
    // Fetches of about a kilobyte (a dozen of these batches) and a paced pipeline keep the
    // consumer's position far behind the deletion below.
    let t = setup(
        "slow",
        "options: { message.max.bytes: 1000, fetch.max.bytes: 1000, \
         max.partition.fetch.bytes: 1000, queued.max.messages.kbytes: 1 }",
        "    batch: { max_events: 5, linger: 20ms }\n    rate_limit: { events_per_second: 40 }\n",
    );
    // Each record in a record batch of its own, so those fetches stay far behind the end.
    let one_per_batch = [("batch.num.messages", "1"), ("linger.ms", "0")];
    produce(&t.brokers, &t.topic, 0..400, &one_per_batch);
    let mut s = t.w.start(&t.config);
    wait_for(30 * SECS, "first records", || {
        (seqs(&t.out).len() >= 20).then_some(())
    });
    delete_records(&t.brokers, &t.topic, 300);
    wait_for(60 * SECS, "the last record", || {
        (seqs(&t.out).last() == Some(&399)).then_some(())
    });
    let got = seqs(&t.out);
    let read = got
        .iter()
        .position(|&q| q >= 300)
        .expect("records after the gap");
    assert!(
        read < 300,
        "every record was read before the deletion: {got:?}"
    );
    assert_eq!(
        got[..read],
        (0..read as u64).collect::<Vec<_>>()[..],
        "{got:?}"
    );
    assert_eq!(got[read..], (300..400).collect::<Vec<_>>()[..], "{got:?}");
    let missing = 300 - read as u64;
    let skipped = wait_for(10 * SECS, "skipped metric", || {
        metric(&t.admin, "sluice_source_skipped_records_total", "slow").filter(|v| *v > 0.0)
    });
    assert_eq!(skipped, missing as f64, "{got:?}");
    let logs = s.logs();
    let warn = logs
        .lines()
        .find(|l| l.contains("WARN") && l.contains("deleted before they were read"))
        .unwrap_or_else(|| panic!("no WARN about the deleted records:\n{logs}"));
    assert!(
        warn.contains(&format!("{missing} records skipped")),
        "{warn}"
    );
    s.sigterm();
    assert!(s.wait(30 * SECS).success());
}

/// A private broker in a fresh work directory (the tests alter segment files in its log
/// directory): the directory, the broker's address, its data directory and the broker.
fn private_broker() -> (Workdir, String, std::path::PathBuf, PrivateBroker) {
    let port = broker_port();
    let w = Workdir::new();
    let data = w.join("kafka");
    let kafka = PrivateBroker::start(port, &data);
    (w, format!("127.0.0.1:{port}"), data, kafka)
}

/// Changes one byte of `needle` in the first segment of `topic`'s partition 0 in a private
/// broker's `data`, as a bad disk would: the record batch no longer fits its checksum.
fn damage_segment(data: &std::path::Path, topic: &str, needle: &[u8], at: usize, to: u8) {
    let segment = data
        .join("logs")
        .join(format!("{topic}-0"))
        .join("00000000000000000000.log");
    let mut bytes = std::fs::read(&segment).expect("read the segment");
    let found = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the record in the segment");
    bytes[found + at] = to;
    std::fs::write(&segment, &bytes).expect("write the segment");
}

/// How many times a process logged that a batch failed its checksum.
fn checksum_warnings(s: &Sluice) -> usize {
    s.logs()
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("failed its checksum"))
        .count()
}

#[test]
fn a_partition_stopped_at_a_damaged_batch_stops_again_wherever_a_rebalance_puts_it() {
    let (w, brokers, data, _kafka) = private_broker();
    let topic = unique("crcmove");
    create_topic(&brokers, &topic, 2);
    // Partition 0: batches 0-9, 10-19 (damaged below), 20-29; partition 1: 100-129.
    let ten_per_batch = [("batch.num.messages", "10"), ("linger.ms", "1000")];
    for seqs in [0..10, 10..20, 20..30] {
        produce_to(&brokers, &topic, 0, seqs, &ten_per_batch);
    }
    produce_to(&brokers, &topic, 1, 100..130, &ten_per_batch);
    damage_segment(&data, &topic, br#"{"seq":15}"#, 8, b'6');
    let stopped_text = format!("{topic}/0 stopped at offset 10");

    // Two members of one group, the second started once the first stopped at the batch.
    let source = kafka_source(&brokers, &topic, &unique("g"), "");
    let a = kafka_to_file(&w, "crca", &source, "");
    let b = kafka_to_file(&w, "crcb", &source, "");
    let stopped = |admin: &str, name: &str| match health(admin) {
        Some((503, v)) => v["pipelines"][name]["problem"]
            .as_str()
            .is_some_and(|t| t.contains(&stopped_text)),
        _ => false,
    };
    let healthy = |admin: &str| matches!(health(admin), Some((200, _)));
    let mut sa = w.start(&a.config);
    wait_logged(
        30 * SECS,
        "the first member stopped at the batch",
        &[&sa],
        || stopped(&a.admin, "crca").then_some(()),
    );
    let mut sb = w.start(&b.config);
    // Whichever member partition 0 goes to reads the batch again and stops there again,
    // saying so; the other one is healthy (a revoked partition is not its problem).
    let owner = wait_logged(
        60 * SECS,
        "partition 0 stopped again by its new owner, the other member healthy",
        &[&sa, &sb],
        || {
            if stopped(&a.admin, "crca") && checksum_warnings(&sa) == 2 && healthy(&b.admin) {
                Some("crca")
            } else if stopped(&b.admin, "crcb") && checksum_warnings(&sb) == 1 && healthy(&a.admin)
            {
                Some("crcb")
            } else {
                None
            }
        },
    );
    // The second member leaves: everything goes back to the first, which stops again.
    sb.sigterm();
    assert!(sb.wait(30 * SECS).success(), "{}", sb.logs());
    let before = checksum_warnings(&sa);
    wait_logged(30 * SECS, "the first member stopped again", &[&sa], || {
        (stopped(&a.admin, "crca") && checksum_warnings(&sa) > before).then_some(())
    });
    std::thread::sleep(2 * SECS);
    sa.sigterm();
    assert!(sa.wait(30 * SECS).success(), "{}", sa.logs());

    // Partition 1 whole, partition 0 up to the batch: nothing of it, nothing past it.
    let mut read: Vec<u64> = seqs(&a.out).into_iter().chain(seqs(&b.out)).collect();
    read.sort_unstable();
    read.dedup();
    assert_eq!(
        read,
        (0..10).chain(100..130).collect::<Vec<_>>(),
        "partition 0 went to {owner}"
    );
    println!("damaged partition after the rebalance: with {owner}");
}

#[test]
fn a_damaged_record_batch_of_a_kafka_dlq_is_refused_not_read_altered() {
    let (w, brokers, data, _kafka) = private_broker();
    let topic = unique("dlqcrc");
    let letters = format!("{topic}.letters");
    create_topic(&brokers, &topic, 1);
    create_topic(&brokers, &letters, 1);
    // Three records that are not JSON: the `format: json` source dead-letters them.
    for n in 0..3 {
        let value = format!("<event>bad {n}</event>");
        produce_raw(
            &brokers,
            &topic,
            value.as_bytes(),
            b"k",
            OwnedHeaders::new(),
        );
    }
    let p = kafka_to_file(
        &w,
        "dlqcrc",
        &kafka_source(&brokers, &topic, &unique("g"), ""),
        &format!("    dead_letter: {{ type: kafka, brokers: \"{brokers}\", topic: {letters} }}\n"),
    );
    let mut s = w.start(&p.config);
    let written = read_topic(&brokers, &letters, 3, 60 * SECS);
    assert_eq!(written.len(), 3, "{}", s.logs());
    s.sigterm();
    assert!(s.wait(30 * SECS).success(), "{}", s.logs());
    let cfg = p.config.to_str().unwrap();
    let o = w.sluice(&["dlq", "show", cfg, "--pipeline", "dlqcrc"]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("bad 1"));

    // `bad 1` becomes `bad 7` on the broker's disk: still a plausible letter.
    damage_segment(&data, &letters, b"<event>bad 1</event>", 11, b'7');
    for args in [
        &["dlq", "show", cfg, "--pipeline", "dlqcrc"][..],
        &["dlq", "replay", cfg, "--pipeline", "dlqcrc"],
    ] {
        let o = w.sluice(args);
        let (out, err) = (
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
        );
        assert!(!o.status.success(), "{args:?}: {out}{err}");
        assert!(
            err.contains(&format!(
                "kafka DLQ `{letters}`: a record batch failed its checksum"
            )),
            "{args:?}: {err}"
        );
        assert!(
            !out.contains("bad 7") && !err.contains("bad 7"),
            "{out}{err}"
        );
    }
    // Nothing altered reached the sink.
    let sent = std::fs::read_to_string(&p.out).unwrap_or_default();
    assert!(!sent.contains("bad 7"), "{sent}");
}

#[test]
fn a_record_batch_that_fails_its_checksum_stops_its_partition_until_moved_past() {
    let (w, brokers, data, _kafka) = private_broker();
    let topic = unique("crc");
    let group = unique("g");
    create_topic(&brokers, &topic, 1);
    // Three uncompressed record batches of ten records: 0-9, 10-19, 20-29.
    let ten_per_batch = [("batch.num.messages", "10"), ("linger.ms", "1000")];
    for seqs in [0..10, 10..20, 20..30] {
        produce(&brokers, &topic, seqs, &ten_per_batch);
    }
    // One byte of the middle batch changes in the broker's segment file, as on a bad disk:
    // `{"seq":15}` becomes `{"seq":16}`, valid JSON that the batch's checksum no longer fits.
    damage_segment(&data, &topic, br#"{"seq":15}"#, 8, b'6');

    let p = kafka_to_file(&w, "crc", &kafka_source(&brokers, &topic, &group, ""), "");
    let mut s = w.start(&p.config);
    let problem = wait_logged(
        30 * SECS,
        "/health naming the damaged batch",
        &[&s],
        || match health(&p.admin) {
            Some((503, v)) => v["pipelines"]["crc"]["problem"]
                .as_str()
                .filter(|t| t.contains("checksum"))
                .map(str::to_string),
            _ => None,
        },
    );
    assert!(
        problem.contains(&format!("{topic}/0 stopped at offset 10")),
        "{problem}"
    );
    // It stays stopped: the batch is neither delivered altered nor skipped.
    std::thread::sleep(3 * SECS);
    assert_eq!(seqs(&p.out), (0..10).collect::<Vec<_>>());
    assert!(matches!(health(&p.admin), Some((503, _))));
    assert_eq!(
        metric(&p.admin, "sluice_source_skipped_records_total", "crc"),
        Some(0.0)
    );
    let logs = s.logs();
    let stopped: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("failed its checksum"))
        .collect();
    assert_eq!(stopped.len(), 1, "one WARN for the batch:\n{logs}");
    assert!(stopped[0].contains("CRC32C"), "{}", stopped[0]);
    s.sigterm();
    assert!(s.wait(30 * SECS).success(), "{}", s.logs());

    // The operator moves the group past the batch; the next run reads on from there.
    let cfg = p.config.to_str().unwrap();
    wait_for(30 * SECS, "the reset, once the group is empty", || {
        let out = w.sluice(&["offsets", "reset", cfg, "--pipeline", "crc", "--to", "20"]);
        out.status.success().then_some(())
    });
    let mut s = w.start(&p.config);
    wait_logged(30 * SECS, "the last record", &[&s], || {
        (seqs(&p.out).last() == Some(&29)).then_some(())
    });
    assert_eq!(
        seqs(&p.out),
        (0..10).chain(20..30).collect::<Vec<_>>(),
        "nothing of the damaged batch, nothing twice"
    );
    s.sigterm();
    assert!(s.wait(30 * SECS).success(), "{}", s.logs());

    // A replay over the batch cannot reach its end: it fails, naming the batch.
    let out = w.sluice(&["replay", cfg, "--pipeline", "crc", "--from", "1day"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{topic}/0 stopped at offset 10: its record batch failed its checksum"
        )),
        "{stderr}"
    );
}
