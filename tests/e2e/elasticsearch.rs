//! `elasticsearch` with the real binary: generator -> elasticsearch against the in-process
//! Elasticsearch emulator (no cluster runs here).

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;
use sluice_testkit::elasticsearch::{EsAuth, EsEmulator, EsOptions};

use crate::common::*;

const API_KEY: &str = "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==";

/// The emulator runs on its own runtime threads while the test drives the binary.
fn es_server(opts: EsOptions) -> (tokio::runtime::Runtime, EsEmulator) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let server = rt.block_on(EsEmulator::start_with(opts));
    (rt, server)
}

fn pipeline(w: &Workdir, url: &str, generator: &str, admin: &str) -> std::path::PathBuf {
    w.config(
        "es.yaml",
        &format!(
            r#"host:
  data_dir: "{{dir}}/data"
  admin: {{ listen: "{admin}" }}
pipelines:
  - name: es
    source: {{ type: generator, {generator} }}
    sink:
      type: elasticsearch
      endpoints: ["{url}"]
      index: "audit-{{{{ tenant_id }}}}"
      op_type: create
      auth: {{ type: api_key, key: "${{ES_API_KEY}}" }}
      compression: gzip
    batch: {{ max_events: 250, linger: 20ms }}
    retry: {{ max_attempts: 5, initial_backoff: 10ms, max_backoff: 200ms }}
    commit_interval: 100ms
    dead_letter: {{ type: file }}
"#
        ),
    )
}

fn seq_counts(es: &EsEmulator) -> HashMap<u64, usize> {
    let mut counts = HashMap::new();
    for (index, n) in es.indices() {
        assert!(
            index.starts_with("audit-tenant-"),
            "unexpected index {index}"
        );
        let docs = es.documents(&index);
        assert_eq!(docs.len(), n);
        for doc in docs.values() {
            assert_eq!(
                index,
                format!("audit-{}", doc.source["tenant_id"].as_str().unwrap())
            );
            *counts
                .entry(doc.source["seq"].as_u64().expect("seq"))
                .or_default() += 1;
        }
    }
    counts
}

#[test]
fn mapping_errors_are_dead_lettered_with_their_reason_and_only_429_items_are_resent() {
    let (_rt, es) = es_server(EsOptions {
        auth: Some(EsAuth::ApiKey(API_KEY.into())),
        ..EsOptions::default()
    });
    // 60 items answered 429 once each; 6 documents that never map.
    es.reject_items_with_429(1, |_, _, d| d["seq"].as_u64().unwrap() % 50 == 7);
    es.mapper_parsing_exception_when(|_, _, d| d["seq"].as_u64().unwrap() % 500 == 123);
    let w = Workdir::new();
    let admin = format!("127.0.0.1:{}", free_port());
    let cfg = pipeline(&w, &es.url(), "count: 3000", &admin);
    let mut s = w.start_with(&cfg, &[("ES_API_KEY", API_KEY)]);
    let status = s.wait(Duration::from_secs(90));
    assert!(status.success(), "exit {status:?}: {}", s.logs());

    let dlq = read_jsonl(&w.join("data/dlq/es.jsonl"));
    let mut dead: Vec<u64> = dlq
        .iter()
        .map(|d| {
            assert_eq!(
                d["__connect.errors.exception.class.name"],
                "es.bulk.item.mapper_parsing_exception"
            );
            let msg = d["__connect.errors.exception.message"].as_str().unwrap();
            assert!(msg.contains("failed to parse field [severity]"), "{msg}");
            assert_eq!(d["__connect.errors.connector.name"], "es");
            let v: Value =
                serde_json::from_str(d["value"].as_str().expect("value as text")).unwrap();
            v["seq"].as_u64().unwrap()
        })
        .collect();
    dead.sort_unstable();
    assert_eq!(dead, vec![123, 623, 1123, 1623, 2123, 2623]);

    let counts = seq_counts(&es);
    assert_eq!(counts.len(), 2994, "every other record indexed");
    assert!(counts.values().all(|&c| c == 1));
    assert_eq!(es.items_answered_429(), 60);
    assert_eq!(
        es.items_seen(),
        3000 + 60,
        "only the items answered 429 were sent again"
    );
    assert!(es.bulk_requests().iter().all(|r| r.gzip));
    assert!(!s.logs().contains(API_KEY), "the key never appears in logs");
}

