//! Datadog Logs intake emulator (`POST /api/v2/logs`), checked as `docs/protocols.md`
//! section 3 says.
//!
//! * `DD-API-KEY` required: missing → 401, wrong → 403 (`{"errors":[...]}` bodies).
//! * `Content-Encoding` gzip, deflate or identity (else 415); `Content-Type` application/json
//!   (a JSON array or one object) or text/plain (one log per line).
//! * Limits: a body over 5 MB *after decompression* → 413; more than 1000 entries → 400; a
//!   log over 1 MB is accepted but its message is truncated, as Datadog does (counted by
//!   [`DdEmulator::truncated_logs`], so a test can prove none was).
//! * Success is 202 `{}`. Fault knobs: bursts of 429 (with `Retry-After`), any status for the
//!   next N requests.

use std::collections::VecDeque;
use std::io::Read as _;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::http::{serve, TestServer};

/// Request body limit, uncompressed.
pub const MAX_REQUEST_BYTES: usize = 5_000_000;
/// Entries per request.
pub const MAX_ENTRIES: usize = 1000;
/// Size of one log beyond which Datadog truncates it.
pub const MAX_LOG_BYTES: usize = 1_000_000;

/// What one request looked like and how it was answered.
#[derive(Clone, Debug)]
pub struct DdRequestInfo {
    pub status: u16,
    /// Entries in the body (0 when it could not be parsed).
    pub entries: usize,
    /// Body size after decompression.
    pub bytes: usize,
    /// Body size on the wire.
    pub wire_bytes: usize,
    pub content_encoding: Option<String>,
    pub content_type: Option<String>,
}

struct Inner {
    api_key: String,
    logs: Vec<Value>,
    requests: Vec<DdRequestInfo>,
    /// Scripted answers for the next requests; `None` lets one through.
    faults: VecDeque<Option<(u16, Option<u64>)>>,
    truncated: usize,
}

type Shared = Arc<Mutex<Inner>>;

/// A running emulated intake; dropping it stops the server.
pub struct DdEmulator {
    server: TestServer,
    state: Shared,
}

impl DdEmulator {
    /// An intake accepting `api_key`.
    pub async fn start(api_key: &str) -> Self {
        let state: Shared = Arc::new(Mutex::new(Inner {
            api_key: api_key.to_string(),
            logs: Vec::new(),
            requests: Vec::new(),
            faults: VecDeque::new(),
            truncated: 0,
        }));
        let router = Router::new()
            .route("/api/v2/logs", post(intake))
            .fallback(not_found)
            // Limits are the service's, checked in the handler, not axum's 2 MB default.
            .layer(axum::extract::DefaultBodyLimit::disable())
            .with_state(state.clone());
        DdEmulator {
            server: serve(router).await,
            state,
        }
    }

    /// `http://127.0.0.1:PORT` (use as the sink's `endpoint`).
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The next `n` requests are answered 429 with `Retry-After: retry_after_secs`.
    pub fn burst_429(&self, n: usize, retry_after_secs: Option<u64>) {
        let mut s = self.state.lock();
        for _ in 0..n {
            s.faults.push_back(Some((429, retry_after_secs)));
        }
    }

    /// Lets `ok` requests through, then answers the next `n` with 429.
    pub fn burst_429_after(&self, ok: usize, n: usize, retry_after_secs: Option<u64>) {
        let mut s = self.state.lock();
        for _ in 0..ok {
            s.faults.push_back(None);
        }
        for _ in 0..n {
            s.faults.push_back(Some((429, retry_after_secs)));
        }
    }

    /// The next `n` requests are answered `status` (500, 503, 408, 403...).
    pub fn fail_next(&self, status: u16, n: usize) {
        let mut s = self.state.lock();
        for _ in 0..n {
            s.faults.push_back(Some((status, None)));
        }
    }

    /// Every accepted log, in arrival order.
    pub fn logs(&self) -> Vec<Value> {
        self.state.lock().logs.clone()
    }

    pub fn log_count(&self) -> usize {
        self.state.lock().logs.len()
    }

    /// Every request received, answered or refused.
    pub fn requests(&self) -> Vec<DdRequestInfo> {
        self.state.lock().requests.clone()
    }

    /// Logs Datadog would have cut because they were over 1 MB.
    pub fn truncated_logs(&self) -> usize {
        self.state.lock().truncated
    }
}

fn dd_error(status: StatusCode, title: &str, detail: &str) -> Response {
    (
        status,
        axum::Json(json!({"errors": [{"status": status.as_u16().to_string(), "title": title, "detail": detail}]})),
    )
        .into_response()
}

async fn not_found() -> Response {
    dd_error(StatusCode::NOT_FOUND, "Not Found", "Not Found")
}

fn decode(encoding: Option<&str>, body: &[u8]) -> Result<Vec<u8>, Box<Response>> {
    let bad = |e: std::io::Error| {
        Box::new(dd_error(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            &format!("could not decompress the payload: {e}"),
        ))
    };
    let mut out = Vec::new();
    match encoding {
        None | Some("identity") => return Ok(body.to_vec()),
        Some("gzip") => flate2::read::GzDecoder::new(body)
            .read_to_end(&mut out)
            .map_err(bad)?,
        Some("deflate") => flate2::read::ZlibDecoder::new(body)
            .read_to_end(&mut out)
            .map_err(bad)?,
        Some(other) => {
            return Err(Box::new(dd_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Unsupported Media Type",
                &format!("unsupported content encoding `{other}`"),
            )))
        }
    };
    Ok(out)
}

