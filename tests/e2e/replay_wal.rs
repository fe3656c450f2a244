//! `sluice replay` of an `http_server` pipeline's write-ahead log with the real binary: events
//! posted over HTTP to a pipeline with `retain_delivered` are delivered to a file, then a range
//! of log offsets (one that is not an entry boundary too) and a window of receive times are
//! sent again, exactly and in order, while the pipeline runs or not, without moving its
//! committed position nor writing to the log; a start before the oldest entry kept (once the
//! retention deleted the first segments) is refused naming it; a corrupt entry inside the
//! range stops the replay with the segment and offset, and nothing after it is sent.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use sluice_http_server::wal::segment::{self, Decoded};

use crate::common::*;
use crate::replay::{ok, refused};

const TOKEN: &str = "wal-replay-token";
const SECS: Duration = Duration::from_secs(1);

struct Ingest {
    w: Workdir,
    port: u16,
    out: PathBuf,
}

impl Ingest {
    fn new() -> Self {
        let w = Workdir::new();
        let out = w.join("out.jsonl");
        Ingest {
            w,
            port: free_port(),
            out,
        }
    }

    /// The pipeline's config with `retain` as its `retain_delivered`; 1 KiB segments.
    fn config(&self, retain: &str) -> PathBuf {
        self.w.config(
            "ingest.yaml",
            &format!(
                r#"
host: {{ data_dir: "{{dir}}/data" }}
pipelines:
  - name: ingest
    source:
      type: http_server
      listen: "127.0.0.1:{port}"
      auth: {{ tokens: {{ tenant-a: "{TOKEN}" }} }}
      segment_bytes: 1KiB
      retain_delivered: {retain}
    sink: {{ type: file, path: "{out}" }}
    batch: {{ max_events: 5, linger: 10ms }}
"#,
                port = self.port,
                out = self.out.display()
            ),
        )
    }

    fn start(&self, config: &Path) -> Sluice {
        let s = self.w.start(config);
        wait_for(30 * SECS, "the http_server listener", || {
            std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()
        });
        s
    }

    /// Posts events `seqs`, one request each, each answered 200.
    fn post(&self, seqs: std::ops::Range<u64>) {
        let url = format!("http://127.0.0.1:{}/events", self.port);
        runtime().block_on(async {
            let c = reqwest::Client::new();
            for seq in seqs {
                let body = json!({"seq": seq, "pad": "x".repeat(60)}).to_string();
                let r = c
                    .post(&url)
                    .bearer_auth(TOKEN)
                    .body(body)
                    .timeout(10 * SECS)
                    .send()
                    .await
                    .expect("post");
                assert_eq!(r.status().as_u16(), 200, "event {seq}");
            }
        });
    }

    fn replay(&self, config: &Path, args: &[&str]) -> std::process::Output {
        let mut all = vec!["replay", config.to_str().unwrap(), "--pipeline", "ingest"];
        all.extend_from_slice(args);
        self.w.sluice(&all)
    }

    fn wal_dir(&self) -> PathBuf {
        self.w.join("data/wal/ingest")
    }

    /// Waits until the pipeline saved the position `end` (everything before it delivered).
    fn wait_committed(&self, end: u64) {
        wait_for(30 * SECS, "the position saved", || {
            let saved = stored_offsets(&self.w.join("data"), "ingest")?;
            (saved["0"].as_str() == Some(end.to_string().as_str())).then_some(())
        });
    }