#[test]
fn a_server_that_is_not_elasticsearch_is_refused() {
    let (_rt, impostor) = es_server(EsOptions {
        product_header: false,
        ..EsOptions::default()
    });
    let w = Workdir::new();
    let admin = format!("127.0.0.1:{}", free_port());
    let cfg = pipeline(&w, &impostor.url(), "rate: 200", &admin);
    let mut s = w.start_with(&cfg, &[("ES_API_KEY", API_KEY)]);
    wait_for(Duration::from_secs(30), "the refusal to be logged", || {
        s.logs().contains("is not Elasticsearch").then_some(())
    });
    let health = http_get(&format!("http://{admin}/health"));
    assert!(
        matches!(&health, Some((503, _))),
        "pipeline unhealthy: {health:?}"
    );
    s.sigterm();
    s.wait(Duration::from_secs(30));
    assert!(s.logs().contains("X-Elastic-Product"), "{}", s.logs());
    assert!(
        impostor.bulk_requests().is_empty(),
        "nothing was sent to it"
    );
    assert_eq!(count_lines(&w.join("data/dlq/es.jsonl")), 0);
}

/// Creates a topic on the test broker (topics are not auto-created) and fills it.
fn kafka_topic_with_events(rt: &tokio::runtime::Runtime, topic: &str, n: u64) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use rdkafka::ClientConfig;

    let brokers = sluice_testkit::env::kafka_brokers();
    rt.block_on(async {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()
            .expect("kafka admin client");
        let results = admin
            .create_topics(
                &[NewTopic::new(topic, 2, TopicReplication::Fixed(1))],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            )
            .await
            .unwrap_or_else(|e| {
                panic!("create topic on {brokers} (is the broker up? scripts/start-kafka.sh): {e}")
            });
        for r in results {
            r.unwrap_or_else(|(t, e)| panic!("create topic {t}: {e}"));
        }
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()
            .expect("kafka producer");
        for seq in 0..n {
            let value = serde_json::json!({"seq": seq, "tenant_id": format!("tenant-{}", seq % 3),
                                           "event_type": "control.evaluated"})
            .to_string();
            let key = seq.to_string();
            producer
                .send(
                    FutureRecord::to(topic).key(&key).payload(&value),
                    Duration::from_secs(10),
                )
                .await
                .unwrap_or_else(|(e, _)| panic!("produce to {topic}: {e}"));
        }
    });
}

