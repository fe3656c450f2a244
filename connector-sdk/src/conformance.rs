//! One conformance suite for sinks and sources.
//!
//! Every check drives a connector only through a [`Registry`] and the `Sink` / `Source`
//! traits, so it runs unchanged against a built-in connector and against the same connector
//! loaded from a plugin library. Each returns a *transcript*: what it observed, with
//! temporary paths replaced by `<dir>`, so a test can assert both that each run conforms and
//! that the built-in and the plugin answered identically (outcomes, errors, checkpoints).
//!
//! What is checked:
//! * sinks: one outcome per record, in order; delivered records arrive in order across
//!   batches and across a restart of the instance (close, rebuild, reopen); an empty batch
//!   is fine; a broken destination is an error status, not a panic;
//! * [`check_scripted_sink`]: every outcome kind and every `SinkError` variant (with
//!   `retry_after`), health changes, and every field of a record, end to end;
//! * sources: records in order with strictly increasing offsets per partition, at most `max`
//!   per poll; `commit` returns checkpoints from which a new instance resumes right after the
//!   committed records (nothing lost, nothing committed read again); a broken upstream is an
//!   error status.
//!
//! [`cdylib`] builds a workspace plugin crate for the plugin half of these tests.
//!
//! Behind the SDK's `conformance` feature, for tests: a plugin author adds
//! `sluice-sdk = { ..., features = ["conformance"] }` under `[dev-dependencies]` and calls
//! [`check_sink`] / [`check_source`] on the connectors of their own `register` function.

pub mod scripted;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::{
    views, BuildContext, Checkpoint, Header, Health, Origin, Outcome, Polled, Record, Registry,
    Sink, SinkContext, SinkError, Source, SourceContext, SourceError,
};

/// What the suite observed, one line per fact.
pub type Transcript = Vec<String>;

const PIPELINE: &str = "conformance";

fn build_ctx(dir: &Path) -> BuildContext {
    BuildContext {
        pipeline: PIPELINE.into(),
        data_dir: dir.to_path_buf(),
    }
}

fn sink_ctx(health: &Health) -> SinkContext {
    SinkContext {
        pipeline: PIPELINE.into(),
        health: health.clone(),
    }
}

fn source_ctx(health: &Health, checkpoints: HashMap<i32, String>) -> SourceContext {
    SourceContext {
        pipeline: PIPELINE.into(),
        checkpoints,
        health: health.clone(),
    }
}

/// Replaces the temporary directory in a message so transcripts of two runs compare.
fn normalise(text: &str, dir: &Path) -> String {
    text.replace(&dir.display().to_string(), "<dir>")
}

fn sink_error_line(e: &SinkError, dir: &Path) -> String {
    let line = match e {
        SinkError::Unavailable {
            message,
            retry_after,
        } => format!("Unavailable({message}, retry_after={retry_after:?})"),
        SinkError::Unauthorized(m) => format!("Unauthorized({m})"),
        SinkError::TooLarge(m) => format!("TooLarge({m})"),
        SinkError::Fatal(m) => format!("Fatal({m})"),
    };
    normalise(&line, dir)
}

fn source_error_line(e: &SourceError, dir: &Path) -> String {
    normalise(&format!("{e:?}"), dir)
}

fn origin(partition: i32, offset: i64) -> Origin {
    Origin::new(Arc::from("conformance"), partition, offset)
}

/// Records `start..start + n` with varied shapes: keys, headers (with and without a value),
/// timestamps, multi-byte text, sizes from a few bytes to 256 KiB.
pub fn sample_records(start: i64, n: i64) -> Vec<Record> {
    (start..start + n)
        .map(|i| {
            let pad = if i % 500 == 499 {
                256 * 1024
            } else {
                (i % 7) as usize * 60
            };
            let value = format!(
                "{{\"seq\":{i},\"msg\":\"contrôle ✓ {i}\",\"pad\":\"{}\"}}",
                "x".repeat(pad)
            );
            let mut r = Record::new(value.into_bytes(), origin((i % 3) as i32, i));
            if i % 2 == 0 {
                r.key = Some(format!("key-{i}").into_bytes().into());
                r.timestamp = Some(1_700_000_000_000 + i);
            }
            if i % 3 == 0 {
                r.headers = vec![
                    Header::new("trace", format!("t-{i}")),
                    Header {
                        key: "flag".into(),
                        value: None,
                    },
                ];
            }
            r
        })
        .collect()
}

/// Sends a batch the way a pipeline does: as views of its records.
pub async fn send_as_pipeline(
    sink: &dyn Sink,
    batch: &[Record],
) -> Result<Vec<Outcome>, SinkError> {
    sink.send(&views(batch)).await
}