    fn store(&self) -> Vec<u8> {
        std::fs::read(self.w.join("data/offsets/ingest.json")).expect("offset store")
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// One entry of the log, as the test reads it from the segment files.
struct Entry {
    offset: u64,
    end: u64,
    ts_ms: i64,
}

/// The entries of the log in `dir`, in order, and the segments' bases.
fn entries(dir: &Path) -> (Vec<Entry>, Vec<u64>) {
    let bases = segment::list(dir).expect("segments");
    let mut out = Vec::new();
    for &base in &bases {
        let bytes = std::fs::read(segment::path(dir, base)).expect("segment");
        let mut at = 0;
        while at < bytes.len() {
            match segment::decode(&bytes[at..]) {
                Decoded::Entry { payload, ts_ms } => {
                    out.push(Entry {
                        offset: base + at as u64,
                        end: base + (at + payload.end) as u64,
                        ts_ms,
                    });
                    at += payload.end;
                }
                other => panic!("segment {base} at {at}: {other:?}"),
            }
        }
    }
    (out, bases)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The lines of `path` from the `skip`th on.
fn after(path: &Path, skip: usize) -> Vec<String> {
    lines(path).into_iter().skip(skip).collect()
}

#[test]
fn a_wal_range_by_offsets_or_times_is_replayed_exactly_without_moving_the_pipeline() {
    let ing = Ingest::new();
    let config = ing.config("{ max_age: 1h, max_bytes: 1MiB }");
    let mut s = ing.start(&config);
    // Three groups of ten; the window between the marks holds the second group exactly.
    let pause = || std::thread::sleep(Duration::from_millis(30));
    ing.post(0..10);
    pause();
    let mark_a = now_ms();
    pause();
    ing.post(10..20);
    pause();
    let mark_b = now_ms();
    pause();
    ing.post(20..30);
    wait_for(60 * SECS, "30 events delivered", || {
        (count_lines(&ing.out) >= 30).then_some(())
    });
    let delivered = lines(&ing.out);
    assert_eq!(delivered.len(), 30);
    let (es, bases) = entries(&ing.wal_dir());
    assert_eq!(es.len(), 30);
    assert!(
        bases.len() >= 3 && bases[0] == 0,
        "delivered segments kept: {bases:?}"
    );
    assert!(es[9].ts_ms < mark_a && mark_a <= es[10].ts_ms);
    assert!(es[19].ts_ms < mark_b && mark_b <= es[20].ts_ms);
    let off = |i: usize| es[i].offset.to_string();
    ing.wait_committed(es[29].end);
    let store = ing.store();

    // While the pipeline runs: offsets 5..17 (a range across segments), in order.
    let out = ing.replay(&config, &["--from", &off(5), "--to", &off(17)]);
    ok(&out);
    assert_eq!(after(&ing.out, 30), delivered[5..17]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("sent 12, dead-lettered 0"), "{stderr}");
    s.sigterm();
    assert!(s.wait(30 * SECS).success(), "{}", s.logs());
    let segments_before = segment::list(&ing.wal_dir()).unwrap();
    let sizes = |bases: &[u64]| -> Vec<u64> {
        bases
            .iter()
            .map(|b| {
                std::fs::metadata(segment::path(&ing.wal_dir(), *b))
                    .unwrap()
                    .len()
            })
            .collect()
    };
    let sizes_before = sizes(&segments_before);

    // An offset inside an entry: from the next entry on.
    let inside = (es[5].offset + 3).to_string();
    ok(&ing.replay(&config, &["--from", &inside, "--to", &off(8)]));
    assert_eq!(after(&ing.out, 42), delivered[6..8]);

    // The window of receive times between the marks: the second group.
    let (a, b) = (rfc3339(mark_a), rfc3339(mark_b));
    let shown = ok(&ing.replay(&config, &["--from", &a, "--to", &b, "--dry-run"]));
    assert!(
        shown.contains(&format!("offsets {}..{}", off(10), off(20))),
        "{shown}"
    );
    assert_eq!(count_lines(&ing.out), 44);
    ok(&ing.replay(&config, &["--from", &a, "--to", &b]));
    assert_eq!(after(&ing.out, 44), delivered[10..20]);
    // Without --to: to the end of the log.
    ok(&ing.replay(&config, &["--from", &b]));
    assert_eq!(after(&ing.out, 54), delivered[20..30]);

    // Neither the pipeline's position nor the log moved.
    assert_eq!(ing.store(), store, "offset store moved");
    assert_eq!(segment::list(&ing.wal_dir()).unwrap(), segments_before);
    assert_eq!(sizes(&segments_before), sizes_before);
    let err = refused(&ing.replay(&config, &["--from", "0", "--partition", "1"]));
    assert!(err.contains("partition 0"), "{err}");

    // A tighter retention deletes the oldest delivered segments when the pipeline opens the
    // log: a start before the oldest entry kept is refused, naming it.
    let config = ing.config("{ max_bytes: 1KiB }");
    let mut s = ing.start(&config);
    s.sigterm();
    assert!(s.wait(30 * SECS).success(), "{}", s.logs());
    let (kept, bases) = entries(&ing.wal_dir());
    let first = bases[0];
    assert!(
        first > 0 && bases.len() < segments_before.len(),
        "{bases:?}"
    );
    let first_time = rfc3339(kept[0].ts_ms);
    for from in [off(0), rfc3339(es[0].ts_ms)] {
        let err = refused(&ing.replay(&config, &["--from", &from]));
        assert!(
            err.contains("before the oldest entry")
                && err.contains(&format!("offset {first}"))
                && err.contains(&first_time),
            "{err}"
        );
    }
    let n = count_lines(&ing.out);
    ok(&ing.replay(&config, &["--from", &first.to_string()]));
    assert_eq!(after(&ing.out, n), delivered[30 - kept.len()..]);
    assert_eq!(ing.store(), store, "offset store moved");
}

#[test]
fn a_corrupt_entry_inside_a_wal_range_stops_the_replay_and_is_not_skipped() {
    let ing = Ingest::new();
    let config = ing.config("{ max_age: 1h }");
    let mut s = ing.start(&config);
    ing.post(0..12);
    wait_for(60 * SECS, "12 events delivered", || {
        (count_lines(&ing.out) >= 12).then_some(())
    });
    s.sigterm();
    assert!(s.wait(30 * SECS).success(), "{}", s.logs());
    let delivered = lines(&ing.out);
    let (es, bases) = entries(&ing.wal_dir());
    // Flip a bit in the payload of entry 6.
    let bad = es[6].offset;
    let base = bases[bases.partition_point(|&b| b <= bad) - 1];
    let seg = segment::path(&ing.wal_dir(), base);
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[(bad - base) as usize + segment::HEADER_BYTES + 3] ^= 0x20;
    std::fs::write(&seg, &bytes).unwrap();

    let (from, to) = (es[2].offset.to_string(), es[10].offset.to_string());
    let err = refused(&ing.replay(&config, &["--from", &from, "--to", &to]));
    assert!(
        err.contains(&seg.display().to_string())
            && err.contains(&format!("at byte {} (log offset {bad})", bad - base))
            && err.contains("checksum mismatch"),
        "{err}"
    );
    // What was sent is a prefix of entries 2..6: nothing at or after the bad entry.
    let sent = after(&ing.out, 12);
    assert!(
        sent.len() <= 4 && sent[..] == delivered[2..2 + sent.len()],
        "{sent:?}"
    );
}
