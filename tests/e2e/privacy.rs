//! Privacy transforms with the real binary: a file -> file pipeline redacts, masks, hashes
//! and encrypts; `sluice decrypt` restores the encrypted fields from the sink's file.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;

const KEY_1: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const KEY_2: &str = "HxweHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE=";
const PSEUDONYM_KEY: &str = "hex:000102030405060708090a0b0c0d0e0f";

const TRANSFORMS: &str = "      - { type: redact, fields: [note, contacts], patterns: [email, us_ssn, credit_card] }\n      - { type: mask, fields: [account], keep_last: 4 }\n      - { type: hash, fields: [customer_id], key_env: E2E_PSEUDONYM_KEY }\n      - { type: encrypt, fields: [ssn, card.number], key_env: E2E_AES_KEY, key_id: k2026, when: { field: tags, equals: gdpr } }";

/// Runs the pipeline `pii` over `input` and returns the sink file's lines.
fn run(w: &Workdir, input: &[&str]) -> Vec<String> {
    std::fs::write(w.join("in.jsonl"), input.join("\n") + "\n").expect("write input");
    let cfg = w.config(
        "c.yaml",
        &format!(
            "host: {{ data_dir: \"{{dir}}/data\" }}\npipelines:\n  - name: pii\n    source: {{ type: file, path: \"{{dir}}/in.jsonl\", at_end: stop }}\n    transforms:\n{TRANSFORMS}\n    sink: {{ type: file, path: \"{{dir}}/out.jsonl\" }}\n"
        ),
    );
    let mut s = w.start_with(
        &cfg,
        &[("E2E_AES_KEY", KEY_1), ("E2E_PSEUDONYM_KEY", PSEUDONYM_KEY)],
    );
    let status = s.wait(Duration::from_secs(60));
    assert!(status.success(), "exit {status:?}: {}", s.logs());
    lines(&w.join("out.jsonl"))
}

/// `sluice decrypt <args>` with `stdin`; (exit success, stdout, stderr).
fn decrypt(args: &[&str], envs: &[(&str, &str)], stdin: &str) -> (bool, String, String) {
    let mut child = Command::new(sluice_bin())
        .arg("decrypt")
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sluice decrypt");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("sluice decrypt");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_pipeline_protects_fields_and_sluice_decrypt_restores_the_encrypted_ones() {
    let w = Workdir::new();
    let out = run(
        &w,
        &[
            r#"{"tags":"gdpr","note":"mail jane@example.com, ssn 123-45-6789","contacts":["bob@example.org",{"card":"4111 1111 1111 1111"}],"account":"DE89370400440532013000","customer_id":"c-42","ssn":"078-05-1120","card":{"number":5500000000000004}}"#,
            r#"{"tags":"other","customer_id":"c-42","ssn":"078-05-1120"}"#,
        ],
    );
    assert_eq!(out.len(), 2, "{out:?}");
    let text = out.join("\n");
    for secret in [
        "jane@",
        "bob@",
        "123-45-6789",
        "4111",
        "078-05-1120",
        "5500000000000004",
        "c-42",
        "0532013",
    ] {
        assert!(!out[0].contains(secret), "{secret} in {}", out[0]);
    }
    assert!(!out[1].contains("c-42"), "{}", out[1]);
    let first: Value = serde_json::from_str(&out[0]).expect("json");
    let second: Value = serde_json::from_str(&out[1]).expect("json");
    assert_eq!(
        first["note"],
        json!("mail [REDACTED:email], ssn [REDACTED:us_ssn]")
    );
    assert_eq!(
        first["contacts"],
        json!(["[REDACTED:email]", {"card": "[REDACTED:credit_card]"}])
    );
    assert_eq!(first["account"], json!("******************3000"));
    assert_eq!(
        first["customer_id"], second["customer_id"],
        "joinable pseudonym"
    );
    assert_eq!(first["ssn"]["enc"], json!("aes256gcm:v1"));
    assert_eq!(first["ssn"]["kid"], json!("k2026"));
    assert_eq!(second["ssn"], json!("078-05-1120"), "when: not met");

    // The auditor's key ring holds the current key and an older one.
    let envs = [("AUDIT_KEY_NEW", KEY_1), ("AUDIT_KEY_OLD", KEY_2)];
    let (ok, stdout, stderr) = decrypt(
        &[
            "--key-env",
            "AUDIT_KEY_OLD",
            "--key-id",
            "k2025",
            "--key-env",
            "AUDIT_KEY_NEW",
            "--key-id",
            "k2026",
            "--pipeline",
            "pii",
        ],
        &envs,
        &(text.clone() + "\n"),
    );
    assert!(ok, "{stderr}");
    let restored: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(restored.len(), 2);
    assert_eq!(restored[0]["ssn"], json!("078-05-1120"));
    assert_eq!(restored[0]["card"], json!({"number": 5500000000000004u64}));
    assert_eq!(restored[1], second);

    // Only the fields asked for.
    let (ok, stdout, _) = decrypt(
        &[
            "--key-env",
            "AUDIT_KEY_NEW",
            "--key-id",
            "k2026",
            "--pipeline",
            "pii",
            "--field",
            "ssn",
        ],
        &envs,
        &out[0],
    );
    assert!(ok);
    let partly: Value = serde_json::from_str(stdout.trim()).expect("json");
    assert_eq!(partly["ssn"], json!("078-05-1120"));
    assert_eq!(partly["card"]["number"]["enc"], json!("aes256gcm:v1"));
}

