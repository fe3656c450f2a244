//! Integrity stamps on the `file` sink, signed digests, and `sluice verify` finding each kind
//! of tampering; a `kill -9` and restart, and a key rotation, still verify clean.

use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::common::*;

/// (private seed, public key) from `sluice integrity keygen`.
fn keygen(w: &Workdir) -> (String, String) {
    let out = w.sluice(&["integrity", "keygen"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let get = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .trim()
            .to_string()
    };
    (get("private_seed:"), get("public_key:"))
}

fn write_input(w: &Workdir, from: usize, to: usize) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(w.join("in.jsonl"))
        .unwrap();
    for i in from..to {
        writeln!(
            f,
            r#"{{"n":{i},"tenant":"t{}","msg":"event {i}","score":{}.5}}"#,
            i % 3,
            i % 7
        )
        .unwrap();
    }
}

fn config(w: &Workdir, extra: &str) -> std::path::PathBuf {
    w.config(
        "p.yaml",
        &format!(
            r#"
host: {{ data_dir: "{{dir}}/data" }}
pipelines:
  - name: audit
    source: {{ type: file, path: "{{dir}}/in.jsonl", at_end: stop }}
    sink: {{ type: file, path: "{{dir}}/out.jsonl" }}
    batch: {{ max_events: 50, linger: 20ms }}
    commit_interval: 100ms
    integrity: {{ signing_key: "${{SIGN}}" }}
{extra}"#
        ),
    )
}

fn run_to_end(w: &Workdir, cfg: &Path, key: &str) {
    let mut s = w.start_with(cfg, &[("SIGN", key)]);
    assert!(s.wait(Duration::from_secs(120)).success(), "{}", s.logs());
}

