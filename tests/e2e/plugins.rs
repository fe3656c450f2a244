//! Dynamic connector plugins, with the real binary: the example webhook plugin built by the
//! test and loaded from YAML delivers signed batches end to end; a plugin for another ABI,
//! a file that is not a library and a library without the plugin symbols are refused with
//! clear errors; a plugin that panics on a record does not take the host down, its instance
//! restarts and no record is lost.
//!
//! The plugin crates are built with `cargo build -p ...` from inside the test, so run these
//! tests with `cargo nextest run` (plain `cargo test` holds the build lock meanwhile).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use serde_json::Value;
use sha2::Sha256;
use sluice_testkit::conformance::cdylib;

use crate::common::*;

const SECRET: &str = "e2e-webhook-secret";

fn hex_hmac(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[derive(Default)]
struct Received {
    bodies: Vec<Bytes>,
    bad_signatures: usize,
    /// Requests answered 503: the second and the fifth.
    refused: usize,
    requests: usize,
}

/// A webhook receiver that checks `X-Sluice-Signature` against the HMAC of the body and
/// answers its second and fifth requests with 503, as a receiver that is briefly down.
fn webhook_receiver(
    rt: &tokio::runtime::Runtime,
) -> (sluice_testkit::http::TestServer, Arc<Mutex<Received>>) {
    let received = Arc::new(Mutex::new(Received::default()));
    let r = received.clone();
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: Bytes| {
            let r = r.clone();
            async move {
                let want = format!("sha256={}", hex_hmac(SECRET.as_bytes(), &body));
                let got = headers
                    .get("x-sluice-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                let mut r = r.lock();
                r.requests += 1;
                if r.requests == 2 || r.requests == 5 {
                    r.refused += 1;
                    return StatusCode::SERVICE_UNAVAILABLE;
                }
                if got != want {
                    r.bad_signatures += 1;
                    return StatusCode::UNAUTHORIZED;
                }
                r.bodies.push(body);
                StatusCode::OK
            }
        }),
    );
    let server = rt.block_on(sluice_testkit::http::serve(app));
    (server, received)
}

fn plugin_path(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn the_webhook_plugin_loaded_from_yaml_delivers_signed_batches_and_retries_refused_ones() {
    let lib = cdylib("sluice-webhook-plugin");
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let (server, received) = webhook_receiver(&rt);
    let w = Workdir::new();
    let cfg = w.config(
        "webhook.yaml",
        &format!(
            "host:\n  data_dir: {{dir}}/data\n  plugins: [ \"{}\" ]\npipelines:\n  - name: to-webhook\n    source: {{ type: generator, count: 1000 }}\n    sink: {{ type: webhook, url: \"{}/hook\", secret: \"${{WEBHOOK_SECRET}}\" }}\n    batch: {{ max_events: 100, linger: 20ms }}\n",
            plugin_path(&lib),
            server.url()
        ),
    );

    let listed = std::process::Command::new(sluice_bin())
        .arg("connectors")
        .arg(&cfg)
        .env("WEBHOOK_SECRET", SECRET)
        .current_dir(w.path())
        .output()
        .expect("run sluice connectors");
    let stdout = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("webhook "))
        .unwrap_or_else(|| panic!("webhook not listed:\n{stdout}"));
    let canonical = lib.canonicalize().unwrap().display().to_string();
    assert!(
        line.contains("plugin sluice-webhook-plugin 0.1.0")
            && line.contains(&format!("sluice-sdk {}", env!("CARGO_PKG_VERSION")))
            && line.contains(&canonical),
        "{line}"
    );

    let mut s = w.start_with(&cfg, &[("WEBHOOK_SECRET", SECRET)]);
    assert!(s.wait(Duration::from_secs(120)).success(), "{}", s.logs());
    let r = received.lock();
    assert_eq!(r.bad_signatures, 0, "every request carries a valid HMAC");
    let mut seqs = Vec::new();
    for body in &r.bodies {
        let batch: serde_json::Value = serde_json::from_slice(body).expect("body is JSON");
        let batch = batch.as_array().expect("body is a JSON array");
        assert!(batch.len() <= 100, "batches follow batch.max_events");
        for rec in batch {
            assert_eq!(rec["origin"]["partition"], 0);
            seqs.push(
                rec["value"]["seq"]
                    .as_u64()
                    .expect("the event is embedded as JSON"),
            );
        }
    }
    // A refused request's records are resent from the host's own copy of the batch.
    assert_eq!(r.refused, 2, "the receiver refused two requests");
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (0..1000).collect::<Vec<u64>>(),
        "every record delivered exactly once, those of refused requests included"
    );
    drop(r);
    drop(server);
}