#[test]
fn a_wrong_key_or_pipeline_makes_sluice_decrypt_fail_clearly() {
    let w = Workdir::new();
    let out = run(
        &w,
        &[r#"{"tags":"gdpr","ssn":"078-05-1120","customer_id":"c"}"#],
    );
    let envs = [("AUDIT_KEY", KEY_2), ("RIGHT_KEY", KEY_1)];
    let (ok, stdout, stderr) = decrypt(
        &[
            "--key-env",
            "AUDIT_KEY",
            "--key-id",
            "k2026",
            "--pipeline",
            "pii",
        ],
        &envs,
        &out[0],
    );
    assert!(!ok);
    assert!(stdout.is_empty(), "{stdout}");
    assert_eq!(
        stderr.trim(),
        "error: line 1: cannot decrypt `ssn`: authentication failed (wrong key, or the value, field or pipeline name changed)"
    );
    assert!(!stderr.contains(KEY_2) && !stderr.contains("078-05"));
    let (ok, _, stderr) = decrypt(
        &[
            "--key-env",
            "RIGHT_KEY",
            "--key-id",
            "k2026",
            "--pipeline",
            "other",
        ],
        &envs,
        &out[0],
    );
    assert!(!ok && stderr.contains("authentication failed"), "{stderr}");
    let (ok, _, stderr) = decrypt(
        &[
            "--key-env",
            "RIGHT_KEY",
            "--key-id",
            "k1",
            "--pipeline",
            "pii",
        ],
        &envs,
        &out[0],
    );
    assert!(!ok);
    assert_eq!(
        stderr.trim(),
        "error: line 1: cannot decrypt `ssn`: unknown key id `k2026`"
    );
    let (ok, _, stderr) = decrypt(
        &[
            "--key-env",
            "UNSET_AUDIT_KEY",
            "--key-id",
            "k2026",
            "--pipeline",
            "pii",
        ],
        &envs,
        &out[0],
    );
    assert!(!ok);
    assert_eq!(
        stderr.trim(),
        "error: environment variable `UNSET_AUDIT_KEY` is not set"
    );
}

#[test]
fn a_pii_field_given_twice_leaves_no_trace_of_either_value() {
    let w = Workdir::new();
    let out = run(
        &w,
        &[
            r#"{"tags":"gdpr","ssn":"111-22-3333","customer_id":"first-id","ssn":"078-05-1120","note":"a@b.io","note":"none","customer_id":"second-id"}"#,
        ],
    );
    assert_eq!(out.len(), 1);
    for secret in [
        "111-22-3333",
        "078-05-1120",
        "first-id",
        "second-id",
        "a@b.io",
    ] {
        assert!(!out[0].contains(secret), "{secret} in {}", out[0]);
    }
    let v: Value = serde_json::from_str(&out[0]).expect("json");
    assert_eq!(out[0].matches("\"ssn\"").count(), 1, "{}", out[0]);
    assert_eq!(v["note"], json!("none"));
    assert_eq!(v["ssn"]["enc"], json!("aes256gcm:v1"));
}

#[test]
fn redactions_are_counted_per_pattern_on_the_metrics_endpoint() {
    let w = Workdir::new();
    let admin = format!("127.0.0.1:{}", free_port());
    std::fs::write(
        w.join("in.jsonl"),
        [
            r#"{"note":"mail jane@example.com, ssn 123-45-6789","contacts":["bob@example.org",{"card":"4111 1111 1111 1111"}]}"#,
            r#"{"note":"nothing personal here"}"#,
            r#"{"note":"write to ops@example.net"}"#,
        ]
        .join("\n")
            + "\n",
    )
    .expect("write input");
    let cfg = w.config(
        "c.yaml",
        &format!(
            "host: {{ data_dir: \"{{dir}}/data\", admin: {{ listen: \"{admin}\" }} }}\npipelines:\n  - name: pii\n    source: {{ type: file, path: \"{{dir}}/in.jsonl\" }}\n    transforms:\n      - {{ type: redact, fields: [note, contacts], patterns: [email, us_ssn, credit_card] }}\n    sink: {{ type: file, path: \"{{dir}}/out.jsonl\" }}\n"
        ),
    );
    let mut s = w.start(&cfg);
    let out = w.join("out.jsonl");
    wait_for(Duration::from_secs(30), "three records written", || {
        (count_lines(&out) == 3).then_some(())
    });
    let count = |pattern: &str| {
        let (_, body) = http_get(&format!("http://{admin}/metrics"))?;
        // Prometheus text puts the labels in name order.
        let line = format!("sluice_redactions_total{{pattern=\"{pattern}\",pipeline=\"pii\"}} ");
        body.lines()
            .find_map(|l| l.strip_prefix(&line))
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    let emails = wait_for(Duration::from_secs(10), "the email count", || {
        count("email")
    });
    assert_eq!(emails, 3.0);
    assert_eq!(count("us_ssn"), Some(1.0));
    assert_eq!(count("credit_card"), Some(1.0));
    s.sigterm();
    assert!(s.wait(Duration::from_secs(30)).success(), "{}", s.logs());
    assert!(
        !s.logs().contains("jane@"),
        "a redacted value is in the log"
    );
}
