//! `configs/agent-audit-trail.yaml` against the real broker and PostgreSQL and the
//! Elasticsearch emulator: both outputs verify against the digest copy in Kafka, and a row
//! changed or deleted in PostgreSQL is found.

use std::time::Duration;

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use sluice_testkit::elasticsearch::{EsAuth, EsEmulator, EsOptions};
use sluice_testkit::kafka::{create_topic, real_broker, unique};

use super::keygen;
use crate::common::*;
use crate::postgres::{table, Pg};

const API_KEY: &str = "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==";
const PER_TOPIC: usize = 150;

/// Events keyed `{aggregate_type}:{aggregate_id}`, spread by key over the 8 partitions.
fn produce(brokers: &str, topic: &str, kind: &str) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "10")
        .create()
        .unwrap();
    for i in 0..PER_TOPIC {
        let id = format!("{kind}-{}", i % 13);
        let value = format!(
            r#"{{"event_id":"{kind}-ev-{i}","aggregate_type":"{kind}","aggregate_id":"{id}","type":"{kind}.updated","n":{i},"detail":{{"step":{},"ok":true}}}}"#,
            i % 5
        );
        let key = format!("{kind}:{id}");
        p.send(BaseRecord::to(topic).payload(&value).key(&key))
            .unwrap();
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(30)).unwrap();
}

#[test]
fn the_agent_audit_trail_verifies_in_postgres_and_elasticsearch_and_tampering_is_found() {
    let brokers = real_broker();
    let topics: Vec<(String, &str)> = ["agent", "task", "audit"]
        .iter()
        .map(|k| (unique(&format!("{k}-events")), *k))
        .collect();
    for (t, kind) in &topics {
        create_topic(&brokers, t, 8);
        produce(&brokers, t, kind);
    }
    let digest_topic = unique("audit-digests");
    create_topic(&brokers, &digest_topic, 1);
    let pg = Pg::connect();
    let t = table("audit_trail");
    pg.execute(&format!(
        "CREATE TABLE {t} (id bigserial PRIMARY KEY, source_topic text NOT NULL, \
         source_partition integer NOT NULL, source_offset bigint NOT NULL, \
         record jsonb NOT NULL, UNIQUE (source_topic, source_partition, source_offset))"
    ));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let es = rt.block_on(EsEmulator::start_with(EsOptions {
        auth: Some(EsAuth::ApiKey(API_KEY.into())),
        ..Default::default()
    }));

    let w = Workdir::new();
    let (private, public) = keygen(&w);
    let admin = format!("127.0.0.1:{}", free_port());
    let cfg = example_config(&w, "agent-audit-trail.yaml", &admin);
    let url = sluice_testkit::env::postgres_url();
    let es_url = es.url();
    let topic_list = topics
        .iter()
        .map(|(t, _)| t.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let group = unique("audit-trail");
    let cfg_text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("sluice-agent-audit-trail", &group);
    std::fs::write(&cfg, cfg_text).unwrap();
    let total = 3 * PER_TOPIC;
    let mut s = w.start_with(
        &cfg,
        &[
            ("KAFKA_BROKERS", brokers.as_str()),
            ("AUDIT_TOPICS", topic_list.as_str()),
            ("DATABASE_URL", url.as_str()),
            ("AUDIT_TABLE", t.as_str()),
            ("ES_ENDPOINT", es_url.as_str()),
            ("ELASTIC_API_KEY", API_KEY),
            ("DIGEST_TOPIC", digest_topic.as_str()),
            ("AUDIT_SIGNING_KEY", private.as_str()),
        ],
    );
    wait_for(Duration::from_secs(90), "every row and document", || {
        (pg.count(&format!("SELECT count(*) FROM {t}")) == total as i64
            && es.document_count() == total)
            .then_some(())
    });
    s.sigterm();
    assert!(s.wait(Duration::from_secs(60)).success(), "{}", s.logs());

    let verify = |output: &[&str]| -> (i32, String) {
        let mut args = vec!["verify"];
        args.extend_from_slice(output);
        args.extend_from_slice(&[
            "--digests-kafka",
            &brokers,
            "--digests-topic",
            &digest_topic,
            "--public-key",
            &public,
        ]);
        let o = std::process::Command::new(sluice_bin())
            .args(&args)
            .env("ES_API_KEY", API_KEY)
            .output()
            .unwrap();
        (
            o.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )
    };
    let pg_args = ["--postgres", &url, "--table", &t, "--column", "record"];
    let (code, text) = verify(&pg_args);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("agent-audit-trail/db/"), "{text}");
    assert!(!text.contains("agent-audit-trail/search/"), "{text}");
    let (code, text) = verify(&["--elasticsearch", &es_url, "--index", "agent-audit"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("agent-audit-trail/search/"), "{text}");

    // One field of one row changed: `altered`, with the record's sequence.
    let seq_of = |id: i64| {
        pg.count(&format!(
            "SELECT (record->'_audit'->>'seq')::bigint FROM {t} WHERE id = {id}"
        ))
    };
    let target = pg.count(&format!(
        "SELECT min(id) FROM {t} WHERE (record->'_audit'->>'seq')::bigint = 2"
    ));
    pg.execute(&format!(
        "UPDATE {t} SET record = jsonb_set(record, '{{type}}', '\"agent.deleted\"') WHERE id = {target}"
    ));
    let (code, text) = verify(&pg_args);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(&format!("altered: row id={target}")),
        "{text}"
    );
    assert!(
        text.contains(&format!("first break at sequence {}", seq_of(target))),
        "{text}"
    );

    // One row deleted (the first of another chain): `missing`.
    let gone = pg.count(&format!(
        "SELECT min(id) FROM {t} WHERE (record->'_audit'->>'seq')::bigint = 1 AND id <> {target} \
         AND record->'_audit'->'chain'->>'stream' <> (SELECT record->'_audit'->'chain'->>'stream' FROM {t} WHERE id = {target})"
    ));
    pg.execute(&format!("DELETE FROM {t} WHERE id = {gone}"));
    let (code, text) = verify(&pg_args);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("missing: sequences 1..=1 missing"), "{text}");
    pg.execute(&format!("DROP TABLE {t}"));
}