fn outcome_line(outcomes: &[Outcome]) -> String {
    let mut counts = [0usize; 3];
    for o in outcomes {
        counts[match o {
            Outcome::Delivered => 0,
            Outcome::Retry(_) | Outcome::Unavailable(_) => 1,
            Outcome::Reject(_) => 2,
        }] += 1;
    }
    format!(
        "outcomes delivered={} retry={} reject={}",
        counts[0], counts[1], counts[2]
    )
}

/// A sink under test.
pub struct SinkCase<'a> {
    pub registry: &'a Registry,
    pub type_name: &'a str,
    /// Configuration delivering into `dir`.
    pub config: &'a dyn Fn(&Path) -> serde_json::Value,
    /// What reached the destination of `dir`, as the record values, in order.
    pub delivered: &'a dyn Fn(&Path) -> Vec<Vec<u8>>,
    /// A configuration whose destination cannot take anything, if the connector has one.
    pub broken_config: Option<&'a dyn Fn(&Path) -> serde_json::Value>,
}

async fn open_sink(
    case: &SinkCase<'_>,
    config: serde_json::Value,
    dir: &Path,
    health: &Health,
) -> Result<Box<dyn Sink>, SinkError> {
    let mut sink = case
        .registry
        .build_sink(case.type_name, config, &build_ctx(dir))
        .unwrap_or_else(|e| panic!("building sink `{}`: {e}", case.type_name));
    sink.open(sink_ctx(health)).await?;
    Ok(sink)
}

/// Order, outcomes per record, restart and errors of a sink.
pub async fn check_sink(case: &SinkCase<'_>) -> Transcript {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let mut t = Transcript::new();
    let health = Health::new();
    let sink = open_sink(case, (case.config)(dir), dir, &health)
        .await
        .unwrap_or_else(|e| panic!("opening sink `{}`: {e}", case.type_name));
    t.push(format!("concurrency {}", sink.default_concurrency()));

    let mut expected: Vec<Vec<u8>> = Vec::new();
    // Each batch must arrive with its own records, in order.
    let first = sample_records(0, 100);
    let second = sample_records(100, 1000);
    for batch in [&first, &second] {
        let outcomes = sink
            .send(&views(batch))
            .await
            .unwrap_or_else(|e| panic!("send of {} records: {e}", batch.len()));
        assert_eq!(outcomes.len(), batch.len(), "one outcome per record");
        t.push(outcome_line(&outcomes));
        for (r, o) in batch.iter().zip(&outcomes) {
            if *o == Outcome::Delivered {
                expected.push(r.value.to_vec());
            }
        }
    }
    let outcomes = send_as_pipeline(sink.as_ref(), &[])
        .await
        .unwrap_or_else(|e| panic!("send of an empty batch: {e}"));
    t.push(outcome_line(&outcomes));
    sink.close().await.unwrap_or_else(|e| panic!("close: {e}"));
    drop(sink);

    // A restarted instance appends after what the first one delivered.
    let sink = open_sink(case, (case.config)(dir), dir, &health)
        .await
        .unwrap_or_else(|e| panic!("reopening sink `{}`: {e}", case.type_name));
    let batch = sample_records(1100, 50);
    let outcomes = sink
        .send(&views(&batch))
        .await
        .unwrap_or_else(|e| panic!("send after restart: {e}"));
    assert_eq!(outcomes.len(), batch.len());
    t.push(outcome_line(&outcomes));
    for (r, o) in batch.iter().zip(&outcomes) {
        if *o == Outcome::Delivered {
            expected.push(r.value.to_vec());
        }
    }
    sink.close().await.unwrap_or_else(|e| panic!("close: {e}"));
    drop(sink);

    let delivered = (case.delivered)(dir);
    assert_eq!(delivered.len(), expected.len(), "delivered record count");
    for (i, (got, want)) in delivered.iter().zip(&expected).enumerate() {
        assert!(
            got == want,
            "delivered record {i} differs from what was sent (order or content)"
        );
    }
    t.push(format!("delivered {} records in order", delivered.len()));

    if let Some(broken) = case.broken_config {
        let bdir = tmp.path().join("broken");
        std::fs::create_dir_all(&bdir).expect("create dir");
        let err = match open_sink(case, broken(&bdir), &bdir, &Health::new()).await {
            Err(e) => e,
            Ok(sink) => sink
                .send(&views(&sample_records(0, 3)))
                .await
                .expect_err("a broken destination must fail the batch"),
        };
        t.push(format!(
            "broken destination: {}",
            sink_error_line(&err, &bdir)
        ));
    }
    t
}

