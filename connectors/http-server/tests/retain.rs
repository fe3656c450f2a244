//! Retention of delivered write-ahead log segments (`retain_delivered`): kept within both
//! limits, deleted oldest first, deleted to make room rather than refuse an append, and kept
//! across a restart of the source.

mod common;

use std::path::Path;
use std::time::{Duration, SystemTime};

use common::*;
use serde_json::json;
use sluice_http_server::wal::{segment, AppendError, Fsync, Limits, Retain, Wal};
use sluice_sdk::Source;

fn limits(max_bytes: u64, retain: Option<Retain>) -> Limits {
    Limits {
        max_bytes,
        high_water_bytes: max_bytes,
        segment_bytes: 256,
        retain,
    }
}

/// Appends one entry of a 100-byte payload (116 bytes in the log); returns the offset after it.
async fn append(wal: &Wal) -> Result<u64, AppendError> {
    let mut buf = Vec::new();
    segment::encode(&mut buf, 1, &[b'x'; 100]);
    let at = wal.append(buf).await?;
    Ok(at + segment::entry_len(100))
}

fn bases(dir: &Path) -> Vec<u64> {
    segment::list(dir).unwrap()
}

/// Sets the modification time of the segment at `base` to `ago` before now.
fn age(dir: &Path, base: u64, ago: Duration) {
    let f = std::fs::File::options()
        .write(true)
        .open(segment::path(dir, base))
        .unwrap();
    f.set_modified(SystemTime::now() - ago).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_segments_are_kept_within_max_bytes_and_deleted_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let retain = Retain {
        max_age: None,
        max_bytes: Some(1000),
    };
    let opened = Wal::open(
        dir.path(),
        None,
        Fsync::Always,
        limits(1 << 20, Some(retain)),
    )
    .unwrap();
    let wal = opened.wal;
    let mut end = 0;
    for _ in 0..40 {
        end = append(&wal).await.unwrap();
    }
    let all = bases(dir.path());
    assert!(all.len() > 8, "{all:?}");
    wal.commit(end).unwrap();
    let kept = bases(dir.path());
    // The newest segments, as many whole delivered ones as fit in 1000 bytes.
    assert_eq!(kept[..], all[all.len() - kept.len()..]);
    let last = *kept.last().unwrap();
    let delivered = last - kept[0];
    let one_more = last - all[all.len() - kept.len() - 1];
    assert!(delivered <= 1000 && one_more > 1000, "{kept:?} of {all:?}");
    assert_eq!(wal.first_offset(), kept[0]);
    wal.close();

    // Without retention the delivered segments go as soon as the log is opened.
    let opened = Wal::open(dir.path(), Some(end), Fsync::Always, limits(1 << 20, None)).unwrap();
    assert_eq!(bases(dir.path()), vec![last]);
    opened.wal.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_segments_past_max_age_are_deleted_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let retain = Retain {
        max_age: Some(Duration::from_secs(3600)),
        max_bytes: None,
    };
    let opened = Wal::open(
        dir.path(),
        None,
        Fsync::Always,
        limits(1 << 20, Some(retain)),
    )
    .unwrap();
    let wal = opened.wal;
    let mut end = 0;
    for _ in 0..20 {
        end = append(&wal).await.unwrap();
    }
    let all = bases(dir.path());
    wal.commit(end).unwrap();
    assert_eq!(bases(dir.path()), all, "all within an hour");
    // The second segment is older than the first: deletion stops at the first one kept.
    age(dir.path(), all[1], Duration::from_secs(7200));
    wal.retire().unwrap();
    assert_eq!(bases(dir.path()), all);
    age(dir.path(), all[0], Duration::from_secs(7300));
    age(dir.path(), all[2], Duration::from_secs(3500));
    wal.retire().unwrap();
    assert_eq!(bases(dir.path()), all[2..]);
    // Undelivered segments are kept whatever their age.
    let last = *all.last().unwrap();
    age(dir.path(), last, Duration::from_secs(7200));
    wal.retire().unwrap();
    assert!(bases(dir.path()).contains(&last));
    wal.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_segments_make_room_rather_than_refuse_an_append() {
    let dir = tempfile::tempdir().unwrap();
    // Keep every delivered segment, as long as the log's cap allows.
    let retain = Retain {
        max_age: None,
        max_bytes: None,
    };
    let opened = Wal::open(dir.path(), None, Fsync::Always, limits(2048, Some(retain))).unwrap();
    let wal = opened.wal;
    // Ten times the cap, each entry delivered at once: never refused.
    for i in 0..180 {
        let end = append(&wal)
            .await
            .unwrap_or_else(|e| panic!("append {i} refused: {e}"));
        wal.commit(end).unwrap();
        assert!(wal.disk_bytes() <= 2048, "{}", wal.disk_bytes());
    }
    assert!(bases(dir.path())[0] > 0);
    // Nothing delivered any more: refused once the undelivered bytes reach the cap, and only
    // after every delivered segment was deleted.
    let committed = wal.durable_end();
    let refused = loop {
        if let Err(e) = append(&wal).await {
            break e;
        }
    };
    assert!(
        matches!(refused, AppendError::Full | AppendError::HighWater),
        "{refused}"
    );
    let left = bases(dir.path());
    assert!(
        left.len() == 1 || left[1] > committed,
        "{left:?} {committed}"
    );
    wal.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_keeps_delivered_segments_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        json!({"segment_bytes": 256, "retain_delivered": {"max_age": "1h", "max_bytes": "1MiB"}}),
    );
    let mut run = open(dir.path(), cfg.clone(), None).await;
    for i in 0..10 {
        let body = json!({"i": i, "pad": "p".repeat(100)}).to_string();
        assert_eq!(post(&run.url, "/events", Some(TOKEN_A), body).await.0, 200);
    }
    let recs = poll_n(&mut run.source, 10).await;
    let cps = run.source.commit(&[recs[9].origin.clone()]).await.unwrap();
    let before = segments(dir.path());
    assert!(before.len() > 2, "{before:?}");
    run.source.close().await.unwrap();
    let again = open(dir.path(), cfg, Some(&cps[0].position)).await;
    assert_eq!(segments(dir.path()), before);
    drop(again);

    // Retention must fit in the log's cap.
    let bad = config(
        json!({"max_bytes": "1MiB", "segment_bytes": 256, "retain_delivered": {"max_bytes": "2MiB"}}),
    );
    let cfg = sluice_sdk::config::from_value(bad).unwrap();
    let err = match sluice_http_server::HttpServerSource::new(cfg, dir.path(), "ingest") {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("must not be over max_bytes"), "{err}");
}
