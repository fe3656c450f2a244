//! The source against the Cosmos emulator: delivery, order, restarts, splits and faults.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use common::{assert_no_repeats, config, doc, ids, version, write_docs, Host};
use serde_json::json;
use sluice_sdk::Source;
use sluice_testkit::cosmos::{CosmosEmulator, CosmosOptions};

const LIMIT: Duration = Duration::from_secs(60);

async fn emulator() -> CosmosEmulator {
    CosmosEmulator::with_options(CosmosOptions {
        // Makes the source follow `x-ms-continuation` when listing ranges.
        pkranges_page_size: 3,
        ..CosmosOptions::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_documents_across_four_ranges_arrive_once_in_order() {
    let emu = emulator().await;
    write_docs(&emu, 0, 5_000);
    let mut host = Host::open(config(&emu, json!({})), HashMap::new())
        .await
        .unwrap();
    // Half written before the start, half while the source runs.
    let mut written = 5_000;
    host.run_until(LIMIT, "10,000 documents", |recs, ids| {
        if written < 10_000 && recs.len() > written / 2 {
            write_docs(&emu, written, 1_000);
            written += 1_000;
        }
        ids.len() == 10_000
    })
    .await;
    assert_eq!(host.drain_for(Duration::from_millis(300)).await, 0);
    let recs = &host.delivered;
    assert_eq!(recs.len(), 10_000, "each document exactly once");
    assert_no_repeats(recs);

    let mut per_stream: HashMap<String, Vec<&sluice_sdk::Record>> = HashMap::new();
    for r in recs {
        per_stream
            .entry(r.origin.stream.to_string())
            .or_default()
            .push(r);
    }
    assert_eq!(per_stream.len(), 4, "four ranges: {:?}", per_stream.keys());
    for (stream, rs) in &per_stream {
        let range = stream
            .strip_prefix("controls/")
            .expect("stream is <container>/<range>");
        let mut last_lsn = 0;
        let mut last_offset = i64::MIN;
        for r in rs {
            let d = doc(r);
            // The record is the document as served, system properties and all.
            assert_eq!(r.key.as_deref(), Some(d["id"].as_str().unwrap().as_bytes()));
            assert!(d["_rid"].is_string() && d["_ts"].is_i64());
            assert_eq!(emu.range_of(&d["pk"]), range, "document in the wrong range");
            assert_eq!(r.origin.partition, range.parse::<i32>().unwrap());
            assert_eq!(r.timestamp, Some(d["_ts"].as_i64().unwrap() * 1000));
            let lsn = d["_lsn"].as_i64().unwrap();
            assert!(lsn > last_lsn, "out of order within range {range}");
            assert!(r.origin.offset > last_offset);
            assert_eq!(r.origin.offset, lsn, "offset is the document's _lsn");
            last_lsn = lsn;
            last_offset = r.origin.offset;
        }
    }
    // The ranges were listed page by page.
    let pk_lists = emu
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/pkranges") && r.status == 200)
        .filter(|r| r.header("x-ms-continuation").is_some())
        .count();
    assert!(pk_lists >= 1, "pkranges continuation was not followed");
    // Every change-feed request carried the protocol headers.
    for r in emu.requests().iter().filter(|r| r.path.ends_with("/docs")) {
        assert_eq!(r.header("a-im"), Some("Incremental feed"));
        assert!(r.header("x-ms-documentdb-partitionkeyrangeid").is_some());
        assert_eq!(r.header("x-ms-max-item-count"), Some("100"));
        assert!(r.header("x-ms-version").is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_exactly_and_picks_up_writes_made_while_down() {
    let emu = emulator().await;
    write_docs(&emu, 0, 1_000);
    // A transaction of 12 documents in one range, which small polls cut in the middle.
    let txn: Vec<_> = (0..12)
        .map(|i| json!({"id": format!("txn-{i:02}"), "pk": "tenant-txn", "n": i}))
        .collect();
    emu.upsert_batch(txn);
    write_docs(&emu, 1_000, 500);

    let mut host = Host::open(
        config(&emu, json!({"max_items_per_page": 50})),
        HashMap::new(),
    )
    .await
    .unwrap();
    // Small polls: commits land in the middle of pages and of the transaction.
    let t = std::time::Instant::now();
    // 703: not a multiple of the page size, so the last commit is inside a page. Readers
    // answer at their own pace (a loaded machine can hold one back), so also wait until
    // every range has delivered something and has a position to save.
    let ranges = |recs: &[sluice_sdk::Record]| {
        recs.iter()
            .map(|r| r.origin.partition)
            .collect::<HashSet<_>>()
            .len()
    };
    while host.delivered.len() < 703 || ranges(&host.delivered) < 4 {
        assert!(t.elapsed() < LIMIT);
        host.step(7).await.unwrap();
    }
    let (store, first) = host.close().await;
    assert_eq!(store.len(), 4, "a checkpoint per range: {store:?}");
    assert!(
        store.values().any(|p| p.contains("\"lsn\"")),
        "some checkpoint is inside a page: {store:?}"
    );
    assert_no_repeats(&first);

    // While down: new documents, and updates of documents already delivered (they moved to
    // a later LSN, which shifts the pages the checkpoints point into).
    write_docs(&emu, 2_000, 300);
    let updated: Vec<String> = first
        .iter()
        .map(|r| version(r).0)
        .filter(|id| id.starts_with("doc-"))
        .step_by(50)
        .collect();
    for id in &updated {
        let n: usize = id.trim_start_matches("doc-").parse().unwrap();
        emu.upsert(json!({"id": id, "pk": format!("tenant-{}", n % 101), "n": n, "v": 2}));
    }

    let mut host = Host::open(config(&emu, json!({"max_items_per_page": 50})), store)
        .await
        .unwrap();
    let expected = emu.document_count();
    let first_ids = ids(&first);
    host.run_until(LIMIT, "the rest", |recs, ids| {
        first_ids.union(ids).count() == expected
            && recs.iter().filter(|r| doc(r)["v"] == 2).count() == updated.len()
    })
    .await;
    assert_eq!(host.drain_for(Duration::from_millis(300)).await, 0);
    let second = host.delivered.clone();
    let mut all = first.clone();
    all.extend(second.iter().cloned());
    assert_no_repeats(&all);
    for r in &second {
        let d = doc(r);
        let was_delivered = first_ids.contains(d["id"].as_str().unwrap());
        assert!(
            !was_delivered || d["v"] == 2,
            "delivered again after restart: {}",
            d["id"]
        );
    }
    assert!(ids(&second).contains("doc-02299"), "written while down");
    assert_eq!(ids(&all).len(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_in_the_middle_loses_and_repeats_nothing() {
    let emu = emulator().await;
    write_docs(&emu, 0, 3_000);
    let mut host = Host::open(config(&emu, json!({})), HashMap::new())
        .await
        .unwrap();
    host.run_until(LIMIT, "a first part", |r, _| r.len() >= 1_000)
        .await;
    let [a, b] = emu.split("0");
    let [c, d] = emu.split("2");
    write_docs(&emu, 3_000, 2_000);
    host.run_until(LIMIT, "every document", |_, ids| ids.len() == 5_000)
        .await;
    assert_eq!(host.drain_for(Duration::from_millis(300)).await, 0);
    assert_eq!(host.delivered.len(), 5_000);
    assert_no_repeats(&host.delivered);
    let streams: HashSet<String> = host
        .delivered
        .iter()
        .map(|r| r.origin.stream.to_string())
        .collect();
    for child in [&a, &b, &c, &d] {
        assert!(
            streams.contains(&format!("controls/{child}")),
            "{streams:?}"
        );
    }
    // The old ids answered 410/1002.
    assert!(emu.requests().iter().any(|r| r.status == 410));

    // A restart after the split resumes every child from its own checkpoint.
    let (store, before) = host.close().await;
    for child in [&a, &b, &c, &d] {
        let partition: i32 = child.parse().unwrap();
        assert!(store[&partition].contains("\"parents\":["), "{store:?}");
    }
    write_docs(&emu, 5_000, 400);
    let mut host = Host::open(config(&emu, json!({})), store).await.unwrap();
    host.run_until(LIMIT, "documents written after the split", |r, _| {
        r.len() >= 400
    })
    .await;
    assert_eq!(host.drain_for(Duration::from_millis(300)).await, 0);
    assert_eq!(host.delivered.len(), 400);
    let mut all = before;
    all.extend(host.delivered.iter().cloned());
    assert_no_repeats(&all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_after_a_split_without_child_checkpoints_resumes_from_the_parent() {
    let emu = emulator().await;
    write_docs(&emu, 0, 800);
    let mut host = Host::open(config(&emu, json!({})), HashMap::new())
        .await
        .unwrap();
    host.run_until(LIMIT, "all", |r, _| r.len() == 800).await;
    let (store, first) = host.close().await;
    // Split while down: the children have no checkpoint of their own.
    let children = emu.split("1");
    let [grand_a, _] = emu.split(&children[0]);
    write_docs(&emu, 800, 400);
    let mut host = Host::open(config(&emu, json!({})), store).await.unwrap();
    host.run_until(LIMIT, "the new documents", |r, _| r.len() >= 400)
        .await;
    assert_eq!(host.drain_for(Duration::from_millis(300)).await, 0);
    let mut all = first;
    all.extend(host.delivered.iter().cloned());
    assert_no_repeats(&all);
    assert_eq!(ids(&all).len(), 1_200);
    assert!(host
        .delivered
        .iter()
        .any(|r| *r.origin.stream == *format!("controls/{grand_a}")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_checkpoint_waits_until_its_parent_is_committed() {
    let emu = CosmosEmulator::with_options(CosmosOptions {
        ranges: 1,
        ..CosmosOptions::default()
    })
    .await;
    write_docs(&emu, 0, 50);
    let mut host = Host::open(config(&emu, json!({})), HashMap::new())
        .await
        .unwrap();
    host.auto_commit = false;
    host.run_until(LIMIT, "the parent's documents", |r, _| r.len() == 50)
        .await;
    let [a, b] = emu.split("0");
    write_docs(&emu, 50, 50);
    host.run_until(LIMIT, "the children's documents", |r, _| r.len() == 100)
        .await;
    // The sink finished the children's records first: their positions must wait, or a
    // crash now would resume them past parent records that are not done.
    let a_part: i32 = a.parse().unwrap();
    let b_part: i32 = b.parse().unwrap();
    host.commit_partition(a_part).await;
    host.commit_partition(b_part).await;
    assert!(host.store.is_empty(), "saved too early: {:?}", host.store);
    // Whatever commit comes next, the parent's is what unblocks them.
    host.commit_partition(0).await;
    let mut keys: Vec<_> = host.store.keys().copied().collect();
    keys.sort();
    assert_eq!(keys, [0, a_part, b_part]);
    // And a restart from there delivers nothing again.
    let (store, first) = host.close().await;
    let mut host = Host::open(config(&emu, json!({})), store).await.unwrap();
    assert_eq!(host.drain_for(Duration::from_millis(400)).await, 0);
    write_docs(&emu, 100, 10);
    host.run_until(LIMIT, "new", |r, _| r.len() == 10).await;
    let mut all = first;
    all.extend(host.delivered.iter().cloned());
    assert_no_repeats(&all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_transient_errors_delay_but_lose_nothing() {
    let emu = emulator().await;
    write_docs(&emu, 0, 600);
    emu.throttle(5, 30);
    emu.fail_next(2, 503, 0);
    emu.fail_next(1, 410, 1007);
    emu.fail_next(1, 449, 0);
    let mut host = Host::open(config(&emu, json!({})), HashMap::new())
        .await
        .unwrap();
    host.run_until(LIMIT, "all", |_, ids| ids.len() == 600)
        .await;
    assert_eq!(host.delivered.len(), 600);
    assert_no_repeats(&host.delivered);
    let statuses: Vec<u16> = emu.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 5);
    assert_eq!(statuses.iter().filter(|s| **s == 503).count(), 2);
    // The pipeline is healthy again once requests succeed.
    assert_eq!(host.health.problem(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_from_now_saves_the_first_etag_at_once() {
    let emu = emulator().await;
    write_docs(&emu, 0, 200);
    let mut host = Host::open(config(&emu, json!({"start_from": "now"})), HashMap::new())
        .await
        .unwrap();
    assert_eq!(host.drain_for(Duration::from_millis(300)).await, 0);
    // Nothing was delivered, yet every range has a position to save.
    host.commit(&[]).await;
    assert_eq!(host.store.len(), 4, "{:?}", host.store);
    assert!(host.store.values().all(|p| p.contains("\"etag\"")));
    let (store, _) = host.close().await;
    write_docs(&emu, 200, 60);
    let mut host = Host::open(config(&emu, json!({"start_from": "now"})), store)
        .await
        .unwrap();
    host.run_until(LIMIT, "the 60 written while down", |r, _| r.len() >= 60)
        .await;
    assert_eq!(host.drain_for(Duration::from_millis(200)).await, 0);
    let got = ids(&host.delivered);
    assert_eq!(got.len(), 60);
    assert!(got.iter().all(|id| id.as_str() >= "doc-00200"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_from_a_time_skips_older_changes() {
    let emu = emulator().await;
    emu.set_clock_skew(-7200);
    write_docs(&emu, 0, 100);
    emu.set_clock_skew(0);
    write_docs(&emu, 100, 100);
    let start = SystemTime::now() - Duration::from_secs(3600);
    let start = chrono::DateTime::<chrono::Utc>::from(start).to_rfc3339();
    let mut host = Host::open(config(&emu, json!({"start_from": start})), HashMap::new())
        .await
        .unwrap();
    host.run_until(LIMIT, "recent documents", |r, _| r.len() >= 100)
        .await;
    assert_eq!(host.drain_for(Duration::from_millis(200)).await, 0);
    assert!(ids(&host.delivered)
        .iter()
        .all(|id| id.as_str() >= "doc-00100"));
    assert!(emu
        .requests()
        .iter()
        .any(|r| r.header("if-modified-since").is_some()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_versions_mode_delivers_every_change_and_deletes() {
    let emu = emulator().await;
    emu.upsert(json!({"id": "old", "pk": "a"}));
    let mut host = Host::open(
        config(
            &emu,
            json!({"start_from": "now", "mode": "all_versions_and_deletes"}),
        ),
        HashMap::new(),
    )
    .await
    .unwrap();
    host.drain_for(Duration::from_millis(200)).await;
    emu.upsert(json!({"id": "r1", "pk": "a", "status": "open"}));
    emu.upsert(json!({"id": "r1", "pk": "a", "status": "mitigated"}));
    emu.delete("r1", json!("a")).unwrap();
    host.run_until(LIMIT, "three changes", |r, _| r.len() >= 3)
        .await;
    let ops: Vec<(String, String)> = host
        .delivered
        .iter()
        .map(|r| {
            let d = doc(r);
            (
                String::from_utf8(r.key.clone().unwrap().to_vec()).unwrap(),
                d["metadata"]["operationType"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        ops,
        [
            ("r1".to_string(), "create".to_string()),
            ("r1".into(), "replace".into()),
            ("r1".into(), "delete".into())
        ]
    );
    assert_eq!(doc(&host.delivered[1])["current"]["status"], "mitigated");
    assert_eq!(doc(&host.delivered[2])["previous"]["status"], "mitigated");
    assert!(emu
        .requests()
        .iter()
        .any(|r| r.header("a-im") == Some("Full-Fidelity Feed")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_container_is_fatal_with_its_name() {
    let emu = emulator().await;
    let err = Host::open(
        config(&emu, json!({"container": "Controls"})),
        HashMap::new(),
    )
    .await
    .err()
    .expect("open must fail");
    let sluice_sdk::SourceError::Fatal(m) = err else {
        panic!("not fatal: {err:?}")
    };
    assert!(m.contains("not found") && m.contains("container"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_is_signed_afresh_with_a_new_date() {
    let emu = CosmosEmulator::with_options(CosmosOptions {
        ranges: 1,
        ..CosmosOptions::default()
    })
    .await;
    write_docs(&emu, 0, 5);
    // Long enough for the retry to fall in the next second.
    emu.throttle(1, 1_100);
    let mut host = Host::open(config(&emu, json!({})), HashMap::new())
        .await
        .unwrap();
    host.run_until(LIMIT, "the documents", |r, _| r.len() == 5)
        .await;
    let feed: Vec<_> = emu
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/docs"))
        .collect();
    assert_eq!(feed[0].status, 429);
    assert_eq!(feed[1].status, 200);
    let date = |i: usize| feed[i].header("x-ms-date").unwrap().to_string();
    let auth = |i: usize| feed[i].header("authorization").unwrap().to_string();
    assert_ne!(date(0), date(1), "the retry reused the old date");
    assert_ne!(auth(0), auth(1), "the retry reused the old token");
}

/// Polls (committing only if `auto_commit` is on) until the source reports `want` as its
/// lag.
async fn wait_for_lag(host: &mut Host, want: u64) {
    let t = std::time::Instant::now();
    while host.source.lag() != Some(want) {
        assert!(
            t.elapsed() < LIMIT,
            "lag stayed at {:?}, expected {want}",
            host.source.lag()
        );
        host.step(100).await.expect("poll");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_counts_the_changes_not_yet_delivered() {
    // One range: the emulator numbers changes with one LSN sequence, as a real physical
    // partition does, so the estimate is exact here.
    let emu = CosmosEmulator::with_options(CosmosOptions {
        ranges: 1,
        ..CosmosOptions::default()
    })
    .await;
    write_docs(&emu, 0, 300);
    let mut host = Host::open(config(&emu, json!({})), HashMap::new())
        .await
        .unwrap();
    assert_eq!(host.source.lag(), None, "unknown before the first answer");
    host.auto_commit = false;
    host.run_until(LIMIT, "a first page", |r, _| !r.is_empty())
        .await;
    // Read but not delivered: every change is still owed.
    assert_eq!(host.source.lag(), Some(300));
    host.commit_all().await;
    let done = host.delivered.len() as u64;
    assert!(done < 300);
    assert_eq!(host.source.lag(), Some(300 - done));

    host.auto_commit = true;
    host.run_until(LIMIT, "all 300", |r, _| r.len() >= 300)
        .await;
    wait_for_lag(&mut host, 0).await;

    // New writes are owed until delivered, then the lag is back to zero.
    write_docs(&emu, 300, 50);
    host.auto_commit = false;
    // The reader may see the writes part-way; once it has seen them all, with nothing
    // committed since, exactly the 50 are owed.
    wait_for_lag(&mut host, 50).await;
    assert!(host.delivered.len() > 300);
    host.commit_all().await;
    host.auto_commit = true;
    host.run_until(LIMIT, "all 350", |r, _| r.len() >= 350)
        .await;
    wait_for_lag(&mut host, 0).await;
    assert_no_repeats(&host.delivered);
}
