//! The real binary writing to Kafka (librdkafka's mock cluster, reached over TCP) with
//! `retry.max_attempts: 1`: a topic ACL refusal and a partition leader that is down are
//! destination problems, so nothing is dead-lettered and every record arrives once they clear.

use std::collections::BTreeSet;
use std::time::Duration;

use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

use crate::common::*;
use sluice_testkit::kafka::{read_topic, unique};

const SECS: Duration = Duration::from_secs(1);

fn ns(brokers: &str, topic: &str) -> BTreeSet<u64> {
    read_topic(brokers, topic, 20, 20 * SECS)
        .iter()
        .filter_map(|m| serde_json::from_slice::<serde_json::Value>(&m.value).ok())
        .filter_map(|v| v["n"].as_u64())
        .collect()
}

#[test]
fn kafka_outages_with_max_attempts_1_dead_letter_nothing() {
    let cluster = MockCluster::new(2).expect("mock cluster");
    let brokers = cluster.bootstrap_servers();
    let (a, b) = (unique("a"), unique("b"));
    for (t, leader) in [(&a, 1), (&b, 2)] {
        cluster.create_topic(t, 1, 1).expect("topic");
        cluster
            .partition_leader(t, 0, Some(leader))
            .expect("leader");
    }
    let w = Workdir::new();
    let admin = format!("127.0.0.1:{}", free_port());
    let body: String = (0..40)
        .map(|n| {
            format!(
                "{{\"t\":\"{}\",\"n\":{n}}}\n",
                if n % 2 == 0 { &a } else { &b }
            )
        })
        .collect();
    std::fs::write(w.join("in.jsonl"), body).unwrap();
    let cfg = w.config(
        "out.yaml",
        &format!(
            r#"host: {{ data_dir: "{{dir}}/data", admin: {{ listen: "{admin}" }} }}
pipelines:
  - name: out
    source: {{ type: file, path: "{{dir}}/in.jsonl" }}
    sink: {{ type: kafka, brokers: "{brokers}", topic: "{{{{ t }}}}", options: {{ message.timeout.ms: 1000 }} }}
    batch: {{ max_events: 10, linger: 10ms }}
    retry: {{ max_attempts: 1, initial_backoff: 10ms, max_backoff: 200ms }}
"#
        ),
    );
    // b's leader is down and the ACL refuses the first produce requests.
    cluster.broker_down(2).expect("broker down");
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 3],
    );
    let mut s = w.start(&cfg);
    std::thread::sleep(5 * SECS);
    assert_eq!(
        metric(&admin, "sluice_records_dead_lettered_total", "out").unwrap_or(0.0),
        0.0,
        "{}",
        s.logs()
    );
    cluster.broker_up(2).expect("broker up");
    let want: BTreeSet<u64> = (0..40).collect();
    wait_for(60 * SECS, "every record sent", || {
        (metric(&admin, "sluice_records_sent_total", "out")? == 40.0).then_some(())
    });
    let mut got = ns(&brokers, &a);
    got.extend(ns(&brokers, &b));
    assert_eq!(got, want, "{}", s.logs());
    assert_eq!(
        metric(&admin, "sluice_records_dead_lettered_total", "out").unwrap_or(0.0),
        0.0
    );
    assert_eq!(count_lines(&w.join("data/dlq/out.jsonl")), 0);
    s.sigterm();
    s.wait(30 * SECS);
}
