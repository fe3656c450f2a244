//! Posting events: framings, answers, limits, tenants, schema, backpressure.

mod common;

use std::io::Write;

use common::*;
use serde_json::{json, Value};
use sluice_sdk::Source;

fn event(i: usize) -> Value {
    json!({"tenantId": "tenant-a", "eventType": "control.evaluated", "source": "archer",
           "action": "update", "entityId": format!("e-{i}"), "entityType": "control",
           "data": {"n": i}, "metadata": {}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_bulk_array_ndjson_and_gzip_bodies_are_kept_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = open(dir.path(), config(json!({})), None).await;
    let url = run.url.clone();

    let (s, _, b) = post(&url, "/events", Some(TOKEN_A), event(0).to_string()).await;
    assert_eq!((s, b), (200, json!({"status": 200, "result": "accepted"})));

    let bulk = json!({"events": [event(1), event(2)]}).to_string();
    let (s, _, b) = post(&url, "/events/bulk", Some(TOKEN_A), bulk).await;
    assert_eq!(s, 200);
    assert_eq!(b["errors"], false);
    assert_eq!(
        b["items"],
        json!([{"status":200,"result":"accepted"},{"status":200,"result":"accepted"}])
    );

    let array = json!([event(3), event(4)]).to_string();
    let (s, _, b) = post(&url, "/events", Some(TOKEN_A), array).await;
    assert_eq!((s, b["accepted"].clone()), (200, json!(2)));

    let ndjson = format!("{}\n{}\n", event(5), event(6));
    let (s, _, b) = post(&url, "/events/bulk", Some(TOKEN_A), ndjson).await;
    assert_eq!((s, b["accepted"].clone()), (200, json!(2)));

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(json!({"events": [event(7)]}).to_string().as_bytes())
        .unwrap();
    let (s, _, b) = post_with(
        &reqwest::Client::new(),
        &url,
        "/events/bulk",
        Some(TOKEN_A),
        gz.finish().unwrap(),
        &[("content-encoding", "gzip")],
    )
    .await;
    assert_eq!((s, b["accepted"].clone()), (200, json!(1)), "{b}");

    let records = poll_n(&mut run.source, 8).await;
    let got = values(&records);
    assert_eq!(got, (0..8).map(event).collect::<Vec<_>>());
    // Offsets are log offsets, increasing; each record carries its receive time.
    assert!(records
        .windows(2)
        .all(|w| w[0].origin.offset < w[1].origin.offset));
    assert_eq!(records[0].origin.offset, 0);
    assert!(records.iter().all(|r| r.timestamp.is_some_and(|t| t > 0)));
    run.source.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_tenants_and_limits_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(json!({"max_body_bytes": 2048, "max_events_per_request": 3}));
    let mut run = open(dir.path(), cfg, None).await;
    let url = run.url.clone();
    let one = json!({"eventType": "x"}).to_string();

    for token in [None, Some("nope"), Some("token-of-tenant-a-and-more")] {
        let (s, _, b) = post(&url, "/events", token, one.clone()).await;
        assert_eq!(s, 401, "{token:?}");
        assert_eq!(b["error"]["type"], "unauthorized");
    }
    // Another tenant's event: 403, alone or as one item of a bulk.
    let theirs = json!({"tenantId": "tenant-b", "n": 1}).to_string();
    let (s, _, b) = post(&url, "/events", Some(TOKEN_A), theirs).await;
    assert_eq!((s, b["error"]["type"].clone()), (403, json!("forbidden")));
    let mixed = json!({"events": [{"n": 2}, {"tenantId": "tenant-b", "n": 3}, {"tenantId": "tenant-a", "n": 4}]});
    let (s, _, b) = post(&url, "/events/bulk", Some(TOKEN_A), mixed.to_string()).await;
    assert_eq!(s, 207);
    assert_eq!(b["errors"], true);
    let statuses: Vec<_> = b["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, vec![200, 403, 200]);
    // Too large a body, too many events.
    let big = json!({"pad": "x".repeat(4096)}).to_string();
    let (s, _, b) = post(&url, "/events", Some(TOKEN_A), big).await;
    assert_eq!((s, b["error"]["type"].clone()), (413, json!("too_large")));
    let many = json!([{}, {}, {}, {}]).to_string();
    let (s, _, _) = post(&url, "/events", Some(TOKEN_A), many).await;
    assert_eq!(s, 413);
    // Not JSON.
    let (s, _, _) = post(&url, "/events", Some(TOKEN_A), "{\"a\":").await;
    assert_eq!(s, 400);

    // Only the accepted events reach the pipeline; the one without a tenant was stamped.
    let got = values(&poll_n(&mut run.source, 3).await);
    assert_eq!(
        got,
        vec![
            json!({"tenantId": "tenant-a", "n": 2}),
            json!({"tenantId": "tenant-a", "n": 4}),
        ]
    );
    run.source.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_of_1000_with_3_schema_violations_answers_each_item_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("event.schema.json");
    std::fs::write(
        &schema,
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "required": ["eventType", "entityId"],
            "properties": {"eventType": {"type": "string"}, "data": {"type": "object",
                "properties": {"n": {"type": "integer"}}}}
        })
        .to_string(),
    )
    .unwrap();
    let cfg = config(json!({"schema": schema}));
    let mut run = open(dir.path(), cfg, None).await;
    let mut events: Vec<Value> = (0..1000).map(event).collect();
    events[10]["data"]["n"] = json!("ten");
    events[500].as_object_mut().unwrap().remove("entityId");
    events[999]["eventType"] = json!(5);
    let body = json!({"events": events}).to_string();
    let (s, _, b) = post(&run.url, "/events/bulk", Some(TOKEN_A), body).await;
    assert_eq!(s, 207);
    assert_eq!(
        (b["accepted"].clone(), b["rejected"].clone()),
        (json!(997), json!(3))
    );
    let items = b["items"].as_array().unwrap();
    assert_eq!(items.len(), 1000);
    for (i, item) in items.iter().enumerate() {
        if [10, 500, 999].contains(&i) {
            assert_eq!(item["status"], 400, "{i}");
            assert_eq!(item["error"]["type"], "schema_violation");
        } else {
            assert_eq!(item, &json!({"status": 200, "result": "accepted"}), "{i}");
        }
    }
    assert_eq!(items[10]["error"]["pointer"], "/data/n");
    assert!(items[10]["error"]["reason"]
        .as_str()
        .unwrap()
        .contains("integer"));
    assert_eq!(items[500]["error"]["pointer"], "");
    assert!(items[500]["error"]["reason"]
        .as_str()
        .unwrap()
        .contains("entityId"));
    assert_eq!(items[999]["error"]["pointer"], "/eventType");

    // A single invalid event is a 400 with the pointer.
    let mut bad = event(1);
    bad["data"]["n"] = json!(1.5);
    let (s, _, b) = post(&run.url, "/events", Some(TOKEN_A), bad.to_string()).await;
    assert_eq!(s, 400);
    assert_eq!(b["error"]["pointer"], "/data/n");

    let got = values(&poll_n(&mut run.source, 1000).await);
    assert_eq!(got.len(), 997);
    assert_eq!(got[10], events[11]);
    run.source.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn above_the_high_water_mark_requests_get_503_until_the_pipeline_commits() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        json!({"high_water_bytes": 2000, "max_bytes": "1MiB", "segment_bytes": 4096, "retry_after": "2s"}),
    );
    let mut run = open(dir.path(), cfg, None).await;
    let one = json!({"pad": "y".repeat(200)}).to_string();
    let mut accepted = 0;
    let mut refused = None;
    for _ in 0..100 {
        let (s, ra, b) = post(&run.url, "/events", Some(TOKEN_A), one.clone()).await;
        if s == 503 {
            refused = Some((ra, b));
            break;
        }
        assert_eq!(s, 200);
        accepted += 1;
    }
    let (ra, b) = refused.expect("a 503 once the pipeline is behind");
    assert_eq!(ra.as_deref(), Some("2"));
    assert_eq!(b["error"]["type"], "unavailable");
    assert!((8..=11).contains(&accepted), "{accepted}");

    // Delivered and committed: the log takes events again.
    let recs = poll_n(&mut run.source, accepted).await;
    assert_eq!(recs.len(), accepted);
    let cps = run
        .source
        .commit(&[recs.last().unwrap().origin.clone()])
        .await
        .unwrap();
    let (s, _, _) = post(&run.url, "/events", Some(TOKEN_A), one.clone()).await;
    assert_eq!(s, 200);
    // Segments wholly before the committed position are gone.
    let committed: u64 = cps[0].position.parse().unwrap();
    for seg in segments(dir.path()) {
        let base: u64 = seg.file_stem().unwrap().to_str().unwrap().parse().unwrap();
        let len = std::fs::metadata(&seg).unwrap().len();
        assert!(
            base + len > committed || len == 0,
            "{seg:?} should be deleted"
        );
    }
    run.source.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_over_its_rate_gets_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(json!({"rate_limit": {"events_per_second": 1, "burst": 5}}));
    let mut run = open(dir.path(), cfg, None).await;
    let five = json!([{}, {}, {}, {}, {}]).to_string();
    let (s, _, _) = post(&run.url, "/events", Some(TOKEN_A), five.clone()).await;
    assert_eq!(s, 200);
    let (s, ra, b) = post(&run.url, "/events", Some(TOKEN_A), "{}").await;
    assert_eq!(
        (s, b["error"]["type"].clone()),
        (429, json!("rate_limited"))
    );
    assert_eq!(ra.as_deref(), Some("1"));
    // Another tenant has its own budget.
    let (s, _, _) = post(&run.url, "/events", Some(TOKEN_B), five).await;
    assert_eq!(s, 200);
    assert_eq!(poll_n(&mut run.source, 10).await.len(), 10);
    run.source.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_fsync_answers_after_the_next_tick() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(json!({"fsync": {"interval": "10ms"}}));
    let mut run = open(dir.path(), cfg, None).await;
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let (c, url) = (client.clone(), run.url.clone());
        tasks.push(tokio::spawn(async move {
            post_with(
                &c,
                &url,
                "/events",
                Some(TOKEN_B),
                json!({"i": i}).to_string(),
                &[],
            )
            .await
            .0
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let got = values(&poll_n(&mut run.source, 50).await);
    let mut is: Vec<i64> = got.iter().map(|v| v["i"].as_i64().unwrap()).collect();
    is.sort();
    assert_eq!(is, (0..50).collect::<Vec<_>>());
    assert!(got.iter().all(|v| v["tenantId"] == "tenant-b"));
    run.source.close().await.unwrap();
}