/// Every outcome, error variant, health change and record field through the scripted sink
/// ([`scripted`]); `registry` must provide it under [`scripted::TYPE`].
pub async fn check_scripted_sink(registry: &Registry) -> Transcript {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let out = dir.join("described.jsonl");
    let mut t = Transcript::new();
    let health = Health::new();
    let config = serde_json::json!({ "path": out });
    let sink = open_sink(
        &SinkCase {
            registry,
            type_name: scripted::TYPE,
            config: &|_| serde_json::Value::Null,
            delivered: &|_| Vec::new(),
            broken_config: None,
        },
        config,
        dir,
        &health,
    )
    .await
    .unwrap_or_else(|e| panic!("opening the scripted sink: {e}"));
    t.push(format!("concurrency {}", sink.default_concurrency()));

    let mut batch = sample_records(0, 40);
    batch[5].value = "retry me".into();
    batch[6].value = "reject me".into();
    // (No decode error here: the host dead-letters such a record before any sink sees it,
    // and a sink's `RecordRef` has no field for one.)
    batch[8].value = bytes::Bytes::from_static(&[0xff, 0x00, 0xfe]);
    batch[9].value = bytes::Bytes::new();
    let outcomes = send_as_pipeline(sink.as_ref(), &batch)
        .await
        .unwrap_or_else(|e| panic!("scripted send: {e}"));
    assert_eq!(outcomes.len(), batch.len());
    assert_eq!(outcomes[5], Outcome::Retry("scripted retry of 5".into()));
    assert_eq!(
        outcomes[6],
        Outcome::reject("conformance.reject", "scripted rejection of 6")
    );
    t.push(format!("{outcomes:?}"));
    // A batch without headers: a plugin host lends its views of it as they are instead of
    // describing them again (headers are the host's own Rust values).
    let mut plain = sample_records(40, 20);
    plain.iter_mut().for_each(|r| r.headers.clear());
    let plain_outcomes = send_as_pipeline(sink.as_ref(), &plain)
        .await
        .unwrap_or_else(|e| panic!("scripted send: {e}"));
    assert_eq!(plain_outcomes, vec![Outcome::Delivered; plain.len()]);

    let described: Vec<String> = std::fs::read_to_string(&out)
        .expect("scripted sink output")
        .lines()
        .map(str::to_string)
        .collect();
    let want: Vec<String> = batch
        .iter()
        .zip(&outcomes)
        .filter(|(_, o)| **o == Outcome::Delivered)
        .map(|(r, _)| r)
        .chain(&plain)
        .map(scripted::describe)
        .collect();
    assert_eq!(
        described, want,
        "every field of every delivered record arrives intact"
    );
    t.push(format!("{} records described intact", described.len()));

    for word in [
        "error:unavailable",
        "error:unauthorized",
        "error:too_large",
        "error:fatal",
    ] {
        let mut b = sample_records(100, 3);
        b[1].value = word.into();
        let e = sink.send(&views(&b)).await.expect_err(word);
        t.push(format!("{word}: {}", sink_error_line(&e, dir)));
        if word == "error:unavailable" {
            assert_eq!(
                health.problem().as_deref(),
                Some("scripted outage"),
                "health follows the sink"
            );
            t.push(format!("health {:?}", health.problem()));
        }
    }
    sink.send(&views(&sample_records(200, 2)))
        .await
        .unwrap_or_else(|e| panic!("send after errors: {e}"));
    assert_eq!(health.problem(), None, "health recovers with the sink");
    t.push(format!("health {:?}", health.problem()));
    sink.close().await.unwrap_or_else(|e| panic!("close: {e}"));
    t
}

/// A sink that panics on a record answers `Fatal` naming the panic, and a new instance of the
/// same type then works. Only meaningful across a plugin boundary (in-process the panic
/// would unwind into the caller).
pub async fn check_sink_panic(registry: &Registry) -> Transcript {
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = tmp.path().join("described.jsonl");
    let mut sink = registry
        .build_sink(
            scripted::TYPE,
            serde_json::json!({ "path": out }),
            &build_ctx(tmp.path()),
        )
        .expect("build scripted sink");
    sink.open(sink_ctx(&Health::new())).await.expect("open");
    let mut batch = sample_records(0, 5);
    batch[3].value = "panic here".into();
    let e = send_as_pipeline(sink.as_ref(), &batch)
        .await
        .expect_err("a panic must be an error");
    let SinkError::Fatal(msg) = &e else {
        panic!("a panic must be Fatal, got {e:?}")
    };
    assert!(
        msg.contains("panicked") && msg.contains("scripted panic on record 3"),
        "{msg}"
    );
    drop(sink);

    let mut sink = registry
        .build_sink(
            scripted::TYPE,
            serde_json::json!({ "path": out }),
            &build_ctx(tmp.path()),
        )
        .expect("rebuild scripted sink");
    sink.open(sink_ctx(&Health::new())).await.expect("reopen");
    batch[3].value = "fine now".into();
    let outcomes = sink.send(&views(&batch)).await.expect("send after restart");
    assert_eq!(outcomes, vec![Outcome::Delivered; 5]);
    vec![sink_error_line(&e, tmp.path()), outcome_line(&outcomes)]
}

