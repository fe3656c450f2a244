//! The real binary against a real Apache Kafka broker where the broker's own behaviour
//! matters: a consumer group losing a member to `kill -9`, the broker stopped mid-run,
//! aborted transactions, a compacted topic with holes in its offsets, a topic created while
//! running that matches `topic_pattern`, record batches in every compression codec, and a
//! Kafka DLQ whose broker is unreachable.
//!
//! Tests that stop a broker run their own (`PrivateBroker`, own ports and data directory):
//! the shared broker at SLUICE_TEST_KAFKA stays up for the other tests.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value;

use crate::common::*;
use crate::kafka::{
    assert_all, broker_port, duplicates, event, health, kafka_source, kafka_to_file,
    produce_events, produce_raw, unique_seqs, wait_logged, PrivateBroker,
};
use sluice_testkit::kafka::{create_topic, read_topic, real_broker as broker, unique};

const SECS: Duration = Duration::from_secs(1);

/// The partitions of the last "kafka partitions assigned" line of a sluice log.
fn last_assignment(log: &str) -> BTreeSet<i32> {
    log.lines()
        .rev()
        .find(|l| l.contains("kafka partitions assigned"))
        .map(|l| {
            l.split_whitespace()
                .filter_map(|w| w.rsplit_once('/').and_then(|(_, p)| p.parse().ok()))
                .collect()
        })
        .unwrap_or_default()
}

/// The group's committed offset of each partition, as the broker has it (-1: none).
pub(crate) fn committed(
    brokers: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> Option<Vec<i64>> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()
        .ok()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = c.committed_offsets(tpl, 5 * SECS).ok()?;
    Some(
        (0..partitions)
            .map(|p| match got.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => -1,
            })
            .collect(),
    )
}

/// (low, high) watermarks of a partition.
fn watermarks(brokers: &str, topic: &str, partition: i32) -> Option<(i64, i64)> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .ok()?;
    c.fetch_watermarks(topic, partition, 5 * SECS).ok()
}

/// Merged `seq` counts of several output files.
fn counts_of(files: &[&std::path::Path]) -> std::collections::HashMap<u64, u32> {
    let mut all = std::collections::HashMap::new();
    for f in files {
        for (k, v) in seq_counts(f) {
            *all.entry(k).or_insert(0) += v;
        }
    }
    all
}