#[test]
fn replaying_the_same_kafka_range_creates_no_duplicate_documents() {
    let (rt, es) = es_server(EsOptions::default());
    let topic = format!(
        "es-replay-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    kafka_topic_with_events(&rt, &topic, 1000);
    let w = Workdir::new();
    let run = |group: &str, expect_items: usize| {
        let admin = format!("127.0.0.1:{}", free_port());
        let cfg = w.config(
            &format!("{group}.yaml"),
            &format!(
                r#"host:
  data_dir: "{{dir}}/data"
  admin: {{ listen: "{admin}" }}
pipelines:
  - name: es
    source: {{ type: kafka, brokers: "{brokers}", topics: [{topic}], group_id: {group}, start_from: earliest }}
    sink:
      type: elasticsearch
      endpoints: ["{url}"]
      index: "audit-{{{{ tenant_id }}}}"
      op_type: create
    batch: {{ max_events: 100, linger: 20ms }}
    commit_interval: 100ms
    dead_letter: {{ type: file }}
"#,
                brokers = sluice_testkit::env::kafka_brokers(),
                url = es.url(),
            ),
        );
        let mut s = w.start(&cfg);
        wait_for(Duration::from_secs(60), "the range to be sent", || {
            (es.items_seen() >= expect_items).then_some(())
        });
        s.sigterm();
        let status = s.wait(Duration::from_secs(30));
        assert!(status.success(), "exit {status:?}: {}", s.logs());
    };
    run("sluice-es-first", 1000);
    // A new consumer group reads the same range again, as after a lost commit.
    run("sluice-es-replay", 2000);

    assert_eq!(es.items_seen(), 2000);
    let counts = seq_counts(&es);
    assert_eq!(counts.len(), 1000);
    assert!(
        counts.values().all(|&c| c == 1),
        "a document was duplicated"
    );
    for (index, _) in es.indices() {
        assert!(
            es.documents(&index).values().all(|d| d.version == 1),
            "the replay's 409s left the documents untouched"
        );
    }
    assert_eq!(
        count_lines(&w.join("data/dlq/es.jsonl")),
        0,
        "a 409 on create is delivered, not dead-lettered"
    );
}

#[test]
fn an_outage_between_the_requests_of_a_batch_dead_letters_nothing_even_with_one_attempt() {
    let (_rt, es) = es_server(EsOptions {
        auth: Some(EsAuth::ApiKey(API_KEY.into())),
        ..EsOptions::default()
    });
    // Each batch of 250 goes out in several requests; the outage starts after the first.
    es.fail_requests_after(1, 503, 3);
    es.fail_requests_after(10, 503, 1);
    let w = Workdir::new();
    let admin = format!("127.0.0.1:{}", free_port());
    let cfg = pipeline(&w, &es.url(), "count: 3000", &admin);
    let text = std::fs::read_to_string(&cfg).unwrap();
    let text = text.replace("max_attempts: 5", "max_attempts: 1").replace(
        "      compression: gzip\n",
        "      compression: gzip\n      max_request_bytes: 8KiB\n",
    );
    std::fs::write(&cfg, text).unwrap();
    let mut s = w.start_with(&cfg, &[("ES_API_KEY", API_KEY)]);
    let status = s.wait(Duration::from_secs(90));
    assert!(status.success(), "exit {status:?}: {}", s.logs());

    let dlq = w.join("data/dlq/es.jsonl");
    assert!(
        !dlq.exists() || read_jsonl(&dlq).is_empty(),
        "an outage dead-lettered records: {:?}",
        read_jsonl(&dlq).first()
    );
    let counts = seq_counts(&es);
    assert_eq!(
        counts.len(),
        3000,
        "every record indexed once the server recovered"
    );
    assert!(counts.values().all(|&c| c == 1));
    assert!(
        es.bulk_requests().len() > 12,
        "batches went out in several requests"
    );
}

#[test]
fn unchecked_certificates_and_a_key_over_http_are_warned_once_at_start() {
    let (_rt, es) = es_server(EsOptions {
        auth: Some(EsAuth::ApiKey(API_KEY.into())),
        ..EsOptions::default()
    });
    let w = Workdir::new();
    let admin = format!("127.0.0.1:{}", free_port());
    let cfg = pipeline(&w, &es.url(), "count: 100", &admin);
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "      compression: gzip\n",
        "      compression: gzip\n      tls: { verify_certificate: false }\n",
    );
    std::fs::write(&cfg, text).unwrap();
    let mut s = w.start_with(&cfg, &[("ES_API_KEY", API_KEY)]);
    let status = s.wait(Duration::from_secs(60));
    assert!(status.success(), "exit {status:?}: {}", s.logs());
    assert_eq!(seq_counts(&es).len(), 100);
    let logs = s.logs();
    for warning in [
        "tls.verify_certificate is false",
        "the `auth` credential is sent over plain http://",
    ] {
        assert_eq!(logs.matches(warning).count(), 1, "{warning}: {logs}");
    }
    assert!(!logs.contains(API_KEY), "the key never appears in logs");
}