fn refused(w: &Workdir, lib: &Path) -> String {
    let cfg = w.config(
        "refused.yaml",
        &format!(
            "host:\n  data_dir: {{dir}}/data\n  plugins: [ \"{}\" ]\npipelines:\n  - name: p\n    source: {{ type: generator, count: 1 }}\n    sink: {{ type: file, path: {{dir}}/out.jsonl }}\n",
            plugin_path(lib)
        ),
    );
    // `validate` never opens a library, so only a file that is no library at all fails it;
    // a wrong ABI or missing symbols are found by `run`.
    let out = w.sluice(&["validate", cfg.to_str().unwrap()]);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "`sluice validate` must not crash:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = w.sluice(&["run", cfg.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "`sluice run` must exit 1, not crash:\n{stderr}"
    );
    assert!(
        !w.join("out.jsonl").exists(),
        "nothing may run after a refused plugin"
    );
    stderr
}

#[test]
fn a_plugin_built_for_another_abi_major_is_refused_naming_both_versions_and_the_path() {
    let lib = cdylib("sluice-abi-next-plugin");
    let w = Workdir::new();
    let stderr = refused(&w, &lib);
    let major = sluice_sdk::plugin::abi::ABI_MAJOR;
    let canonical = lib.canonicalize().unwrap().display().to_string();
    assert!(
        stderr.contains(&format!("built for plugin ABI {}.0", major + 1)),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "speaks plugin ABI {}",
            sluice_sdk::plugin::ABI_VERSION
        )),
        "{stderr}"
    );
    assert!(stderr.contains(&canonical), "{stderr}");
}

#[test]
fn a_file_that_is_not_a_library_or_lacks_the_symbols_is_a_clear_error() {
    let w = Workdir::new();
    let fake = w.join("libfake.so");
    std::fs::write(&fake, "#!/bin/sh\necho not a library\n").unwrap();
    let stderr = refused(&w, &fake);
    assert!(
        stderr.contains("libfake.so") && stderr.contains("is not a loadable library"),
        "{stderr}"
    );

    let src = w.join("other.c");
    std::fs::write(&src, "int some_other_library(void) { return 1; }\n").unwrap();
    let lib: PathBuf = w.join("libother.so");
    let cc = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(&src)
        .output()
        .expect("run cc");
    assert!(
        cc.status.success(),
        "{}",
        String::from_utf8_lossy(&cc.stderr)
    );
    let stderr = refused(&w, &lib);
    assert!(
        stderr.contains("libother.so")
            && stderr.contains("is not a Sluice plugin: it does not export `sluice_abi_version`"),
        "{stderr}"
    );
}

#[test]
fn a_plugin_that_panics_on_a_record_is_restarted_and_loses_nothing() {
    let lib = cdylib("sluice-test-plugin");
    let w = Workdir::new();
    let out = w.join("out.jsonl");
    let cfg = w.config(
        "panic.yaml",
        &format!(
            "host:\n  data_dir: {{dir}}/data\n  plugins: [ \"{}\" ]\npipelines:\n  - name: panicky\n    source: {{ type: generator, count: 600 }}\n    sink: {{ type: panic_once, path: {{dir}}/out.jsonl, marker: \"\\\"seq\\\":337,\" }}\n    batch: {{ max_events: 50, linger: 20ms }}\n",
            plugin_path(&lib)
        ),
    );
    let mut s = w.start(&cfg);
    let status = s.wait(Duration::from_secs(120));
    let logs = s.logs();
    assert!(status.success(), "the host survives and finishes:\n{logs}");
    assert!(
        logs.contains("panic_once: found the marker in the record at offset 337"),
        "the panic is reported:\n{logs}"
    );
    assert!(
        logs.contains("restarting"),
        "the pipeline restarts the instance:\n{logs}"
    );
    assert!(
        logs.lines().any(|l| l.contains("sluice::plugin")
            && l.contains("sluice-test-plugin")
            && l.contains("panicked at")),
        "the plugin's own report of the panic is routed to the host log:\n{logs}"
    );
    let counts = seq_counts(&out);
    let missing: Vec<u64> = (0..600).filter(|s| !counts.contains_key(s)).collect();
    assert!(missing.is_empty(), "records lost: {missing:?}");
    assert_eq!(counts.len(), 600);
}

