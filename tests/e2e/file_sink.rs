//! The `file` sink's templated paths: a file per day of the event time and per tenant, and a
//! rendered path that would leave the directory dead-lettered with its record.

use std::time::Duration;

use crate::common::*;

#[test]
fn daily_files_per_tenant_and_a_path_outside_the_directory_is_dead_lettered() {
    let w = Workdir::new();
    std::fs::write(
        w.join("in.jsonl"),
        concat!(
            r#"{"n":1,"tenant":"acme","timestamp":"2026-12-05T23:59:59Z"}"#,
            "\n",
            r#"{"n":2,"tenant":"../../escaped","timestamp":"2026-12-05T10:00:00Z"}"#,
            "\n",
            r#"{"n":3,"tenant":"acme","timestamp":"2026-12-06T00:00:01Z"}"#,
            "\n",
            r#"{"n":4,"tenant":"globex","timestamp":"2026-12-06T08:00:00Z"}"#,
            "\n",
            r#"{"n":5,"timestamp":"2026-12-06T08:00:00Z"}"#,
            "\n",
        ),
    )
    .unwrap();
    let cfg = w.config(
        "p.yaml",
        r#"
host: { data_dir: "{dir}/data" }
pipelines:
  - name: purview
    source: { type: file, path: "{dir}/in.jsonl", at_end: stop }
    sink:
      type: file
      path: "{dir}/out/{{ tenant }}/audit_%Y%m%d.jsonl"
      time_field: timestamp
"#,
    );
    let mut s = w.start(&cfg);
    assert!(s.wait(Duration::from_secs(60)).success(), "{}", s.logs());
    let n = |path: &str| -> Vec<u64> {
        read_jsonl(&w.join(path))
            .iter()
            .map(|v| v["n"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(n("out/acme/audit_20261205.jsonl"), [1]);
    assert_eq!(n("out/acme/audit_20261206.jsonl"), [3]);
    assert_eq!(n("out/globex/audit_20261206.jsonl"), [4]);
    assert!(!w.join("escaped").exists() && !w.path().parent().unwrap().join("escaped").exists());

    let dlq = read_jsonl(&w.join("data/dlq/purview.jsonl"));
    let kinds: Vec<(&str, &str)> = dlq
        .iter()
        .map(|d| {
            (
                d["__connect.errors.offset"].as_str().unwrap(),
                d["__connect.errors.exception.class.name"].as_str().unwrap(),
            )
        })
        .collect();
    let offsets: Vec<String> = std::fs::read_to_string(w.join("in.jsonl"))
        .unwrap()
        .lines()
        .scan(0usize, |at, line| {
            let here = *at;
            *at += line.len() + 1;
            Some(here.to_string())
        })
        .collect();
    assert_eq!(
        kinds,
        [
            (offsets[1].as_str(), "file.path_outside_directory"),
            (offsets[4].as_str(), "file.path_template"),
        ],
        "{dlq:?}"
    );
    // The log names the kind, never the record's values.
    let logs = s.logs();
    assert!(logs.contains("file.path_outside_directory"), "{logs}");
    assert!(!logs.contains("escaped"), "{logs}");
}
