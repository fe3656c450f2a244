//! `format: avro` against the emulated Schema Registry and the real broker (Apache Kafka at
//! SLUICE_TEST_KAFKA, started by scripts/start-kafka.sh).

mod common;

use std::time::Duration;

use apache_avro::types::{Record as AvroRecord, Value as AvroValue};
use apache_avro::Schema;
use common::*;
use serde_json::json;
use sluice_sdk::{Polled, SourceError};
use sluice_testkit::schema_registry::{frame, SchemaRegistry};

const SCHEMA: &str = r#"{"type":"record","name":"Evaluation","namespace":"cmmc",
  "fields":[{"name":"control","type":"string"},
            {"name":"score","type":"int"},
            {"name":"status","type":{"type":"enum","name":"Status","symbols":["MET","NOT_MET"]}},
            {"name":"note","type":["null","string"],"default":null}]}"#;

fn datum(control: &str, score: i32, met: bool, note: Option<&str>) -> Vec<u8> {
    let schema = Schema::parse_str(SCHEMA).unwrap();
    let mut r = AvroRecord::new(&schema).unwrap();
    r.put("control", control);
    r.put("score", score);
    r.put(
        "status",
        AvroValue::Enum(u32::from(!met), if met { "MET" } else { "NOT_MET" }.into()),
    );
    r.put(
        "note",
        match note {
            Some(n) => AvroValue::Union(1, Box::new(n.into())),
            None => AvroValue::Union(0, Box::new(AvroValue::Null)),
        },
    );
    apache_avro::to_avro_datum(&schema, r).unwrap()
}

fn avro_source(brokers: &str, topic: &str, registry: &SchemaRegistry) -> serde_json::Value {
    json!({
        "brokers": brokers, "topics": [topic], "group_id": unique("g"), "format": "avro",
        "schema_registry": {"url": registry.url(), "username": "key", "password": "secret"}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avro_decodes_to_json_and_bad_frames_go_to_the_dlq() {
    let registry = SchemaRegistry::start_with_auth("key", "secret").await;
    let id = registry.register("evaluations-value", SCHEMA);
    let brokers = real_broker();
    let topic = unique("evaluations");
    create_topic(&brokers, &topic, 1);
    produce_values(
        &brokers,
        &topic,
        0,
        &[
            frame(id, &datum("AC.L2-3.1.1", 5, true, Some("ok"))),
            frame(id + 50, &datum("AC.L2-3.1.2", 1, false, None)), // unknown id
            frame(id, &datum("AC.L2-3.1.3", 3, false, None)),
            vec![1, 0, 0, 0, 1, 2],   // wrong magic byte
            frame(id, &[0xff, 0xff]), // not a datum of the schema
            frame(id, &datum("AC.L2-3.1.4", 4, true, None)),
        ],
    )
    .await;

    let (mut source, _) = open_source(avro_source(&brokers, &topic, &registry), "p").await;
    let rs = poll_records(&mut *source, 6, Duration::from_secs(30)).await;
    assert_eq!(rs.len(), 6);
    assert_eq!(
        rs[0].json().unwrap(),
        json!({"control": "AC.L2-3.1.1", "score": 5, "status": "MET", "note": "ok"})
    );
    assert_eq!(
        rs[2].json().unwrap(),
        json!({"control": "AC.L2-3.1.3", "score": 3, "status": "NOT_MET", "note": null})
    );
    assert!(rs[5].decode_error.is_none());
    let unknown = rs[1]
        .decode_error
        .as_deref()
        .expect("unknown id is a decode error");
    assert!(unknown.contains("40403"), "{unknown}");
    assert_eq!(rs[1].value[0], 0, "original bytes kept for the DLQ");
    assert!(rs[3].decode_error.as_deref().unwrap().contains("magic"));
    assert!(rs[4].decode_error.is_some());
    for (i, r) in rs.iter().enumerate() {
        assert_eq!(r.origin.offset, i as i64);
    }
    assert_eq!(
        registry.fetches_of(id),
        1,
        "schema fetched once, then cached"
    );
    source.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_outage_holds_records_until_it_answers() {
    let registry = SchemaRegistry::start_with_auth("key", "secret").await;
    let id = registry.register("evaluations-value", SCHEMA);
    let brokers = real_broker();
    let topic = unique("evaluations");
    create_topic(&brokers, &topic, 1);
    let values: Vec<Vec<u8>> = (0..5)
        .map(|i| frame(id, &datum(&format!("C{i}"), i, true, None)))
        .collect();
    produce_values(&brokers, &topic, 0, &values).await;

    registry.fail_next(2);
    let (mut source, health) = open_source(avro_source(&brokers, &topic, &registry), "p").await;
    let mut got = Vec::new();
    let mut errors = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while got.len() < 5 && std::time::Instant::now() < deadline {
        match source.poll(100).await {
            Ok(Polled::Records(rs)) => got.extend(rs),
            Ok(_) => {}
            Err(SourceError::Unavailable(m)) => {
                assert!(m.contains("50001"), "{m}");
                assert!(health.problem().unwrap().contains("schema registry"));
                errors += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(errors, 2, "each failed fetch surfaces as unavailable");
    let controls: Vec<String> = got
        .iter()
        .map(|r| r.json().unwrap()["control"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        controls,
        vec!["C0", "C1", "C2", "C3", "C4"],
        "nothing skipped"
    );
    assert_eq!(health.problem(), None);
    source.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_registry_credentials_are_unauthorized_not_dead_lettered() {
    let registry = SchemaRegistry::start_with_auth("key", "right").await;
    let id = registry.register("evaluations-value", SCHEMA);
    let brokers = real_broker();
    let topic = unique("evaluations");
    create_topic(&brokers, &topic, 1);
    produce_values(
        &brokers,
        &topic,
        0,
        &[frame(id, &datum("C", 1, true, None))],
    )
    .await;
    let (mut source, _) = open_source(avro_source(&brokers, &topic, &registry), "p").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no answer from the source"
        );
        match source.poll(10).await {
            Err(SourceError::Unauthorized(m)) => {
                assert!(m.contains("40101"), "{m}");
                assert!(!m.contains("secret"));
                break;
            }
            Ok(Polled::Idle) => {}
            other => panic!("expected unauthorized, got {other:?}"),
        }
    }
    source.close().await.unwrap();
}
