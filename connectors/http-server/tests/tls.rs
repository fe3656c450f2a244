//! HTTPS and mutual TLS with the test PKI.

mod common;

use common::*;
use serde_json::json;
use sluice_sdk::Source;

fn client(identity: bool) -> reqwest::Client {
    let pki = sluice_testkit::http::test_pki();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&pki.ca).unwrap()).unwrap();
    let mut b = reqwest::Client::builder()
        .add_root_certificate(ca)
        .tls_built_in_root_certs(false);
    if identity {
        let mut pem = std::fs::read(&pki.client_cert).unwrap();
        pem.extend(std::fs::read(&pki.client_key).unwrap());
        b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    b.build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_and_mutual_tls() {
    let pki = sluice_testkit::http::test_pki();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(json!({"tls": {"cert_file": pki.server_cert, "key_file": pki.server_key}}));
    let mut run = open(dir.path(), cfg, None).await;
    let (s, _, _) = post_with(
        &client(false),
        &run.url,
        "/events",
        Some(TOKEN_A),
        "{\"a\":1}",
        &[],
    )
    .await;
    assert_eq!(s, 200);
    // Plain HTTP on the TLS port gets no answer.
    let plain = run.url.replace("https://", "http://");
    assert!(reqwest::Client::new()
        .post(format!("{plain}/events"))
        .body("{}")
        .send()
        .await
        .is_err());
    assert_eq!(
        values(&poll_n(&mut run.source, 1).await),
        vec![json!({"tenantId": "tenant-a", "a": 1})]
    );
    run.source.close().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        json!({"tls": {"cert_file": pki.server_cert, "key_file": pki.server_key,
                                    "client_ca_file": pki.ca}}),
    );
    let mut run = open(dir.path(), cfg, None).await;
    // Without a client certificate the handshake fails.
    let no_cert = client(false)
        .post(format!("{}/events", run.url))
        .bearer_auth(TOKEN_A)
        .body("{}")
        .send()
        .await;
    assert!(no_cert.is_err());
    let (s, _, _) = post_with(
        &client(true),
        &run.url,
        "/events",
        Some(TOKEN_B),
        "{\"b\":2}",
        &[],
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        values(&poll_n(&mut run.source, 1).await),
        vec![json!({"tenantId": "tenant-b", "b": 2})]
    );
    run.source.close().await.unwrap();
}