#[test]
fn two_processes_split_the_partitions_and_the_survivor_delivers_everything() {
    let brokers = broker();
    let topic = unique("e2e.group");
    create_topic(&brokers, &topic, 4);
    let group = unique("g");
    let w = Workdir::new();
    let source = kafka_source(&brokers, &topic, &group, "");
    let a = kafka_to_file(&w, "member-a", &source, "");
    let b = kafka_to_file(&w, "member-b", &source, "");
    let mut sa = w.start(&a.config);
    let mut sb = w.start(&b.config);
    // Both members hold partitions before any event exists.
    let (pa, pb) = wait_logged(
        Duration::from_secs(60),
        "both members assigned",
        &[&sa, &sb],
        || {
            let (pa, pb) = (last_assignment(&sa.logs()), last_assignment(&sb.logs()));
            (!pa.is_empty() && !pb.is_empty() && pa.is_disjoint(&pb) && pa.len() + pb.len() == 4)
                .then_some((pa, pb))
        },
    );
    println!("member a: partitions {pa:?}, member b: partitions {pb:?}");

    // Events keep arriving (2,000 every 50 ms) while b is killed.
    let producing = {
        let (brokers, topic) = (brokers.clone(), topic.clone());
        std::thread::spawn(move || {
            for chunk in (0..60_000).step_by(2_000) {
                produce_events(&brokers, &topic, 4, chunk..chunk + 2_000);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let b_at = wait_logged(
        Duration::from_secs(60),
        "both members delivering and b's first commit",
        &[&sa, &sb],
        || {
            let c = committed(&brokers, &group, &topic, 4)?;
            (count_lines(&a.out) > 1000
                && count_lines(&b.out) > 1000
                && pb.iter().all(|&p| c[p as usize] > 0))
            .then_some(c)
        },
    );
    sb.kill9();
    println!(
        "member b killed at {} lines, group committed {b_at:?}",
        count_lines(&b.out)
    );
    producing.join().expect("producer thread");
    // The dead member's session (6 s) expires, the group rebalances, the survivor takes over.
    wait_logged(
        Duration::from_secs(60),
        "the survivor delivers every event",
        &[&sa],
        || (unique_seqs(&counts_of(&[&a.out, &b.out])) >= 60_000).then_some(()),
    );
    let after = last_assignment(&sa.logs());
    assert_eq!(
        after.len(),
        4,
        "the survivor took over every partition: {after:?}"
    );
    sa.sigterm();
    assert!(sa.wait(Duration::from_secs(60)).success(), "{}", sa.logs());
    let all = counts_of(&[&a.out, &b.out]);
    assert_all(&all, 60_000);
    println!(
        "group failover: member a {} lines, member b {} lines, {} duplicates",
        count_lines(&a.out),
        count_lines(&b.out),
        duplicates(&all)
    );
}

#[test]
fn broker_stopped_for_20_seconds_mid_run_loses_nothing_and_delivery_resumes() {
    let port = broker_port();
    let brokers = format!("127.0.0.1:{port}");
    let w = Workdir::new();
    let kafka = PrivateBroker::start(port, &w.join("kafka"));
    let topic = unique("e2e.outage");
    let group = unique("g");
    create_topic(&brokers, &topic, 4);
    produce_events(&brokers, &topic, 4, 0..20_000);
    let p = kafka_to_file(
        &w,
        "outage",
        &kafka_source(&brokers, &topic, &group, ""),
        "",
    );
    let mut s = w.start(&p.config);
    wait_logged(Duration::from_secs(60), "the first events", &[&s], || {
        (count_lines(&p.out) >= 1000).then_some(())
    });

    assert!(kafka.script("stop").success(), "stop the private broker");
    let down_since = Instant::now();
    let problem = wait_logged(
        Duration::from_secs(20),
        "/health 503 naming the broker",
        &[&s],
        || match health(&p.admin) {
            Some((503, v)) => v["pipelines"]["outage"]["problem"]
                .as_str()
                .map(str::to_string),
            _ => None,
        },
    );
    println!("health while the broker is down: {problem}");
    assert!(problem.contains("kafka consumer"), "{problem}");
    assert!(
        problem.contains(&format!("127.0.0.1:{port}")),
        "the broker is named: {problem}"
    );
    // Down for 20 s in all; sluice keeps running. Records already fetched may still flow
    // (and count as working) just after the stop; by the end of the outage it is unhealthy.
    let mut healthy_probes = 0;
    while down_since.elapsed() < 20 * SECS {
        std::thread::sleep(SECS);
        assert!(
            s.child.try_wait().unwrap().is_none(),
            "sluice keeps running"
        );
        if matches!(health(&p.admin), Some((200, _))) {
            healthy_probes += 1;
        }
    }
    let end = health(&p.admin);
    assert!(
        matches!(end, Some((503, _))),
        "unhealthy at the end of the outage: {end:?}"
    );
    println!("health probes answering 200 during the outage: {healthy_probes}");

    let started = kafka.script("start");
    assert!(started.success(), "start the private broker again");
    produce_events(&brokers, &topic, 4, 20_000..25_000);
    wait_logged(
        Duration::from_secs(60),
        "every event after the broker came back",
        &[&s],
        || (unique_seqs(&seq_counts(&p.out)) >= 25_000).then_some(()),
    );
    wait_for(Duration::from_secs(30), "/health 200 again", || {
        matches!(health(&p.admin), Some((200, _))).then_some(())
    });
    s.sigterm();
    assert!(s.wait(Duration::from_secs(60)).success(), "{}", s.logs());
    let counts = seq_counts(&p.out);
    assert_all(&counts, 25_000);
    println!("broker outage of 20 s: {} duplicates", duplicates(&counts));
}

#[test]
fn aborted_transactions_are_not_delivered_and_the_commit_moves_past_them() {
    let brokers = broker();
    let topic = unique("e2e.txn");
    let group = unique("g");
    create_topic(&brokers, &topic, 1);

    let tx: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("transactional.id", unique("txn"))
        .set("linger.ms", "20")
        .create()
        .expect("transactional producer");
    tx.init_transactions(30 * SECS).expect("init transactions");
    let send = |seqs: std::ops::Range<u64>| {
        for seq in seqs {
            let value = event(seq);
            tx.send(BaseRecord::<(), _>::to(&topic).payload(&value).partition(0))
                .map_err(|(e, _)| e)
                .expect("enqueue");
        }
    };
    // Committed 0..100, aborted 1_000_000.., committed 100..200, aborted again, then plain
    // records 200..300 written outside any transaction (so the last offset is a record).
    tx.begin_transaction().unwrap();
    send(0..100);
    tx.commit_transaction(30 * SECS).expect("commit");
    tx.begin_transaction().unwrap();
    send(1_000_000..1_000_150);
    tx.flush(30 * SECS).unwrap();
    tx.abort_transaction(30 * SECS).expect("abort");
    tx.begin_transaction().unwrap();
    send(100..200);
    tx.commit_transaction(30 * SECS).expect("commit");
    tx.begin_transaction().unwrap();
    send(1_000_150..1_000_200);
    tx.flush(30 * SECS).unwrap();
    tx.abort_transaction(30 * SECS).expect("abort");
    produce_events(&brokers, &topic, 1, 200..300);
    let (_, high) = watermarks(&brokers, &topic, 0).expect("watermarks");
    // 300 records, 200 aborted ones, and 4 control records (commit/abort markers).
    assert_eq!(high, 504, "the log holds aborted records and markers");

    let w = Workdir::new();
    let p = kafka_to_file(&w, "txn", &kafka_source(&brokers, &topic, &group, ""), "");
    let mut s = w.start(&p.config);
    let at = wait_logged(
        Duration::from_secs(60),
        "the group's commit at the end of the partition",
        &[&s],
        || committed(&brokers, &group, &topic, 1).filter(|c| c[0] == high),
    );
    assert_eq!(at, vec![high]);
    s.sigterm();
    assert!(s.wait(Duration::from_secs(60)).success(), "{}", s.logs());
    let counts = seq_counts(&p.out);
    assert_all(&counts, 300);
    assert_eq!(duplicates(&counts), 0);
    assert_eq!(count_lines(&p.out), 300, "no aborted record delivered");
    assert!(
        !s.logs().contains("skipped"),
        "the offsets of aborted records and markers are not reported missing:\n{}",
        s.logs()
    );
}

/// The values of partition 0 below offset `high`, read from the beginning by a plain
/// consumer until the record before `high` (a compacted log still keeps each key's last one).
fn records_in(brokers: &str, topic: &str, high: i64) -> Vec<Vec<u8>> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("readback"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("partition");
    c.assign(&tpl).expect("assign");
    let deadline = Instant::now() + 30 * SECS;
    let mut out = Vec::new();
    while Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            if m.offset() < high {
                out.push(m.payload().unwrap_or_default().to_vec());
            }
            if m.offset() >= high - 1 {
                return out;
            }
        }
    }
    panic!("offset {} of {topic} not read within 30 s", high - 1);
}

/// A compacted topic whose log cleaner already ran: `(offsets produced, offsets left)`.
fn compacted_topic(brokers: &str, topic: &str) -> (i64, usize) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin client");
    let new = NewTopic::new(topic, 1, TopicReplication::Fixed(1))
        .set("cleanup.policy", "compact")
        .set("segment.ms", "100")
        .set("min.cleanable.dirty.ratio", "0.01")
        .set("min.compaction.lag.ms", "0")
        .set("delete.retention.ms", "100");
    let results = futures::executor::block_on(admin.create_topics(
        &[new],
        &AdminOptions::new().operation_timeout(Some(10 * SECS)),
    ))
    .expect("create topics request");
    for r in results {
        r.unwrap_or_else(|(t, e)| panic!("create topic {t}: {e}"));
    }
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    // Rounds of updates of 10 keys; each round after `segment.ms` rolls a new segment, so
    // every round but the last is in a closed segment the cleaner may compact.
    let mut seq = 0u64;
    let mut round = |p: &BaseProducer| {
        for _ in 0..200 {
            let value = event(seq);
            let key = format!("key-{}", seq % 10);
            p.send(BaseRecord::to(topic).payload(&value).key(&key).partition(0))
                .map_err(|(e, _)| e)
                .expect("enqueue");
            seq += 1;
        }
        p.flush(30 * SECS).expect("acknowledged");
    };
    for _ in 0..5 {
        round(&p);
        std::thread::sleep(Duration::from_millis(150));
    }
    let deadline = Instant::now() + 45 * SECS;
    loop {
        // An append after `segment.ms` rolls the segment holding earlier rounds.
        round(&p);
        let (low, high) = watermarks(brokers, topic, 0).expect("watermarks");
        let left = records_in(brokers, topic, high).len();
        if (left as i64) < high - low {
            return (high, left);
        }
        assert!(
            Instant::now() < deadline,
            "the broker's log cleaner did not compact {topic} within 45 s \
             ({left} records in offsets {low}..{high})"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn a_compacted_topic_with_offset_gaps_is_read_to_the_end_without_stall() {
    let brokers = broker();
    let topic = unique("e2e.compact");
    let group = unique("g");
    let (high, left) = compacted_topic(&brokers, &topic);
    println!("compacted topic: {left} records left in offsets 0..{high}");

    let w = Workdir::new();
    let p = kafka_to_file(
        &w,
        "compact",
        &kafka_source(&brokers, &topic, &group, ""),
        "",
    );
    let mut s = w.start(&p.config);
    let high = watermarks(&brokers, &topic, 0).expect("watermarks").1;
    wait_logged(
        Duration::from_secs(60),
        "the group's commit at the end of the partition",
        &[&s],
        || committed(&brokers, &group, &topic, 1).filter(|c| c[0] == high),
    );
    s.sigterm();
    assert!(s.wait(Duration::from_secs(60)).success(), "{}", s.logs());
    // Compaction keeps the latest value of each key: those are delivered.
    let lines = read_jsonl(&p.out);
    let mut latest: BTreeMap<String, u64> = BTreeMap::new();
    for v in &lines {
        let seq = v["seq"].as_u64().expect("seq");
        let key = format!("key-{}", seq % 10);
        let e = latest.entry(key).or_insert(0);
        *e = (*e).max(seq);
    }
    let last_seq = records_in(&brokers, &topic, high)
        .iter()
        .filter_map(|v| serde_json::from_slice::<Value>(v).ok())
        .filter_map(|v| v["seq"].as_u64())
        .max()
        .expect("records");
    assert_eq!(latest.len(), 10, "every key delivered");
    for seq in last_seq.saturating_sub(9)..=last_seq {
        assert_eq!(
            latest[&format!("key-{}", seq % 10)],
            seq,
            "latest value of each key"
        );
    }
    assert!(
        (lines.len() as i64) < high,
        "offsets were missing ({} records for {high} offsets)",
        lines.len()
    );
    assert!(
        !s.logs().contains("skipped"),
        "nothing reported missing:\n{}",
        s.logs()
    );
}

#[test]
fn a_topic_created_while_running_that_matches_the_pattern_is_read() {
    let brokers = broker();
    let prefix = unique("e2e.pattern").replace('-', "_");
    let first = format!("{prefix}.first");
    let second = format!("{prefix}.second");
    create_topic(&brokers, &first, 2);
    produce_events(&brokers, &first, 2, 0..1000);
    let w = Workdir::new();
    // librdkafka looks for new matching topics on each metadata refresh (5 min by default).
    let source = format!(
        "{{ type: kafka, brokers: \"{brokers}\", topic_pattern: \"^{}\\\\..*\", \
         group_id: \"{}\", options: {{ topic.metadata.refresh.interval.ms: 2000 }} }}",
        prefix.replace('.', "\\\\."),
        unique("g")
    );
    let p = kafka_to_file(&w, "pattern", &source, "");
    let mut s = w.start(&p.config);
    wait_logged(Duration::from_secs(60), "the first topic", &[&s], || {
        (unique_seqs(&seq_counts(&p.out)) >= 1000).then_some(())
    });
    create_topic(&brokers, &second, 2);
    produce_events(&brokers, &second, 2, 1000..2000);
    wait_logged(
        Duration::from_secs(60),
        "the topic created while running",
        &[&s],
        || (unique_seqs(&seq_counts(&p.out)) >= 2000).then_some(()),
    );
    s.sigterm();
    assert!(s.wait(Duration::from_secs(60)).success(), "{}", s.logs());
    let counts = seq_counts(&p.out);
    assert_all(&counts, 2000);
    println!("topic pattern: {} duplicates", duplicates(&counts));
}

/// Producers compress with whichever codec they like (Java clients often zstd): the source
/// reads record batches in every codec Kafka has, and the kafka sink writes zstd.
#[test]
fn record_batches_in_every_codec_are_read_and_the_sink_writes_zstd() {
    let brokers = broker();
    let topic = unique("e2e.codecs");
    let copy = unique("e2e.codecs.copy");
    create_topic(&brokers, &topic, 1);
    create_topic(&brokers, &copy, 1);
    let codecs = ["gzip", "snappy", "lz4", "zstd"];
    for (i, codec) in codecs.iter().enumerate() {
        let p: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("compression.type", *codec)
            .set("linger.ms", "20")
            .create()
            .unwrap_or_else(|e| panic!("{codec} producer: {e}"));
        let first = i as u64 * 100;
        for seq in first..first + 100 {
            let value = event(seq);
            p.send(BaseRecord::<(), _>::to(&topic).payload(&value).partition(0))
                .map_err(|(e, _)| e)
                .expect("enqueue");
        }
        p.flush(30 * SECS).expect("acknowledged");
    }
    let w = Workdir::new();
    let config = w.config(
        "codecs.yaml",
        &format!(
            "host:\n  data_dir: {{dir}}/data\npipelines:\n  - name: codecs\n    source: {}\n    \
             sink: {{ type: kafka, brokers: \"{brokers}\", topic: \"{copy}\", \
             options: {{ compression.type: zstd }} }}\n",
            kafka_source(&brokers, &topic, &unique("g"), "")
        ),
    );
    let mut s = w.start(&config);
    let got = read_topic(&brokers, &copy, 400, 60 * SECS);
    s.sigterm();
    assert!(s.wait(60 * SECS).success(), "{}", s.logs());
    let mut seqs: Vec<u64> = got
        .iter()
        .filter_map(|r| serde_json::from_slice::<Value>(&r.value).ok())
        .filter_map(|v| v["seq"].as_u64())
        .collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs, (0..400).collect::<Vec<_>>(), "{}", s.logs());
}

#[test]
fn an_unreachable_kafka_dlq_holds_the_commit_until_the_letter_is_written() {
    let brokers = broker();
    let topic = unique("e2e.dlqdown");
    let group = unique("g");
    create_topic(&brokers, &topic, 1);
    produce_events(&brokers, &topic, 1, 0..10);
    produce_raw(
        &brokers,
        &topic,
        b"<event>not json</event>",
        b"bad-key",
        OwnedHeaders::new(),
    );
    produce_events(&brokers, &topic, 1, 10..20);

    // The DLQ's broker: nothing listens on its port until it is started below.
    let dlq_port = broker_port();
    let dlq_brokers = format!("127.0.0.1:{dlq_port}");
    let w = Workdir::new();
    let p = kafka_to_file(
        &w,
        "dlqdown",
        &kafka_source(&brokers, &topic, &group, ""),
        &format!(
            "    dead_letter: {{ type: kafka, brokers: \"{dlq_brokers}\", \
             options: {{ message.timeout.ms: 3000 }} }}\n"
        ),
    );
    let mut s = w.start(&p.config);
    wait_logged(
        Duration::from_secs(60),
        "the pipeline stopping on the dead-letter failure",
        &[&s],
        || s.logs().contains("kafka DLQ topic").then_some(()),
    );
    // Held while the DLQ is unreachable: the commit never passes the bad record (offset 10).
    let until = Instant::now() + 5 * SECS;
    let mut answers = 0;
    while Instant::now() < until || answers == 0 {
        // A slow answer (loaded machine) is no evidence either way, but at least one is needed.
        if let Some(c) = committed(&brokers, &group, &topic, 1) {
            answers += 1;
            assert!(
                c[0] <= 10,
                "committed past the undelivered dead letter: {c:?}\n{}",
                s.logs()
            );
        }
        assert!(
            Instant::now() < until + 20 * SECS,
            "the broker never answered a committed-offsets query"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        s.child.try_wait().unwrap().is_none(),
        "sluice keeps running"
    );

    let _dlq = PrivateBroker::start(dlq_port, &w.join("dlq-kafka"));
    create_topic(&dlq_brokers, &format!("{topic}.dlq"), 1);
    let back = read_topic(&dlq_brokers, &format!("{topic}.dlq"), 1, 60 * SECS);
    assert!(!back.is_empty(), "the letter arrives once the DLQ is up");
    assert_eq!(back[0].value, b"<event>not json</event>");
    assert_eq!(
        back[0].header("__connect.errors.offset").as_deref(),
        Some("10")
    );
    wait_logged(
        Duration::from_secs(60),
        "the commit past the dead letter",
        &[&s],
        || committed(&brokers, &group, &topic, 1).filter(|c| c[0] == 21),
    );
    s.sigterm();
    assert!(s.wait(Duration::from_secs(60)).success(), "{}", s.logs());
    let counts = seq_counts(&p.out);
    assert_all(&counts, 20);
    println!(
        "unreachable DLQ: {} letters, {} duplicate events",
        back.len(),
        duplicates(&counts)
    );
}