/// `sluice verify` on `file`: (exit code, stdout).
fn verify(w: &Workdir, file: &Path, digests: &Path, keys: &[&str]) -> (i32, String) {
    let mut args = vec![
        "verify".to_string(),
        "--file".into(),
        file.display().to_string(),
        "--digests".into(),
        digests.display().to_string(),
    ];
    for k in keys {
        args.push("--public-key".into());
        args.push(k.to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = w.sluice(&args);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    (out.status.code().unwrap_or(-1), format!("{text}{err}"))
}

fn tampered(w: &Workdir, name: &str, lines: Vec<String>) -> std::path::PathBuf {
    let p = w.join(name);
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
    p
}

#[test]
fn a_clean_run_verifies_and_each_tampering_is_found() {
    let w = Workdir::new();
    let (private, public) = keygen(&w);
    write_input(&w, 0, 1000);
    let cfg = config(&w, "");
    run_to_end(&w, &cfg, &private);
    let out = w.join("out.jsonl");
    let digests = w.join("data/integrity/audit.digests");
    let original = lines(&out);
    assert_eq!(original.len(), 1000);
    let (code, text) = verify(&w, &out, &digests, &[&public]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("1000 records"), "{text}");

    // A store that rewrites whitespace and member order still verifies.
    let rewritten: Vec<String> = original
        .iter()
        .map(|l| {
            serde_json::to_string_pretty(&serde_json::from_str::<serde_json::Value>(l).unwrap())
                .unwrap()
                .replace('\n', " ")
        })
        .collect();
    let (code, text) = verify(
        &w,
        &tampered(&w, "ws.jsonl", rewritten),
        &digests,
        &[&public],
    );
    assert_eq!(code, 0, "{text}");

    let check = |name: &str, lines: Vec<String>, kind: &str| {
        let p = tampered(&w, name, lines);
        let (code, text) = verify(&w, &p, &digests, &[&public]);
        assert_eq!(code, 1, "{name}: {text}");
        assert!(text.contains(kind), "{name}: want {kind}: {text}");
    };
    // One field changed.
    let mut l = original.clone();
    l[9] = l[9].replace("\"event 9\"", "\"event nine\"");
    check("changed.jsonl", l, "altered");
    // One record deleted.
    let mut l = original.clone();
    l.remove(20);
    check("deleted.jsonl", l, "missing");
    // Two swapped.
    let mut l = original.clone();
    l.swap(30, 31);
    check("swapped.jsonl", l, "reordered");
    // A forged record without a stamp.
    let mut l = original.clone();
    l.insert(40, r#"{"n":4000,"msg":"forged"}"#.into());
    check("unstamped.jsonl", l, "unstamped_record");
    // A forged record with a plausible stamp: the next sequence, linked to record 41.
    let mut l = original.clone();
    let prev: serde_json::Value = serde_json::from_str(&l[40]).unwrap();
    let mut stamp = prev["_audit"].clone();
    let prev_hash = stamp["hash"].as_str().unwrap().to_string();
    let body = r#"{"msg":"forged","n":4001}"#;
    let mut h = Sha256::new();
    h.update(hex_decode(&prev_hash));
    h.update(body.as_bytes());
    stamp["seq"] = (stamp["seq"].as_u64().unwrap() + 1).into();
    stamp["prev"] = prev_hash.into();
    stamp["hash"] = hex_encode(&h.finalize()).into();
    let mut forged: serde_json::Value = serde_json::from_str(body).unwrap();
    forged["_audit"] = stamp;
    l.insert(41, forged.to_string());
    check("forged.jsonl", l, "conflicting_duplicate");
    // The last 100 records removed: the digests say the chain went further.
    let mut l = original.clone();
    l.truncate(900);
    check("tail.jsonl", l, "tail_cut_off");

    // A digest altered.
    let d = lines(&digests);
    let mut altered = d.clone();
    let n = altered.len() - 1;
    altered[n] = altered[n].replacen("\"records\":", "\"records\":1", 1);
    let p = tampered(&w, "altered.digests", altered);
    let (code, text) = verify(&w, &out, &p, &[&public]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("bad_digest_signature"), "{text}");
    // Digests signed with another key.
    let (_, other) = keygen(&w);
    let (code, text) = verify(&w, &out, &digests, &[&other]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("bad_digest_signature"), "{text}");
    // Inputs that cannot be read.
    let (code, _) = verify(&w, &w.join("nope.jsonl"), &digests, &[&public]);
    assert_eq!(code, 2);
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn kill_9_and_restart_verifies_clean() {
    let w = Workdir::new();
    let (private, public) = keygen(&w);
    write_input(&w, 0, 3000);
    let cfg = config(
        &w,
        "    rate_limit: { events_per_second: 1500, burst: 100 }\n",
    );
    let out = w.join("out.jsonl");
    let mut s = w.start_with(&cfg, &[("SIGN", &private)]);
    wait_for(Duration::from_secs(60), "records written", || {
        (count_lines(&out) >= 1000).then_some(())
    });
    s.kill9();
    let at_kill = count_lines(&out);
    assert!(at_kill < 3000, "the first run finished before the kill");
    run_to_end(&w, &cfg, &private);
    let digests = w.join("data/integrity/audit.digests");
    let (code, text) = verify(&w, &out, &digests, &[&public]);
    assert_eq!(code, 0, "{text}");
    // Every record is there once, plus the identical copies sent again after the restart.
    let o = w.sluice(&[
        "verify",
        "--file",
        out.to_str().unwrap(),
        "--digests",
        digests.to_str().unwrap(),
        "--public-key",
        &public,
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let chain = &report["chains"][0];
    let seen = chain["records_seen"].as_u64().unwrap();
    let dups = chain["identical_duplicates"].as_u64().unwrap();
    assert_eq!(seen - dups, 3000, "{report}");
    assert_eq!(seen as usize, count_lines(&out), "{report}");
    assert!(
        text.contains("3000 records") || text.contains("identical duplicates"),
        "{text}"
    );
}

#[test]
fn a_key_rotation_between_runs_verifies() {
    let w = Workdir::new();
    let (a, a_pub) = keygen(&w);
    let (b, b_pub) = keygen(&w);
    write_input(&w, 0, 300);
    let cfg = config(&w, "");
    run_to_end(&w, &cfg, &a);
    write_input(&w, 300, 600);
    run_to_end(&w, &cfg, &b);
    let out = w.join("out.jsonl");
    let digests = w.join("data/integrity/audit.digests");
    assert_eq!(count_lines(&out), 600);
    let (code, text) = verify(&w, &out, &digests, &[&a_pub, &b_pub]);
    assert_eq!(code, 0, "{text}");
    let (code, text) = verify(&w, &out, &digests, &[&a_pub]);
    assert_eq!(code, 1, "{text}");
}

#[test]
fn a_bad_key_is_reported_at_its_position_without_echoing_it() {
    let w = Workdir::new();
    let cfg = w.config(
        "p.yaml",
        r#"
pipelines:
  - name: audit
    source: { type: file, path: "{dir}/in.jsonl" }
    sinks:
      out:
        type: file
        path: "{dir}/out.jsonl"
        integrity:
          signing_key: "not-a-key-at-all"
"#,
    );
    let out = w.sluice(&["validate", cfg.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("p.yaml:10:"), "{err}");
    assert!(err.contains("32 bytes"), "{err}");
    assert!(!err.contains("not-a-key-at-all"), "{err}");
}

#[test]
fn a_named_sink_s_dead_lettered_record_keeps_its_stamp_in_the_dlq() {
    use std::io::Write;
    let w = Workdir::new();
    let (private, public) = keygen(&w);
    let mut f = std::fs::File::create(w.join("in.jsonl")).unwrap();
    for i in 0..200 {
        if i == 50 {
            // No `kind`: the sink's path template fails and the record is dead-lettered.
            writeln!(f, r#"{{"n":{i}}}"#).unwrap();
        } else {
            writeln!(f, r#"{{"n":{i},"kind":"a"}}"#).unwrap();
        }
    }
    drop(f);
    let cfg = w.config(
        "p.yaml",
        r#"
host: { data_dir: "{dir}/data" }
pipelines:
  - name: audit
    source: { type: file, path: "{dir}/in.jsonl", at_end: stop }
    sinks:
      copy: { type: blackhole }
      audit:
        type: file
        path: "{dir}/out_{{ kind }}.jsonl"
        integrity: { signing_key: "${SIGN}", key_id: audit-1, field: _chain }
"#,
    );
    run_to_end(&w, &cfg, &private);
    let out = w.join("out_a.jsonl");
    assert_eq!(count_lines(&out), 199);
    let first: serde_json::Value = serde_json::from_str(&lines(&out)[0]).unwrap();
    assert_eq!(first["_chain"]["chain"]["sink"], "audit");
    assert_eq!(first["_chain"]["key_id"], "audit-1");
    let digests = w.join("data/integrity/audit.digests");
    let dead: u64 = read_jsonl(&digests)
        .iter()
        .map(|d| d["dead_lettered"].as_u64().unwrap())
        .sum();
    assert_eq!(dead, 1);
    let dlq = w.join("data/dlq/audit.jsonl");
    let args = |with_dlq: bool| {
        let mut a = vec![
            "verify",
            "--file",
            out.to_str().unwrap(),
            "--digests",
            digests.to_str().unwrap(),
            "--public-key",
            &public,
            "--field",
            "_chain",
            "--json",
        ];
        if with_dlq {
            a.extend(["--dlq", dlq.to_str().unwrap()]);
        }
        a.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let run = |a: Vec<String>| {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let o = w.sluice(&a);
        let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        (o.status.code(), report)
    };
    let (code, report) = run(args(true));
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["chains"][0]["records_seen"], 199);
    assert_eq!(report["chains"][0]["dead_lettered_seen"], 1);
    let (code, report) = run(args(false));
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(report["chains"][0]["findings"][0]["kind"], "missing");
    assert_eq!(report["chains"][0]["first_break"], 51);
}

#[test]
fn hmac_stamps_verify_only_with_the_mac_key() {
    let w = Workdir::new();
    let (private, public) = keygen(&w);
    write_input(&w, 0, 200);
    let cfg = w.config(
        "p.yaml",
        r#"
host: { data_dir: "{dir}/data" }
pipelines:
  - name: audit
    source: { type: file, path: "{dir}/in.jsonl", at_end: stop }
    sink: { type: file, path: "{dir}/out.jsonl" }
    integrity: { signing_key: "${SIGN}", mac_key: "${MAC}" }
"#,
    );
    let mut s = w.start_with(&cfg, &[("SIGN", &private), ("MAC", "mac-secret")]);
    assert!(s.wait(Duration::from_secs(60)).success(), "{}", s.logs());
    assert!(!s.logs().contains("mac-secret"));
    let out = w.join("out.jsonl");
    let digests = w.join("data/integrity/audit.digests");
    let first: serde_json::Value = serde_json::from_str(&lines(&out)[0]).unwrap();
    assert_eq!(first["_audit"]["alg"], "hmac-sha256");
    let verify_with = |mac: &[&str]| {
        let mut a = vec![
            "verify",
            "--file",
            out.to_str().unwrap(),
            "--digests",
            digests.to_str().unwrap(),
            "--public-key",
            &public,
        ];
        for m in mac {
            a.extend(["--mac-key", m]);
        }
        let o = w.sluice(&a);
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).to_string(),
        )
    };
    let (code, text) = verify_with(&["old-mac", "mac-secret"]);
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = verify_with(&[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("no --mac-key given"), "{text}");
    let (code, text) = verify_with(&["wrong"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("altered"), "{text}");
}

#[test]
fn integrity_on_a_pipeline_with_named_sinks_is_refused() {
    let w = Workdir::new();
    let cfg = w.config(
        "p.yaml",
        r#"
pipelines:
  - name: audit
    source: { type: file, path: "{dir}/in.jsonl" }
    integrity: { signing_key: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=" }
    sinks:
      out: { type: file, path: "{dir}/out.jsonl" }
"#,
    );
    let out = w.sluice(&["validate", cfg.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("p.yaml:5:"), "{err}");
    assert!(
        err.contains("give `integrity:` to each named sink"),
        "{err}"
    );
}

/// A Kafka source keeps its position in the consumer group: the chains' state must resume
/// exactly where the group does after a `kill -9`, or the records read again get other
/// sequence numbers than the first time and the output no longer verifies.
#[test]
fn a_kafka_source_killed_mid_run_restamps_identically_and_verifies() {
    use crate::kafka::{kafka_source, produce_events};
    use sluice_testkit::kafka::{create_topic, real_broker, unique};
    let brokers = real_broker();
    let topic = unique("e2e.integrity");
    create_topic(&brokers, &topic, 3);
    produce_events(&brokers, &topic, 3, 0..30_000);
    let w = Workdir::new();
    let (private, public) = keygen(&w);
    let source = kafka_source(&brokers, &topic, &unique("g"), "");
    let cfg = w.config(
        "k.yaml",
        &format!(
            r#"
host: {{ data_dir: "{{dir}}/data" }}
pipelines:
  - name: audit
    source: {source}
    sink: {{ type: file, path: "{{dir}}/out.jsonl" }}
    batch: {{ max_events: 200, linger: 20ms }}
    commit_interval: 1s
    rate_limit: {{ events_per_second: 6000, burst: 200 }}
    integrity: {{ signing_key: "${{SIGN}}" }}
"#
        ),
    );
    let out = w.join("out.jsonl");
    for kill_at in [6_000, 16_000] {
        let mut s = w.start_with(&cfg, &[("SIGN", &private)]);
        wait_for(Duration::from_secs(120), "records written", || {
            (count_lines(&out) >= kill_at).then_some(())
        });
        s.kill9();
    }
    let mut s = w.start_with(&cfg, &[("SIGN", &private)]);
    let seqs = || {
        read_jsonl(&out)
            .iter()
            .filter_map(|v| v["seq"].as_u64())
            .collect::<std::collections::HashSet<u64>>()
            .len()
    };
    wait_for(Duration::from_secs(120), "every event written", || {
        (seqs() == 30_000).then_some(())
    });
    // The last commit and digest after everything arrived.
    std::thread::sleep(Duration::from_millis(1500));
    s.sigterm();
    assert!(s.wait(Duration::from_secs(60)).success(), "{}", s.logs());
    let digests = w.join("data/integrity/audit.digests");
    let (code, text) = verify(&w, &out, &digests, &[&public]);
    assert_eq!(code, 0, "{text}");
}

mod copies;
mod example;
mod readers;
