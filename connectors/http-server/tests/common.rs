//! Opens an `http_server` source in a scratch data directory and talks to it.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;

use serde_json::{json, Value};
use sluice_http_server::HttpServerSource;
use sluice_sdk::{Polled, Record, Source, SourceContext};

pub const TOKEN_A: &str = "token-of-tenant-a";
pub const TOKEN_B: &str = "token-of-tenant-b";

/// A source config with two tenants and `extra` merged in.
pub fn config(extra: Value) -> Value {
    let mut c = json!({
        "listen": "127.0.0.1:0",
        "auth": { "tokens": { "tenant-a": TOKEN_A, "tenant-b": TOKEN_B } },
    });
    if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            c.insert(k.clone(), v.clone());
        }
    }
    c
}

pub struct Running {
    pub source: HttpServerSource,
    pub url: String,
}

pub async fn open(data_dir: &Path, cfg: Value, checkpoint: Option<&str>) -> Running {
    try_open(data_dir, cfg, checkpoint)
        .await
        .expect("source opens")
}

pub async fn try_open(
    data_dir: &Path,
    cfg: Value,
    checkpoint: Option<&str>,
) -> Result<Running, sluice_sdk::SourceError> {
    let tls = cfg.get("tls").is_some();
    let cfg = sluice_sdk::config::from_value(cfg).expect("valid config");
    let mut source = HttpServerSource::new(cfg, data_dir, "ingest").expect("config accepted");
    let mut checkpoints = HashMap::new();
    if let Some(c) = checkpoint {
        checkpoints.insert(0, c.to_string());
    }
    source
        .open(SourceContext {
            pipeline: "ingest".into(),
            checkpoints,
            health: Default::default(),
        })
        .await?;
    let addr = source.local_addr().expect("listening");
    let scheme = if tls { "https" } else { "http" };
    Ok(Running {
        url: format!("{scheme}://{addr}"),
        source,
    })
}

/// Polls until `n` records came or two seconds passed.
pub async fn poll_n(source: &mut HttpServerSource, n: usize) -> Vec<Record> {
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while out.len() < n && std::time::Instant::now() < deadline {
        match source.poll(n - out.len()).await.expect("poll") {
            Polled::Records(r) => out.extend(r),
            Polled::Idle => {}
            Polled::Finished => break,
        }
    }
    out
}

pub fn values(records: &[Record]) -> Vec<Value> {
    records
        .iter()
        .map(|r| serde_json::from_slice(&r.value).expect("record is JSON"))
        .collect()
}

pub async fn post(
    url: &str,
    path: &str,
    token: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> (u16, Option<String>, Value) {
    post_with(&reqwest::Client::new(), url, path, token, body, &[]).await
}

pub async fn post_with(
    client: &reqwest::Client,
    url: &str,
    path: &str,
    token: Option<&str>,
    body: impl Into<reqwest::Body>,
    headers: &[(&str, &str)],
) -> (u16, Option<String>, Value) {
    let mut req = client.post(format!("{url}{path}")).body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = resp.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, retry_after, body)
}

pub fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join("wal").join("ingest"))
        .expect("wal dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    v.sort();
    v
}