/// Prepares a source's upstream in a directory for `n` records: its configuration and the
/// values it must yield, in order.
pub type Seed = dyn Fn(&Path, usize) -> (serde_json::Value, Vec<Vec<u8>>);

/// A source under test.
pub struct SourceCase<'a> {
    pub registry: &'a Registry,
    pub type_name: &'a str,
    /// Prepares `dir` so that the source yields `n` records and then finishes or idles;
    /// returns its configuration and the values it must yield, in order.
    pub seed: &'a Seed,
    /// A configuration whose upstream cannot be read, if the connector has one.
    pub broken_config: Option<&'a dyn Fn(&Path) -> serde_json::Value>,
}

fn record_line(r: &Record) -> String {
    format!(
        "p={} off={} key={:?} ts={:?} headers={} decode_error={}",
        r.origin.partition,
        r.origin.offset,
        r.key
            .as_ref()
            .map(|k| String::from_utf8_lossy(k).into_owned()),
        r.timestamp,
        r.headers.len(),
        r.decode_error.is_some()
    )
}

/// Polls until `want` records came and the source finished or went idle.
async fn drain(source: &mut Box<dyn Source>, max: usize, want: usize) -> Vec<Record> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut got = Vec::new();
    loop {
        assert!(
            Instant::now() < deadline,
            "source yielded {} of {want} records in 20 s",
            got.len()
        );
        match source
            .poll(max)
            .await
            .unwrap_or_else(|e| panic!("poll: {e}"))
        {
            Polled::Records(r) => {
                assert!(r.len() <= max, "poll({max}) returned {} records", r.len());
                got.extend(r);
            }
            Polled::Idle if got.len() >= want => return got,
            Polled::Idle => {}
            Polled::Finished => return got,
        }
    }
}

fn assert_offsets_increase(records: &[Record]) {
    let mut last: HashMap<(Arc<str>, i32), i64> = HashMap::new();
    for r in records {
        let k = (r.origin.stream.clone(), r.origin.partition);
        if let Some(prev) = last.insert(k, r.origin.offset) {
            assert!(
                r.origin.offset > prev,
                "offsets must increase per partition: {prev} then {}",
                r.origin.offset
            );
        }
    }
}

/// Order, offsets, commit and resume, and errors of a source.
pub async fn check_source(case: &SourceCase<'_>) -> Transcript {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let mut t = Transcript::new();
    let (config, expected) = (case.seed)(dir, 60);
    let health = Health::new();
    let build = |config: serde_json::Value| {
        case.registry
            .build_source(case.type_name, config, &build_ctx(dir))
            .unwrap_or_else(|e| panic!("building source `{}`: {e}", case.type_name))
    };

    let mut source = build(config.clone());
    source
        .open(source_ctx(&health, HashMap::new()))
        .await
        .unwrap_or_else(|e| panic!("open: {e}"));
    let records = drain(&mut source, 7, expected.len()).await;
    let values: Vec<Vec<u8>> = records.iter().map(|r| r.value.to_vec()).collect();
    assert_eq!(values.len(), expected.len(), "record count");
    assert!(values == expected, "records must come in order, unchanged");
    assert_offsets_increase(&records);
    t.extend(records.iter().map(record_line));

    // Commit the first 25 records: the last of them in each partition.
    let mut through: Vec<Origin> = Vec::new();
    for r in &records[..25] {
        match through
            .iter_mut()
            .find(|o| o.stream == r.origin.stream && o.partition == r.origin.partition)
        {
            Some(o) => o.offset = r.origin.offset,
            None => through.push(r.origin.clone()),
        }
    }
    let checkpoints: Vec<Checkpoint> = source
        .commit(&through)
        .await
        .unwrap_or_else(|e| panic!("commit: {e}"));
    t.push(format!("lag {:?}", source.lag()));
    t.push(normalise(&format!("checkpoints {checkpoints:?}"), dir));
    source
        .close()
        .await
        .unwrap_or_else(|e| panic!("close: {e}"));
    drop(source);

    let mut source = build(config);
    let cps = checkpoints
        .iter()
        .map(|c| (c.partition, c.position.clone()))
        .collect();
    source
        .open(source_ctx(&health, cps))
        .await
        .unwrap_or_else(|e| panic!("reopen: {e}"));
    let rest = drain(&mut source, 50, expected.len() - 25).await;
    let rest_values: Vec<Vec<u8>> = rest.iter().map(|r| r.value.to_vec()).collect();
    assert!(
        rest_values == expected[25..],
        "after a restart from the checkpoints the source must resume right after the committed records \
         (got {} records, want {})",
        rest_values.len(),
        expected.len() - 25
    );
    t.push(format!("resumed with {} records", rest.len()));
    source
        .close()
        .await
        .unwrap_or_else(|e| panic!("close: {e}"));
    drop(source);

    if let Some(broken) = case.broken_config {
        let mut source = build(broken(dir));
        let err = match source
            .open(source_ctx(&Health::new(), HashMap::new()))
            .await
        {
            Err(e) => e,
            Ok(()) => source
                .poll(10)
                .await
                .expect_err("a broken upstream must fail"),
        };
        t.push(format!("broken upstream: {}", source_error_line(&err, dir)));
    }
    t
}

