//! `integrity.digests_to`: the digest log's copy in a file or a Kafka topic is written before
//! each commit, verifies exactly as the local log does, and while it cannot be written the
//! commits wait and `/health` names it.

use std::path::Path;
use std::time::Duration;

use sluice_testkit::kafka::{create_topic, real_broker, unique};

use super::{keygen, write_input};
use crate::common::*;
use crate::kafka::health;

fn config(w: &Workdir, admin: &str, digests_to: &str) -> std::path::PathBuf {
    w.config(
        "p.yaml",
        &format!(
            r#"
host: {{ data_dir: "{{dir}}/data", admin: {{ listen: "{admin}" }} }}
pipelines:
  - name: audit
    source: {{ type: file, path: "{{dir}}/in.jsonl", at_end: stop }}
    sink: {{ type: file, path: "{{dir}}/out.jsonl" }}
    batch: {{ max_events: 50, linger: 20ms }}
    commit_interval: 100ms
    integrity: {{ signing_key: "${{SIGN}}", digests_to: {digests_to} }}
"#
        ),
    )
}

/// `sluice verify --file out.jsonl` with the given digest arguments: (exit code, stdout).
fn verify(w: &Workdir, digests: &[&str], public: &str) -> (i32, String) {
    let out = w.join("out.jsonl").display().to_string();
    let mut args = vec!["verify", "--file", &out, "--public-key", public];
    args.extend_from_slice(digests);
    let o = w.sluice(&args);
    (
        o.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

fn local(w: &Workdir) -> String {
    w.join("data/integrity/audit.digests").display().to_string()
}

#[test]
fn an_unwritable_file_copy_holds_the_commit_until_it_can_be_written() {
    let w = Workdir::new();
    let (private, public) = keygen(&w);
    write_input(&w, 0, 500);
    // `copy` is a file, so the copy's directory cannot be made.
    std::fs::write(w.join("copy"), "").unwrap();
    let admin = format!("127.0.0.1:{}", free_port());
    let cfg = config(
        &w,
        &admin,
        r#"{ type: file, path: "{dir}/copy/audit.digests" }"#,
    );
    let mut s = w.start_with(&cfg, &[("SIGN", &private)]);
    let problem = wait_for(
        Duration::from_secs(60),
        "/health to name the copy",
        || match health(&admin) {
            Some((503, v)) => v["pipelines"]["audit"]["problem"]
                .as_str()
                .map(str::to_string),
            _ => None,
        },
    );
    assert!(problem.contains("digest copy"), "{problem}");
    assert!(problem.contains("copy/audit.digests"), "{problem}");
    // Records were written and the local log signed, and still nothing is committed: the
    // commit (and with it the reading) waits for the copy.
    assert!(!lines(&w.join("out.jsonl")).is_empty());
    assert!(!lines(Path::new(&local(&w))).is_empty());
    std::thread::sleep(Duration::from_millis(500));
    assert!(stored_offsets(&w.join("data"), "audit").is_none());
    assert!(s.child.try_wait().unwrap().is_none(), "sluice waits");

    std::fs::remove_file(w.join("copy")).unwrap();
    assert!(s.wait(Duration::from_secs(60)).success(), "{}", s.logs());
    assert!(stored_offsets(&w.join("data"), "audit").is_some());
    let copy = w.join("copy/audit.digests");
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        std::fs::read(local(&w)).unwrap()
    );
    let (code, from_local) = verify(&w, &["--digests", &local(&w)], &public);
    assert_eq!(code, 0, "{from_local}");
    let (code, from_copy) = verify(&w, &["--digests", &copy.display().to_string()], &public);
    assert_eq!((code, from_copy), (0, from_local));
}

#[test]
fn a_kafka_copy_verifies_as_the_local_log_and_a_resent_entry_is_skipped() {
    let w = Workdir::new();
    let (private, public) = keygen(&w);
    let brokers = real_broker();
    let topic = unique("digests");
    create_topic(&brokers, &topic, 1);
    let admin = format!("127.0.0.1:{}", free_port());
    let cfg = config(
        &w,
        &admin,
        // Options reach the producer as the `kafka` sink's do (TLS and SASL go here).
        &format!(
            r#"{{ type: kafka, brokers: "{brokers}", topic: "{topic}", options: {{ "compression.type": lz4, "linger.ms": 5 }} }}"#
        ),
    );
    // Two runs: the second appends to the same log and the same topic.
    for (from, to) in [(0, 300), (300, 600)] {
        write_input(&w, from, to);
        let mut s = w.start_with(&cfg, &[("SIGN", &private)]);
        assert!(s.wait(Duration::from_secs(120)).success(), "{}", s.logs());
    }
    let (code, from_local) = verify(&w, &["--digests", &local(&w)], &public);
    assert_eq!(code, 0, "{from_local}");
    assert!(from_local.contains("600 records"), "{from_local}");
    let kafka_args = [
        "--digests-kafka",
        brokers.as_str(),
        "--digests-topic",
        &topic,
    ];
    let (code, from_kafka) = verify(&w, &kafka_args, &public);
    assert_eq!((code, from_kafka), (0, from_local.clone()));

    // A crash between the copy and its mark: the copy's entries are sent again on start.
    std::fs::remove_file(format!("{}.copied", local(&w))).unwrap();
    let mut s = w.start_with(&cfg, &[("SIGN", &private)]);
    assert!(s.wait(Duration::from_secs(120)).success(), "{}", s.logs());
    let (code, again) = verify(&w, &kafka_args, &public);
    assert_eq!((code, again), (0, from_local));
    let json = [&kafka_args[..], &["--json"]].concat();
    let (code, report) = verify(&w, &json, &public);
    assert_eq!(code, 0, "{report}");
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert!(report["repeated_digests"].as_u64().unwrap() > 0, "{report}");
}

#[test]
fn one_pipeline_copies_its_digests_to_one_place() {
    let w = Workdir::new();
    let cfg = w.config(
        "two.yaml",
        r#"
pipelines:
  - name: audit
    source: { type: generator, count: 1 }
    sinks:
      a:
        type: file
        path: "{dir}/a.jsonl"
        integrity: { signing_key: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", digests_to: { type: file, path: "{dir}/one" } }
      b:
        type: file
        path: "{dir}/b.jsonl"
        integrity: { signing_key: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", digests_to: { type: kafka, brokers: "", topic: t } }
      c:
        type: file
        path: "{dir}/c.jsonl"
        integrity: { signing_key: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", digests_to: { type: kafka, brokers: "b:9092", topic: t, options: { "no.such.property": 1 } } }
"#,
    );
    let out = w.sluice(&["validate", cfg.to_str().unwrap()]);
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        // Line 13 is sink b's `integrity:`; the column points at `brokers`.
        text.contains("two.yaml:13:110: must not be empty"),
        "{text}"
    );
    assert!(
        text.contains("the pipeline's digests go to one place"),
        "{text}"
    );
    // Sink c's options are checked as librdkafka reads them, before anything runs.
    assert!(
        text.contains("two.yaml:17:") && text.contains("no.such.property"),
        "{text}"
    );
    assert!(text.contains("two.yaml:"), "{text}");
}
