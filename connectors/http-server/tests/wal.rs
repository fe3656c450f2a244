//! The write-ahead log across restarts: resume, torn tails, corruption.

mod common;

use common::*;
use serde_json::json;
use sluice_sdk::Source;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_at_the_committed_position() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(json!({"segment_bytes": 256}));
    let mut run = open(dir.path(), cfg.clone(), None).await;
    for i in 0..10 {
        let (s, _, _) = post(
            &run.url,
            "/events",
            Some(TOKEN_A),
            json!({"i": i, "pad": "p".repeat(100)}).to_string(),
        )
        .await;
        assert_eq!(s, 200);
    }
    let recs = poll_n(&mut run.source, 10).await;
    let cps = run.source.commit(&[recs[5].origin.clone()]).await.unwrap();
    assert_eq!(cps[0].position, recs[6].origin.offset.to_string());
    run.source.close().await.unwrap();
    // Segments wholly before the committed position were deleted, the rest kept.
    let committed: u64 = cps[0].position.parse().unwrap();
    let segs = segments(dir.path());
    assert!(segs.len() > 1, "{segs:?}");
    let base = |p: &std::path::PathBuf| -> u64 {
        p.file_stem().unwrap().to_str().unwrap().parse().unwrap()
    };
    assert!(base(&segs[0]) > 0, "{segs:?}");
    assert!(
        base(&segs[0]) <= committed && base(&segs[1]) > committed,
        "{segs:?} {committed}"
    );

    let mut again = open(dir.path(), cfg, Some(&cps[0].position)).await;
    let got = values(&poll_n(&mut again.source, 10).await);
    let is: Vec<i64> = got.iter().map(|v| v["i"].as_i64().unwrap()).collect();
    assert_eq!(is, vec![6, 7, 8, 9]);
    again.source.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_tail_is_cut_and_the_log_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(json!({}));
    let mut run = open(dir.path(), cfg.clone(), None).await;
    for i in 0..3 {
        post(
            &run.url,
            "/events",
            Some(TOKEN_A),
            json!({"i": i}).to_string(),
        )
        .await;
    }
    run.source.close().await.unwrap();
    // An interrupted write: a header and part of a payload.
    let seg = segments(dir.path()).pop().unwrap();
    let whole = std::fs::metadata(&seg).unwrap().len();
    let mut torn = Vec::new();
    sluice_http_server::wal::segment::encode(&mut torn, 1, b"{\"i\":99,\"never\":\"answered\"}");
    torn.truncate(20);
    let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    std::io::Write::write_all(&mut f, &torn).unwrap();
    drop(f);

    let mut again = open(dir.path(), cfg, None).await;
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), whole);
    let (s, _, _) = post(
        &again.url,
        "/events",
        Some(TOKEN_A),
        json!({"i": 3}).to_string(),
    )
    .await;
    assert_eq!(s, 200);
    let got = values(&poll_n(&mut again.source, 4).await);
    let is: Vec<i64> = got.iter().map(|v| v["i"].as_i64().unwrap()).collect();
    assert_eq!(is, vec![0, 1, 2, 3]);
    again.source.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_entry_followed_by_valid_ones_stops_with_the_segment_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(json!({}));
    let mut run = open(dir.path(), cfg.clone(), None).await;
    for i in 0..3 {
        post(
            &run.url,
            "/events",
            Some(TOKEN_A),
            json!({"i": i}).to_string(),
        )
        .await;
    }
    let recs = poll_n(&mut run.source, 3).await;
    run.source.close().await.unwrap();
    let second = recs[1].origin.offset as u64;
    let seg = segments(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[second as usize + 20] ^= 0x20;
    std::fs::write(&seg, &bytes).unwrap();

    let err = match try_open(dir.path(), cfg.clone(), None).await {
        Ok(_) => panic!("a corrupt log must not open"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains(&seg.display().to_string()), "{err}");
    assert!(err.contains(&format!("at byte {second}")), "{err}");
    assert!(err.contains("checksum mismatch"), "{err}");

    // Past the committed position only: entries already delivered are not checked again.
    let third = recs[2].origin.offset.to_string();
    let mut after = open(dir.path(), cfg, Some(&third)).await;
    let got = values(&poll_n(&mut after.source, 1).await);
    assert_eq!(got, vec![json!({"tenantId": "tenant-a", "i": 2})]);
    after.source.close().await.unwrap();
}
