use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use parking_lot::Mutex;
use sluice_sdk::{
    views, BuildContext, Header, Health, Origin, Outcome, Record, Registry, Sink, SinkContext,
    SinkError,
};
use sluice_testkit::http::{serve, TestServer};

use crate::signature::sign;

const SECRET: &str = "s3cret-for-tests";

/// Status, extra headers and body the receiver answers with instead of 200.
type Answer = (u16, Vec<(&'static str, &'static str)>, &'static str);

/// A webhook receiver that checks the signature (401 when wrong) and otherwise answers with
/// the scripted status and headers.
#[derive(Clone, Default)]
struct Receiver {
    bodies: Arc<Mutex<Vec<Bytes>>>,
    answer: Arc<Mutex<Option<Answer>>>,
}

async fn receiver(recv: Receiver) -> TestServer {
    let r = recv.clone();
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: Bytes| {
            let r = r.clone();
            async move {
                let sig = headers
                    .get("x-sluice-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                if sig != sign(SECRET.as_bytes(), &body) {
                    return (StatusCode::UNAUTHORIZED, HeaderMap::new(), "bad signature");
                }
                if headers.get("content-type").and_then(|v| v.to_str().ok())
                    != Some("application/json")
                {
                    return (
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        HeaderMap::new(),
                        "json only",
                    );
                }
                if let Some((code, extra, text)) = r.answer.lock().clone() {
                    let mut h = HeaderMap::new();
                    for (k, v) in extra {
                        h.insert(k, v.parse().unwrap());
                    }
                    return (StatusCode::from_u16(code).unwrap(), h, text);
                }
                r.bodies.lock().push(body);
                (StatusCode::OK, HeaderMap::new(), "ok")
            }
        }),
    );
    serve(app).await
}

async fn sink(url: String, secret: &str) -> (Box<dyn Sink>, Health) {
    let mut registry = Registry::new();
    crate::register(&mut registry);
    let mut sink = registry
        .build_sink(
            "webhook",
            serde_json::json!({ "url": url, "secret": secret, "timeout": "2s",
                                "headers": { "X-Tenant": "acme" } }),
            &BuildContext {
                pipeline: "t".into(),
                data_dir: ".".into(),
            },
        )
        .unwrap();
    let health = Health::new();
    sink.open(SinkContext {
        pipeline: "t".into(),
        health: health.clone(),
    })
    .await
    .unwrap();
    (sink, health)
}

fn records(n: i64) -> Vec<Record> {
    (0..n)
        .map(|i| {
            let mut r = Record::new(
                format!("{{\"event\":\"login\",\"n\":{i}}}").into_bytes(),
                Origin::new(Arc::from("audit"), 0, 100 + i),
            );
            r.key = Some(format!("user-{i}").into_bytes().into());
            r.timestamp = Some(1_700_000_000_000 + i);
            r
        })
        .collect()
}

#[tokio::test]
async fn posts_each_batch_as_one_signed_json_array() {
    let recv = Receiver::default();
    let server = receiver(recv.clone()).await;
    let (sink, health) = sink(format!("{}/hook", server.url()), SECRET).await;

    let mut batch = records(3);
    batch[1].value = Bytes::from_static(b"plain text, not JSON");
    batch[2].value = Bytes::from_static(&[0xff, 0x01]);
    batch[2].headers = vec![
        Header::new("trace", "abc"),
        Header {
            key: "flag".into(),
            value: None,
        },
    ];
    let outcomes = sink.send(&views(&batch)).await.unwrap();
    assert_eq!(outcomes, vec![Outcome::Delivered; 3]);
    assert_eq!(sink.send(&views(&records(2))).await.unwrap().len(), 2);
    assert_eq!(health.problem(), None);

    let bodies = recv.bodies.lock().clone();
    assert_eq!(bodies.len(), 2, "one request per batch");
    let first: serde_json::Value = serde_json::from_slice(&bodies[0]).unwrap();
    assert_eq!(
        first[0],
        serde_json::json!({"key": "user-0", "value": {"event": "login", "n": 0}, "headers": [],
            "timestamp": 1_700_000_000_000i64,
            "origin": {"stream": "audit", "partition": 0, "offset": 100}})
    );
    assert_eq!(first[1]["value"], "plain text, not JSON");
    assert_eq!(first[2]["value_base64"], "/wE=");
    assert_eq!(
        first[2]["headers"],
        serde_json::json!([["trace", "abc"], ["flag", null]])
    );
}