/// A plugin source's positions cross the boundary as checkpoints: a pipeline stopped
/// mid-file and started again goes on where it stopped, and every line arrives exactly once.
#[test]
fn a_plugin_source_stopped_mid_stream_resumes_where_it_stopped() {
    let lib = cdylib("sluice-file-plugin");
    let w = Workdir::new();
    const LINES: u64 = 40_000;
    let input: String = (0..LINES).map(|i| format!("{{\"seq\":{i}}}\n")).collect();
    std::fs::write(w.join("in.jsonl"), input).expect("write the input");
    let cfg = w.config(
        "tail.yaml",
        &format!(
            "host:\n  data_dir: {{dir}}/data\n  plugins: [ \"{}\" ]\npipelines:\n  - name: tail\n    source: {{ type: plugin_file, path: {{dir}}/in.jsonl }}\n    sink: {{ type: file, path: {{dir}}/out.jsonl }}\n    batch: {{ max_events: 500, linger: 20ms }}\n    rate_limit: {{ events_per_second: 10000 }}\n",
            plugin_path(&lib)
        ),
    );
    let out = w.join("out.jsonl");

    let mut s = w.start(&cfg);
    wait_for(Duration::from_secs(120), "the first lines", || {
        (count_lines(&out) >= 5_000).then_some(())
    });
    s.sigterm();
    assert!(s.wait(Duration::from_secs(30)).success(), "{}", s.logs());
    let first_run = count_lines(&out) as u64;
    assert!(first_run < LINES, "stopped before the end of the file");

    let mut s = w.start(&cfg);
    wait_for(Duration::from_secs(120), "every line", || {
        (count_lines(&out) as u64 >= LINES).then_some(())
    });
    // Anything read twice would arrive within a few batches of the end.
    std::thread::sleep(Duration::from_millis(500));
    s.sigterm();
    assert!(s.wait(Duration::from_secs(30)).success(), "{}", s.logs());

    let counts = seq_counts(&out);
    let missing: Vec<u64> = (0..LINES).filter(|s| !counts.contains_key(s)).collect();
    assert!(
        missing.is_empty(),
        "lines lost: {:?}",
        &missing[..missing.len().min(20)]
    );
    let twice: Vec<u64> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(s, _)| *s)
        .collect();
    assert!(
        twice.is_empty(),
        "lines delivered twice: {:?}",
        &twice[..twice.len().min(20)]
    );
    assert_eq!(lines(&out).len() as u64, LINES);
}

