//! Master-key authorization, end to end: the emulator's verification, and what an operator
//! sees when the key or the clock is wrong.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use common::{config, write_docs, Host};
use serde_json::{json, Value};
use sluice_sdk::{Polled, Source, SourceError};
use sluice_testkit::cosmos::{CosmosEmulator, CosmosOptions};

/// Key, date and resource of the hand-computed request.
const KEY: &str = "c2x1aWNlIHRlc3QgbWFzdGVyIGtleTogMDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWYh";
const DATE: &str = "Tue, 11 Jun 2024 08:12:31 GMT";
/// `base64(HMAC-SHA256(base64decode(KEY), "get\npkranges\ndbs/grc/colls/Controls\ntue, 11 jun
/// 2024 08:12:31 gmt\n\n"))`, URL-encoded, computed outside Rust (`openssl dgst -sha256 -mac
/// HMAC` and Python's hmac agree).
const GOOD: &str =
    "type%3Dmaster%26ver%3D1.0%26sig%3DD8eaj6ewnnusAnjoGCBpfhG3EZEDO%2BOuBmDFN6q0oL4%3D";
/// The same with one character of the signature changed (`D8ea` -> `D9ea`).
const BAD: &str =
    "type%3Dmaster%26ver%3D1.0%26sig%3DD9eaj6ewnnusAnjoGCBpfhG3EZEDO%2BOuBmDFN6q0oL4%3D";

async fn get_pkranges(emu: &CosmosEmulator, auth: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .get(format!("{}dbs/grc/colls/Controls/pkranges", emu.endpoint()))
        .header("authorization", auth)
        .header("x-ms-date", DATE)
        .header("x-ms-version", "2018-12-31")
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

#[tokio::test]
async fn a_hand_signed_request_is_accepted_and_a_one_character_change_is_not() {
    let emu = CosmosEmulator::with_options(CosmosOptions {
        container: "Controls".into(),
        key: KEY.into(),
        ..CosmosOptions::default()
    })
    .await;
    // The token is only valid within 15 minutes of its date: put the server there.
    emu.set_time(SystemTime::UNIX_EPOCH + Duration::from_secs(1_718_093_551 + 120));

    let (status, body) = get_pkranges(&emu, GOOD).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["PartitionKeyRanges"].as_array().unwrap().len(), 4);

    let (status, body) = get_pkranges(&emu, BAD).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["code"], "Unauthorized");
    let msg = body["message"].as_str().unwrap();
    assert!(
        msg.contains("'get\npkranges\ndbs/grc/colls/Controls\ntue, 11 jun 2024 08:12:31 gmt\n\n'"),
        "the 401 shows the payload the server signed: {msg}"
    );

    // The right signature at the wrong time: 403, not 401.
    emu.set_clock_skew(0);
    let (status, body) = get_pkranges(&emu, GOOD).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("not valid at the current time"));
}

#[tokio::test]
async fn a_wrong_key_is_a_clear_authorization_error_and_saves_nothing() {
    let emu = CosmosEmulator::start().await;
    write_docs(&emu, 0, 20);
    let mut cfg = config(&emu, json!({}));
    cfg.key = sluice_sdk::config::Secret::new(KEY);
    let mut source = sluice_cosmos::CosmosSource::new(cfg).unwrap();
    let health = sluice_sdk::Health::new();
    let err = source
        .open(sluice_sdk::SourceContext {
            pipeline: "t".into(),
            checkpoints: HashMap::new(),
            health: health.clone(),
        })
        .await
        .expect_err("a wrong key must not open");
    let SourceError::Unauthorized(msg) = &err else {
        panic!("not an authorization error: {err:?}");
    };
    assert!(msg.contains("401") && msg.contains("master key"), "{msg}");
    assert!(
        !msg.contains("clock"),
        "a bad key is not a clock problem: {msg}"
    );
    assert!(!msg.contains(KEY), "the key leaked into the message");
    assert_eq!(health.problem().as_deref(), Some(msg.as_str()));
    let cps = source.commit(&[]).await.unwrap();
    assert!(cps.is_empty(), "{cps:?}");
    // Every request the emulator saw was refused.
    assert!(emu.requests().iter().all(|r| r.status == 401));
}

#[tokio::test]
async fn clock_skew_is_reported_as_such_and_reading_resumes_once_fixed() {
    let emu = CosmosEmulator::start().await;
    write_docs(&emu, 0, 30);
    emu.set_clock_skew(20 * 60);
    let err = Host::open(config(&emu, json!({})), HashMap::new())
        .await
        .err()
        .expect("stale tokens must not open");
    let SourceError::Unauthorized(msg) = &err else {
        panic!("{err:?}")
    };
    assert!(msg.contains("403") && msg.contains("clock"), "{msg}");

    // Opened fine, then the clocks drift apart: poll reports it, readers keep trying with
    // freshly signed requests, and reading resumes once the clocks agree again.
    emu.set_clock_skew(0);
    let mut host = Host::open(config(&emu, json!({})), HashMap::new())
        .await
        .unwrap();
    host.run_until(Duration::from_secs(20), "the first documents", |r, _| {
        r.len() == 30
    })
    .await;
    emu.set_clock_skew(-20 * 60);
    let t = Instant::now();
    let msg = loop {
        assert!(t.elapsed() < Duration::from_secs(10), "no error surfaced");
        match host.source.poll(10).await {
            Err(SourceError::Unauthorized(m)) => break m,
            Ok(Polled::Idle) => {}
            other => panic!("{other:?}"),
        }
    };
    assert!(msg.contains("clock"), "{msg}");
    assert!(host.health.problem().unwrap().contains("clock"));
    emu.set_clock_skew(0);
    write_docs(&emu, 30, 5);
    let t = Instant::now();
    while host.delivered.len() < 35 || host.health.problem().is_some() {
        assert!(t.elapsed() < Duration::from_secs(20), "did not recover");
        let _ = host.step(10).await;
    }
    assert_eq!(host.health.problem(), None);
}