async fn intake(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let mut info = DdRequestInfo {
        status: 0,
        entries: 0,
        bytes: 0,
        wire_bytes: body.len(),
        content_encoding: header("content-encoding"),
        content_type: header("content-type"),
    };
    let mut s = state.lock();
    let (resp, status) = answer(&mut s, &headers, &body, &mut info);
    info.status = status.as_u16();
    s.requests.push(info);
    resp
}

fn answer(
    s: &mut Inner,
    headers: &HeaderMap,
    body: &[u8],
    info: &mut DdRequestInfo,
) -> (Response, StatusCode) {
    let fail = |r: Response| {
        let st = r.status();
        (r, st)
    };
    match headers.get("dd-api-key").and_then(|v| v.to_str().ok()) {
        None => {
            return fail(dd_error(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "API key is missing",
            ))
        }
        Some(k) if k != s.api_key => {
            return fail(dd_error(StatusCode::FORBIDDEN, "Forbidden", "Forbidden"))
        }
        Some(_) => {}
    }
    let decoded = match decode(info.content_encoding.as_deref(), body) {
        Ok(d) => d,
        Err(r) => return fail(*r),
    };
    info.bytes = decoded.len();
    if decoded.len() > MAX_REQUEST_BYTES {
        return fail(dd_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request Entity Too Large",
            &format!(
                "payload of {} bytes exceeds the {MAX_REQUEST_BYTES}-byte limit",
                decoded.len()
            ),
        ));
    }
    if let Some(Some((status, retry_after))) = s.faults.pop_front() {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let title = status.canonical_reason().unwrap_or("Error");
        let mut r = dd_error(status, title, title);
        if let Some(secs) = retry_after {
            r.headers_mut()
                .insert("retry-after", HeaderValue::from(secs));
        }
        return fail(r);
    }
    let content_type = info.content_type.as_deref().unwrap_or("");
    let base = content_type.split(';').next().unwrap_or("").trim();
    let mut logs: Vec<Value> = match base {
        "application/json" => match serde_json::from_slice::<Value>(&decoded) {
            Ok(Value::Array(items)) => items,
            Ok(obj @ Value::Object(_)) => vec![obj],
            Ok(_) => {
                return fail(dd_error(
                    StatusCode::BAD_REQUEST,
                    "Bad Request",
                    "payload must be a JSON array or object",
                ))
            }
            Err(e) => {
                return fail(dd_error(
                    StatusCode::BAD_REQUEST,
                    "Bad Request",
                    &format!("invalid JSON: {e}"),
                ))
            }
        },
        "text/plain" => String::from_utf8_lossy(&decoded)
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| json!({"message": l}))
            .collect(),
        _ => {
            return fail(dd_error(
                StatusCode::BAD_REQUEST,
                "Bad Request",
                &format!("unsupported content type `{content_type}`"),
            ))
        }
    };
    info.entries = logs.len();
    if logs.len() > MAX_ENTRIES {
        return fail(dd_error(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            &format!(
                "{} entries exceed the limit of {MAX_ENTRIES} per request",
                logs.len()
            ),
        ));
    }
    for (i, log) in logs.iter().enumerate() {
        match log.get("message") {
            Some(Value::String(_)) if log.is_object() => {}
            _ => {
                return fail(dd_error(
                    StatusCode::BAD_REQUEST,
                    "Bad Request",
                    &format!("entry {i} must be an object with a string `message`"),
                ))
            }
        }
    }
    for log in &mut logs {
        let size = log.to_string().len();
        if size > MAX_LOG_BYTES {
            s.truncated += 1;
            if let Some(Value::String(m)) = log.get_mut("message") {
                let keep = m.len().saturating_sub(size - MAX_LOG_BYTES);
                let mut cut = keep;
                while !m.is_char_boundary(cut) {
                    cut -= 1;
                }
                m.truncate(cut);
            }
        }
    }
    s.logs.extend(logs);
    (
        (StatusCode::ACCEPTED, axum::Json(json!({}))).into_response(),
        StatusCode::ACCEPTED,
    )
}

/// A receiver for benchmarks: answers every request 202 `{}` and counts requests, without
/// decompressing, parsing, storing or checking anything (the benchmark measures the sender).
pub async fn start_counter() -> (crate::http::TestServer, Arc<std::sync::atomic::AtomicU64>) {
    use std::sync::atomic::{AtomicU64, Ordering};
    let count = Arc::new(AtomicU64::new(0));
    let counter = count.clone();
    let handler = move |_body: Bytes| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::Relaxed);
            (
                StatusCode::ACCEPTED,
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                "{}",
            )
                .into_response()
        }
    };
    let router = Router::new()
        .route("/api/v2/logs", post(handler))
        .layer(axum::extract::DefaultBodyLimit::disable());
    (crate::http::serve_nodelay(router).await, count)
}