/// The generator writes its events in place (`Source::poll_into`): loaded as a plugin, they
/// are encoded as they are written. The same events arrive as from the built-in generator,
/// its position is committed through the plugin, and a second run delivers nothing again.
#[test]
fn the_generator_loaded_as_a_plugin_writes_the_same_events_as_built_in() {
    let lib = cdylib("sluice-file-plugin");
    let w = Workdir::new();
    const COUNT: usize = 5_000;
    let cfg = w.config(
        "both.yaml",
        &format!(
            "host:\n  data_dir: {{dir}}/data\n  plugins: [ \"{}\" ]\npipelines:\n  - name: built-in\n    source: {{ type: generator, count: {COUNT}, tenants: 3 }}\n    sink: {{ type: file, path: {{dir}}/built-in.jsonl }}\n    batch: {{ max_events: 700, linger: 20ms }}\n  - name: plugin\n    source: {{ type: plugin_generator, count: {COUNT}, tenants: 3 }}\n    sink: {{ type: file, path: {{dir}}/plugin.jsonl }}\n    batch: {{ max_events: 700, linger: 20ms }}\n",
            plugin_path(&lib)
        ),
    );
    // The event time is the wall clock of the poll; everything else is a function of `seq`.
    let without_time = |path: &Path| -> Vec<Value> {
        read_jsonl(path)
            .into_iter()
            .map(|mut v| {
                let time = v.as_object_mut().and_then(|o| o.remove("timestamp"));
                assert!(time.is_some_and(|t| t.is_string()), "no event time in {v}");
                v
            })
            .collect()
    };
    for run in 0..2 {
        let mut s = w.start(&cfg);
        assert!(s.wait(Duration::from_secs(60)).success(), "{}", s.logs());
        let built_in = without_time(&w.join("built-in.jsonl"));
        let plugin = without_time(&w.join("plugin.jsonl"));
        assert_eq!(plugin.len(), COUNT, "run {run}: every event, once");
        assert_eq!(
            plugin, built_in,
            "run {run}: the same events in the same order"
        );
        let stored = stored_offsets(&w.join("data"), "plugin").expect("offsets stored");
        assert_eq!(stored.to_string(), r#"{"0":"5000"}"#);
    }
}

/// The `tag` transform of the test plugin between two built-in transforms, as a pipeline
/// names it.
const TAG_CHAIN: &str = "      - { type: set, field: stage, value: before }
      - { type: tag, field: by, value: plugin,
          drop: { field: level, equals: debug },
          fail: { field: level, equals: poison, kind: tag.poison },
          panic: { field: level, equals: boom } }
      - { type: rename, from: by, to: tagged_by }
";

/// A transform exported by a plugin is named by `type:` in `transforms:` like a built-in one,
/// between built-in ones: changed records are delivered, dropped ones are counted as
/// filtered and never delivered, failing ones (a refusal, a panic) are dead-lettered with
/// their kind and the value they came with. `sluice connectors` lists it as a transform.
#[test]
fn a_plugin_transform_changes_drops_and_dead_letters_records() {
    let lib = cdylib("sluice-test-plugin");
    let w = Workdir::new();
    let admin = format!("127.0.0.1:{}", free_port());
    // 100 lines: 10 `debug` (dropped), 10 `poison` (refused), one `boom` (panics), 79 kept.
    let mut body = String::new();
    for n in 0..100 {
        let level = match n % 10 {
            1 => "debug",
            2 => "poison",
            3 if n == 3 => "boom",
            _ => "info",
        };
        body.push_str(&format!("{{\"n\":{n},\"level\":\"{level}\"}}\n"));
    }
    std::fs::write(w.join("in.jsonl"), body).expect("write input");
    let cfg = w.config(
        "tag.yaml",
        &format!(
            "host:\n  data_dir: \"{{dir}}/data\"\n  admin: {{ listen: \"{admin}\" }}\n  plugins: [ \"{}\" ]\npipelines:\n  - name: tagged\n    source: {{ type: file, path: \"{{dir}}/in.jsonl\" }}\n    transforms:\n{TAG_CHAIN}    sink: {{ type: file, path: \"{{dir}}/out.jsonl\" }}\n    batch: {{ max_events: 7, linger: 10ms }}\n",
            plugin_path(&lib)
        ),
    );

    let listed = w.sluice(&["connectors", &cfg.display().to_string()]);
    let stdout = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("tag "))
        .unwrap_or_else(|| panic!("tag not listed:\n{stdout}"));
    assert!(
        line.contains("transform")
            && line.contains("plugin sluice-test-plugin 0.1.0")
            && line.contains(&format!("sluice-sdk {}", env!("CARGO_PKG_VERSION"))),
        "{line}"
    );

    let mut s = w.start(&cfg);
    let m = |name: &str| metric(&admin, name, "tagged").unwrap_or(0.0);
    let counts = wait_for(Duration::from_secs(60), "every line accounted for", || {
        let v = (
            m("sluice_records_received_total"),
            m("sluice_records_sent_total"),
            m("sluice_records_dead_lettered_total"),
            m("sluice_records_filtered_total"),
        );
        (v.0 == 100.0 && v.1 + v.2 + v.3 == 100.0).then_some(v)
    });
    s.sigterm();
    let status = s.wait(Duration::from_secs(30));
    let logs = s.logs();
    assert!(status.success(), "{logs}");
    assert_eq!(counts, (100.0, 79.0, 11.0, 10.0), "{logs}");

    let out = read_jsonl(&w.join("out.jsonl"));
    assert_eq!(out.len(), 79);
    for v in &out {
        assert_eq!(v["level"], "info", "{v}");
        assert_eq!(
            (&v["stage"], &v["tagged_by"], v.get("by")),
            (&Value::from("before"), &Value::from("plugin"), None),
            "edited before, by and after the plugin: {v}"
        );
    }
    let dlq = read_jsonl(&w.join("data/dlq/tagged.jsonl"));
    assert_eq!(dlq.len(), 11, "{dlq:?}");
    let kind = |d: &Value| d["__connect.errors.exception.class.name"].clone();
    let poison: Vec<&Value> = dlq.iter().filter(|d| kind(d) == "tag.poison").collect();
    assert_eq!(poison.len(), 10, "{dlq:?}");
    for d in &poison {
        assert_eq!(d["__connect.errors.stage"], "TRANSFORMATION");
        assert_eq!(
            d["__connect.errors.exception.message"],
            "`level` is refused"
        );
        let value: Value = serde_json::from_str(d["value"].as_str().unwrap()).unwrap();
        assert_eq!(value["level"], "poison");
        assert!(value.get("stage").is_none(), "the value it came with: {d}");
    }
    let boom: Vec<&Value> = dlq
        .iter()
        .filter(|d| kind(d) == "transform_panic")
        .collect();
    assert_eq!(boom.len(), 1, "{dlq:?}");
    assert!(
        boom[0]["__connect.errors.exception.message"]
            .as_str()
            .is_some_and(|m| m.contains("tag: told to panic on `level`")),
        "{dlq:?}"
    );
}