#[tokio::test]
async fn a_wrong_secret_is_unauthorized_and_marks_the_sink_unhealthy() {
    let server = receiver(Receiver::default()).await;
    let (sink, health) = sink(format!("{}/hook", server.url()), "not-the-secret").await;
    let e = sink.send(&views(&records(1))).await.unwrap_err();
    assert!(
        matches!(e, SinkError::Unauthorized(ref m) if m.contains("401")),
        "{e:?}"
    );
    assert!(health.problem().unwrap().contains("bad signature"));
}

#[tokio::test]
async fn answers_are_classified() {
    let recv = Receiver::default();
    let server = receiver(recv.clone()).await;
    let (sink, health) = sink(format!("{}/hook", server.url()), SECRET).await;
    let set = |code, headers: Vec<(&'static str, &'static str)>, text| {
        *recv.answer.lock() = Some((code, headers, text));
    };

    set(503, vec![("retry-after", "7")], "maintenance");
    match sink.send(&views(&records(2))).await.unwrap_err() {
        SinkError::Unavailable {
            message,
            retry_after,
        } => {
            assert_eq!(retry_after, Some(Duration::from_secs(7)));
            assert!(
                message.contains("503") && message.contains("maintenance"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(health.problem().unwrap().contains("503"));

    set(429, vec![], "slow down");
    assert!(matches!(
        sink.send(&views(&records(1))).await,
        Err(SinkError::Unavailable {
            retry_after: None,
            ..
        })
    ));

    set(413, vec![], "too big");
    assert!(matches!(
        sink.send(&views(&records(2))).await,
        Err(SinkError::TooLarge(_))
    ));

    set(400, vec![], "field `event` is not allowed");
    let outcomes = sink.send(&views(&records(2))).await.unwrap();
    assert_eq!(
        outcomes,
        vec![
            Outcome::reject(
                "webhook.http.status=400",
                "400 Bad Request: field `event` is not allowed"
            );
            2
        ]
    );

    set(404, vec![], "");
    assert!(
        matches!(sink.send(&views(&records(1))).await, Err(SinkError::Fatal(ref m)) if m.contains("check `url`"))
    );

    *recv.answer.lock() = None;
    sink.send(&views(&records(1))).await.unwrap();
    assert_eq!(health.problem(), None, "healthy again after a success");
}

#[tokio::test]
async fn an_unreachable_receiver_is_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    drop(listener);
    let (sink, _) = sink(url, SECRET).await;
    assert!(matches!(
        sink.send(&views(&records(1))).await,
        Err(SinkError::Unavailable { .. })
    ));
}

#[test]
fn bad_configurations_name_the_key() {
    let mut registry = Registry::new();
    crate::register(&mut registry);
    let ctx = BuildContext {
        pipeline: "t".into(),
        data_dir: ".".into(),
    };
    let build = |cfg: serde_json::Value| {
        registry
            .build_sink("webhook", cfg, &ctx)
            .err()
            .unwrap()
            .to_string()
    };
    assert!(
        build(serde_json::json!({"url": "not a url", "secret": "x"})).contains("not a valid URL")
    );
    let e = build(serde_json::json!({"url": "https://u:hunter2@h/x", "secret": "x"}));
    assert!(
        e.contains("credentials in the URL") && !e.contains("hunter2"),
        "{e}"
    );
    assert!(build(serde_json::json!({"url": "ftp://h/x", "secret": "x"})).contains("http"));
    assert!(build(serde_json::json!({"url": "http://h/x", "secret": ""})).contains("empty"));
    assert!(
        build(serde_json::json!({"url": "http://h/x", "secret": "x", "secert": 1}))
            .contains("unknown field")
    );
}

#[test]
fn signature_is_the_hex_hmac_sha256_of_the_body() {
    // RFC 4231 test case 2.
    assert_eq!(
        sign(b"Jefe", b"what do ya want for nothing?"),
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}
