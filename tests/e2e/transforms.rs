//! Transforms with the real binary on real input lines: a field given twice is read, dropped,
//! set and renamed as one, so no earlier copy of a dropped PII field reaches a sink.

use std::time::Duration;

use crate::common::*;

/// Runs one file -> file pipeline over `input` lines with `transforms` and returns the raw
/// output lines.
fn run_lines(input: &[&str], transforms: &str) -> Vec<String> {
    let w = Workdir::new();
    std::fs::write(w.join("in.jsonl"), input.join("\n") + "\n").expect("write input");
    let cfg = w.config(
        "c.yaml",
        &format!(
            "host: {{ data_dir: \"{{dir}}/data\" }}\npipelines:\n  - name: t\n    source: {{ type: file, path: \"{{dir}}/in.jsonl\", at_end: stop }}\n    transforms:\n{transforms}\n    sink: {{ type: file, path: \"{{dir}}/out.jsonl\" }}\n"
        ),
    );
    let mut s = w.start(&cfg);
    let status = s.wait(Duration::from_secs(60));
    assert!(status.success(), "exit {status:?}: {}", s.logs());
    lines(&w.join("out.jsonl"))
}

#[test]
fn a_field_given_twice_is_dropped_set_and_renamed_as_one() {
    let out = run_lines(
        &[r#"{"user":"a","ssn":"1","ssn":"2"}"#],
        "      - { type: drop, fields: [ssn] }",
    );
    assert_eq!(out, vec![r#"{"user":"a"}"#.to_string()]);

    let out = run_lines(
        &[r#"{"ssn":"1","user":"a","ssn":"2"}"#],
        "      - { type: set, field: ssn, value: redacted }",
    );
    assert_eq!(out, vec![r#"{"user":"a","ssn":"redacted"}"#.to_string()]);

    let out = run_lines(
        &[r#"{"ssn":"1","user":"a","ssn":"2"}"#],
        "      - { type: rename, from: ssn, to: tax_id }",
    );
    assert_eq!(out, vec![r#"{"user":"a","tax_id":"2"}"#.to_string()]);

    // Nested: the last copy of `person` is the one readers see; a drop below it leaves no
    // earlier copy behind.
    let out = run_lines(
        &[r#"{"person":{"ssn":"1"},"person":{"ssn":"2","ssn":"3","name":"n"}}"#],
        "      - { type: drop, fields: [person.ssn] }",
    );
    assert_eq!(out, vec![r#"{"person":{"name":"n"}}"#.to_string()]);
}

#[test]
fn a_filter_reads_the_last_copy() {
    let out = run_lines(
        &[
            r#"{"n":1,"level":"low","level":"high"}"#,
            r#"{"n":2,"level":"high","level":"low"}"#,
        ],
        "      - { type: filter, field: level, equals: high }",
    );
    assert_eq!(
        out,
        vec![r#"{"n":1,"level":"low","level":"high"}"#.to_string()]
    );
}