/// The `file` sink of `connectors/builtin` (or its plugin build): values as lines.
pub fn file_sink_case<'a>(registry: &'a Registry, type_name: &'a str) -> SinkCase<'a> {
    SinkCase {
        registry,
        type_name,
        config: &|dir| serde_json::json!({ "path": dir.join("out.jsonl") }),
        delivered: &|dir| {
            std::fs::read(dir.join("out.jsonl"))
                .unwrap_or_default()
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .map(<[u8]>::to_vec)
                .collect()
        },
        // A directory where the file should be: every open or write fails.
        broken_config: Some(&|dir| serde_json::json!({ "path": dir })),
    }
}

/// The `file` source of `connectors/builtin` (or its plugin build) over JSON lines, with one
/// line that is not JSON (emitted with a decode error).
pub fn file_source_case<'a>(registry: &'a Registry, type_name: &'a str) -> SourceCase<'a> {
    SourceCase {
        registry,
        type_name,
        seed: &|dir, n| {
            let values: Vec<Vec<u8>> = (0..n)
                .map(|i| {
                    if i == 13 {
                        b"not json at all".to_vec()
                    } else {
                        format!("{{\"seq\":{i},\"msg\":\"contrôle ✓\"}}").into_bytes()
                    }
                })
                .collect();
            let mut text = values.join(&b'\n');
            text.push(b'\n');
            let path = dir.join("in.jsonl");
            std::fs::write(&path, text).expect("write source input");
            (
                serde_json::json!({ "path": path, "at_end": "stop" }),
                values,
            )
        },
        broken_config: Some(&|dir| serde_json::json!({ "path": dir.join("missing.jsonl") })),
    }
}

/// The scripted source ([`scripted`]).
pub fn scripted_source_case(registry: &Registry) -> SourceCase<'_> {
    SourceCase {
        registry,
        type_name: scripted::TYPE,
        seed: &|_, n| {
            let values = (0..n)
                .map(|i| format!("{{\"n\":{i},\"text\":\"événement {i}\"}}").into_bytes())
                .collect();
            (serde_json::json!({ "count": n, "partitions": 2 }), values)
        },
        broken_config: Some(&|_| serde_json::json!({ "count": 1, "fail_open": "unavailable" })),
    }
}

/// Builds a `cdylib` crate of the workspace the test runs in (`cargo build -p PACKAGE` in the
/// current directory, which cargo sets to the tested package's) and returns the path of its
/// library. Built once per test process.
///
/// Run tests that use it with `cargo nextest run`: plain `cargo test` holds the build lock
/// while tests run, so the nested build would wait forever.
pub fn cdylib(package: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = built.get(package) {
        return p.clone();
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args([
            "build",
            "--message-format=json-render-diagnostics",
            "-p",
            package,
        ])
        .output()
        .unwrap_or_else(|e| panic!("run cargo build -p {package}: {e}"));
    assert!(
        out.status.success(),
        "cargo build -p {package} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lib = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .flat_map(|m| {
            m["filenames"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|f| f.as_str().map(PathBuf::from))
        })
        .find(|f| {
            let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            name.starts_with(&format!("lib{}", package.replace('-', "_")))
                && (name.ends_with(".so") || name.ends_with(".dylib"))
        })
        .unwrap_or_else(|| panic!("cargo build -p {package} produced no cdylib"));
    built.insert(package.to_string(), lib.clone());
    lib
}