/// A plugin transform's configuration error is reported by `sluice run` with the file, line
/// and column of the key, like a plugin sink's; `sluice validate`, which loads no plugin,
/// notes the type and checks the rest of the pipeline.
#[test]
fn a_plugin_transform_config_error_is_reported_with_its_position() {
    let lib = cdylib("sluice-test-plugin");
    let w = Workdir::new();
    let cfg = w.config(
        "bad.yaml",
        &format!(
            "host:\n  data_dir: \"{{dir}}/data\"\n  plugins: [ \"{}\" ]\npipelines:\n  - name: p\n    source: {{ type: generator, count: 3 }}\n    transforms:\n      - {{ type: set, field: x, value: 1 }}\n      - {{ type: tag, value: 1,\n          field: \"\" }}\n      - {{ type: tag, field: t, value: 1, drop: {{ field: a, equalz: 2 }} }}\n    sink: {{ type: blackhole }}\n",
            plugin_path(&lib)
        ),
    );
    let o = w.sluice(&["run", &cfg.display().to_string()]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("bad.yaml:10:11: pipelines[0].transforms[1].field: must not be empty"),
        "{err}"
    );
    assert!(
        err.lines().any(|l| l.contains("bad.yaml:11:")
            && l.contains("transforms[2].drop")
            && l.contains("equalz")),
        "{err}"
    );

    let o = w.sluice(&["validate", &cfg.display().to_string()]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("transforms[1] type `tag` is not built in: provided by a plugin"),
        "{err}"
    );
    let typo = w.config(
        "typo.yaml",
        &std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("value: 1 }", "valeu: 1 }"),
    );
    let o = w.sluice(&["validate", &typo.display().to_string()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("typo.yaml:8:"),
        "the built-in transform is still checked: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A plugin built for ABI 3.0, whose function table ends before the transform slots 3.1
/// appended, still loads and runs on this host.
#[test]
fn a_plugin_built_for_abi_3_0_still_loads_and_runs() {
    let lib = cdylib("sluice-abi-3-0-plugin");
    let w = Workdir::new();
    let cfg = w.config(
        "old.yaml",
        &format!(
            "host:\n  data_dir: \"{{dir}}/data\"\n  plugins: [ \"{}\" ]\npipelines:\n  - name: old\n    source: {{ type: generator, count: 250 }}\n    transforms:\n      - {{ type: set, field: x, value: 1 }}\n    sink: {{ type: abi30_lines, path: \"{{dir}}/out.jsonl\" }}\n    batch: {{ max_events: 100, linger: 20ms }}\n",
            plugin_path(&lib)
        ),
    );
    let mut s = w.start(&cfg);
    let status = s.wait(Duration::from_secs(60));
    assert!(status.success(), "{}", s.logs());
    let counts = seq_counts(&w.join("out.jsonl"));
    assert_eq!(counts.len(), 250);
    assert!(counts.values().all(|c| *c == 1));
}
