//! Splunk HTTP Event Collector emulator (`docs/protocols.md` section 1).
//!
//! Enforces what a real HEC enforces and answers with its status codes and JSON bodies:
//! * `Authorization: Splunk <token>` or Basic (any user, token as password); `?token=` only when
//!   allowed (else 400 code 16). Missing: 401 code 2; malformed: 401 code 3; wrong: 403 code 4;
//!   disabled: 403 code 1.
//! * `X-Splunk-Request-Channel` (or `?channel=`) must be a GUID (400 code 11) and is required
//!   when the token uses acknowledgement (400 code 10).
//! * Bodies over the max content length: 413. `Content-Encoding` other than gzip: 415. Gzip is
//!   decompressed with a cap on the output (413 past it).
//! * `/event` bodies are concatenated JSON objects (whitespace allowed, no commas, no array).
//!   Per event: `event` required (code 12), not blank (code 13), not null/false (code 6);
//!   `time` a number or numeric string without exponent (code 15); `fields` flat with string
//!   or string-array values (code 15); `index` in the allow-list (code 7). A failing event
//!   answers 400 with `invalid-event-number`: the events before it are indexed, it and the
//!   rest are not.
//! * `/ack` answers `{"acks":{"<id>":bool}}` per channel and forgets an id once it answered
//!   true; 400 code 14 when the token has no acknowledgement.
//!
//! Knobs for fault injection: random busy 503s, scripted answers, delayed and lost acks, a
//! token that changes at runtime, a predicate that refuses events with code 6.
//!
//! Lost acks model an indexer that failed before replication: the events of such a request are
//! not kept in [`HecServer::events`] (they are in [`HecServer::lost_events`]), so a client
//! that trusts the HTTP 200 instead of the ack loses them visibly.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine;
use parking_lot::Mutex;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use tokio::time::Instant;

use crate::http::{serve, serve_tls, ServerTls, TestServer};

/// Splunk's `[http_input] max_content_length` default (800 MiB).
pub const SPLUNK_MAX_CONTENT_LENGTH: usize = 838_860_800;

/// Server-side settings of the emulated token and listener.
#[derive(Clone, Debug)]
pub struct HecOptions {
    pub token: String,
    /// The token has indexer acknowledgement (`useACK`).
    pub acknowledgements: bool,
    /// Indexes the token may write to; `None` allows any.
    pub allowed_indexes: Option<Vec<String>>,
    /// Index of events that name none.
    pub default_index: String,
    /// Largest request body on the wire (413 past it).
    pub max_content_length: usize,
    /// Largest decompressed body (413 past it).
    pub max_decompressed: usize,
    /// Accept `?token=`.
    pub allow_query_token: bool,
    /// Seed of the fault-injection randomness (runs are reproducible).
    pub seed: u64,
    /// Serve HTTPS (as Splunk does by default) instead of plain HTTP.
    pub tls: Option<ServerTls>,
}

impl Default for HecOptions {
    fn default() -> Self {
        HecOptions {
            token: "00000000-0000-4000-8000-000000000001".to_string(),
            acknowledgements: false,
            allowed_indexes: None,
            default_index: "main".to_string(),
            max_content_length: SPLUNK_MAX_CONTENT_LENGTH,
            max_decompressed: 64 << 20,
            allow_query_token: false,
            seed: 0x5eed,
            tls: None,
        }
    }
}

/// One event as HEC indexed it.
#[derive(Clone, Debug, PartialEq)]
pub struct HecEvent {
    /// The `event` value (a string for /raw lines).
    pub event: Value,
    /// `time` exactly as sent (without quotes when it was a string); `None` when absent.
    pub time: Option<String>,
    pub host: Option<String>,
    pub source: Option<String>,
    pub sourcetype: Option<String>,
    /// The index, or the default index when none was named.
    pub index: String,
    pub fields: Option<Map<String, Value>>,
    pub channel: Option<String>,
    /// `event` or `raw`.
    pub endpoint: &'static str,
}

impl HecEvent {
    /// `time` as epoch seconds.
    pub fn time_secs(&self) -> Option<f64> {
        self.time.as_deref().and_then(|t| t.parse().ok())
    }
}

/// One request as received, with the answer given.
#[derive(Clone, Debug)]
pub struct RequestLog {
    pub path: String,
    pub status: u16,
    /// HEC `code` of the answer, when it had one.
    pub code: Option<i64>,
    pub content_encoding: Option<String>,
    /// Body bytes on the wire.
    pub wire_bytes: usize,
    /// Body bytes after decompression (0 when not read).
    pub body_bytes: usize,
    /// Events indexed by this request.
    pub indexed: usize,
    pub channel: Option<String>,
}

/// Counters of what the emulator did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HecStats {
    pub requests: u64,
    pub busy: u64,
    pub unauthorized: u64,
    pub too_large: u64,
    pub rejected_events: u64,
    pub acks_issued: u64,
    pub acks_answered_true: u64,
    pub acks_lost: u64,
    pub ack_polls: u64,
}

/// A scripted answer for the next event request(s).
#[derive(Clone, Debug)]
pub struct Fault {
    pub status: u16,
    pub body: String,
    pub retry_after: Option<String>,
}

impl Fault {
    /// 503 `{"text":"Server is busy","code":9}`.
    pub fn busy() -> Self {
        Fault {
            status: 503,
            body: reply("Server is busy", 9).to_string(),
            retry_after: None,
        }
    }
    /// 500 `{"text":"Internal server error","code":8}`.
    pub fn internal() -> Self {
        Fault {
            status: 500,
            body: reply("Internal server error", 8).to_string(),
            retry_after: None,
        }
    }
    /// 429 with `Retry-After`.
    pub fn too_many(retry_after_secs: u64) -> Self {
        Fault {
            status: 429,
            body: String::new(),
            retry_after: Some(retry_after_secs.to_string()),
        }
    }
}

type Predicate = Arc<dyn Fn(&HecEvent) -> bool + Send + Sync>;

struct Knobs {
    token: String,
    token_disabled: bool,
    busy_rate: f64,
    ack_delay: (Duration, Duration),
    ack_loss_rate: f64,
    reject: Option<Predicate>,
    /// Answers of the next event requests; `None` lets one through.
    scripted: Vec<Option<Fault>>,
    max_content_length: usize,
    rng: u64,
}

impl Knobs {
    /// xorshift64*: reproducible per seed, no dependency.
    fn random(&mut self) -> f64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct PendingAck {
    ready_at: Instant,
    lost: bool,
}

#[derive(Default)]
struct Channel {
    next_id: u64,
    pending: HashMap<u64, PendingAck>,
}

#[derive(Default)]
struct Store {
    events: Vec<HecEvent>,
    lost: Vec<HecEvent>,
    requests: Vec<RequestLog>,
    stats: HecStats,
    channels: HashMap<String, Channel>,
    violations: Vec<String>,
}

struct Shared {
    opts: HecOptions,
    knobs: Mutex<Knobs>,
    store: Mutex<Store>,
}

/// A running HEC emulator; dropping it stops the server.
pub struct HecServer {
    server: TestServer,
    shared: Arc<Shared>,
}

impl HecServer {
    /// Starts an emulator on a free loopback port.
    pub async fn start(opts: HecOptions) -> HecServer {
        let tls = opts.tls.clone();
        let shared = Arc::new(Shared {
            knobs: Mutex::new(Knobs {
                token: opts.token.clone(),
                token_disabled: false,
                busy_rate: 0.0,
                ack_delay: (Duration::ZERO, Duration::ZERO),
                ack_loss_rate: 0.0,
                reject: None,
                scripted: Vec::new(),
                max_content_length: opts.max_content_length,
                rng: opts.seed.max(1),
            }),
            opts,
            store: Mutex::new(Store::default()),
        });
        let router = Router::new()
            .route("/services/collector", post(event_handler))
            .route("/services/collector/event", post(event_handler))
            .route("/services/collector/event/1.0", post(event_handler))
            .route("/services/collector/raw", post(raw_handler))
            .route("/services/collector/raw/1.0", post(raw_handler))
            .route("/services/collector/ack", post(ack_handler))
            .route("/services/collector/health", get(health_handler))
            .route("/services/collector/health/1.0", get(health_handler))
            .fallback(|| async {
                answer(
                    StatusCode::NOT_FOUND,
                    json!({"text": "The requested URL was not found on this server.", "code": 404}),
                )
            })
            .method_not_allowed_fallback(|| async {
                answer(
                    StatusCode::METHOD_NOT_ALLOWED,
                    json!({"text": "The requested method is not allowed for this URL.", "code": 405}),
                )
            })
            .with_state(shared.clone());
        let server = match &tls {
            Some(tls) => serve_tls(router, tls).await,
            None => serve(router).await,
        };
        HecServer { server, shared }
    }

    /// `http://127.0.0.1:PORT` (`https://` with TLS), the base URL a sink is configured with.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The token currently accepted.
    pub fn token(&self) -> String {
        self.shared.knobs.lock().token.clone()
    }

    /// Accept another token from now on (rotate, or fix a misconfigured one).
    pub fn set_token(&self, token: &str) {
        self.shared.knobs.lock().token = token.to_string();
    }

    /// Answer 403 code 1 "Token disabled".
    pub fn set_token_disabled(&self, disabled: bool) {
        self.shared.knobs.lock().token_disabled = disabled;
    }

    /// Answer this share of event requests with 503 code 9, at random.
    pub fn set_busy_rate(&self, rate: f64) {
        self.shared.knobs.lock().busy_rate = rate;
    }

    /// Each ackId becomes true after a random delay in `min..=max`.
    pub fn set_ack_delay(&self, min: Duration, max: Duration) {
        self.shared.knobs.lock().ack_delay = (min, max.max(min));
    }

    /// This share of acknowledged requests is lost before replication: never true, events not
    /// kept.
    pub fn set_ack_loss_rate(&self, rate: f64) {
        self.shared.knobs.lock().ack_loss_rate = rate;
    }

    /// Refuse the first event of a request matching `pred` with 400 code 6 "Invalid data
    /// format" and its `invalid-event-number`.
    pub fn reject_events_where(&self, pred: impl Fn(&HecEvent) -> bool + Send + Sync + 'static) {
        self.shared.knobs.lock().reject = Some(Arc::new(pred));
    }

    /// Answers the next event requests with these faults, in order, before anything else.
    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.push_faults_after(0, faults);
    }

    /// Lets the next `ok` event requests through, then answers with `faults`: an outage that
    /// starts between two requests of one batch.
    pub fn push_faults_after(&self, ok: usize, faults: impl IntoIterator<Item = Fault>) {
        let mut knobs = self.shared.knobs.lock();
        knobs.scripted.extend(std::iter::repeat_n(None, ok));
        knobs.scripted.extend(faults.into_iter().map(Some));
    }

    /// Changes the max content length (413 past it).
    pub fn set_max_content_length(&self, bytes: usize) {
        self.shared.knobs.lock().max_content_length = bytes;
    }

    /// Events indexed so far, in arrival order.
    pub fn events(&self) -> Vec<HecEvent> {
        self.shared.store.lock().events.clone()
    }

    /// Number of events indexed so far.
    pub fn event_count(&self) -> usize {
        self.shared.store.lock().events.len()
    }

    /// Events of requests whose ack was lost (never indexed durably).
    pub fn lost_events(&self) -> Vec<HecEvent> {
        self.shared.store.lock().lost.clone()
    }

    /// Every request received, with the answer given.
    pub fn requests(&self) -> Vec<RequestLog> {
        self.shared.store.lock().requests.clone()
    }

    pub fn stats(&self) -> HecStats {
        self.shared.store.lock().stats.clone()
    }

    /// Requests real Splunk answers 200 but silently mishandles (an unknown envelope key
    /// drops that event and the rest). A correct client causes none.
    pub fn violations(&self) -> Vec<String> {
        self.shared.store.lock().violations.clone()
    }

    /// Waits until at least `n` events are indexed; false on timeout.
    pub async fn wait_for_events(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.event_count() >= n {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn reply(text: &str, code: i64) -> Value {
    json!({"text": text, "code": code})
}

fn answer(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=UTF-8")],
        body.to_string(),
    )
        .into_response()
}

/// A refused request: status, HEC code, text.
struct Refusal {
    status: StatusCode,
    body: Value,
    retry_after: Option<String>,
}

impl Refusal {
    fn new(status: u16, text: &str, code: i64) -> Self {
        Refusal {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            body: reply(text, code),
            retry_after: None,
        }
    }
    fn into_response(self) -> Response {
        let mut r = match self.body {
            // Answers without a HEC code (413, 415, a proxy's 429) are plain text.
            Value::String(text) => (self.status, text).into_response(),
            body => answer(self.status, body),
        };
        if let Some(ra) = self.retry_after.and_then(|v| v.parse().ok()) {
            r.headers_mut().insert(header::RETRY_AFTER, ra);
        }
        r
    }
}

type Params = Query<HashMap<String, String>>;

/// Authorization and channel checks shared by every POST endpoint.
fn check_auth(
    shared: &Shared,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
) -> Result<(), Refusal> {
    let given = match headers.get(header::AUTHORIZATION) {
        Some(v) => {
            let v = v
                .to_str()
                .map_err(|_| Refusal::new(401, "Invalid authorization", 3))?;
            if let Some(t) = v.strip_prefix("Splunk ") {
                t.trim().to_string()
            } else if let Some(b) = v.strip_prefix("Basic ") {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .ok()
                    .and_then(|d| String::from_utf8(d).ok())
                    .ok_or_else(|| Refusal::new(401, "Invalid authorization", 3))?;
                match decoded.split_once(':') {
                    Some((_, pass)) => pass.to_string(),
                    None => return Err(Refusal::new(401, "Invalid authorization", 3)),
                }
            } else {
                return Err(Refusal::new(401, "Invalid authorization", 3));
            }
        }
        None => match params.get("token") {
            Some(_) if !shared.opts.allow_query_token => {
                return Err(Refusal::new(
                    400,
                    "Query string authorization is not enabled",
                    16,
                ))
            }
            Some(t) => t.clone(),
            None => return Err(Refusal::new(401, "Token is required", 2)),
        },
    };
    let knobs = shared.knobs.lock();
    if given != knobs.token {
        return Err(Refusal::new(403, "Invalid token", 4));
    }
    if knobs.token_disabled {
        return Err(Refusal::new(403, "Token disabled", 1));
    }
    Ok(())
}

fn channel_of(headers: &HeaderMap, params: &HashMap<String, String>) -> Option<String> {
    headers
        .get("x-splunk-request-channel")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| params.get("channel").cloned())
}

fn check_channel(shared: &Shared, channel: Option<&str>) -> Result<(), Refusal> {
    match channel {
        None if shared.opts.acknowledgements => {
            Err(Refusal::new(400, "Data channel is missing", 10))
        }
        Some(c) if uuid::Uuid::parse_str(c).is_err() => {
            Err(Refusal::new(400, "Invalid data channel", 11))
        }
        _ => Ok(()),
    }
}

/// Reads and decompresses a body under the size caps.
async fn read_body(
    shared: &Shared,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Vec<u8>, usize), Refusal> {
    let max = shared.knobs.lock().max_content_length;
    let too_large = |n: usize| Refusal {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        body: Value::String(format!(
            "Content-Length of {n} too large (maximum is {max})"
        )),
        retry_after: None,
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(n) = declared.filter(|&n| n > max) {
        return Err(too_large(n));
    }
    let wire = axum::body::to_bytes(body, max.saturating_add(1))
        .await
        .map_err(|_| too_large(max + 1))?;
    if wire.len() > max {
        return Err(too_large(wire.len()));
    }
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok());
    let decoded = match encoding {
        None | Some("identity") => wire.to_vec(),
        Some("gzip") => {
            use std::io::Read;
            let cap = shared.opts.max_decompressed;
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&wire[..])
                .take(cap as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|_| Refusal::new(400, "Invalid data format", 6))?;
            if out.len() > cap {
                return Err(Refusal {
                    status: StatusCode::PAYLOAD_TOO_LARGE,
                    body: Value::String(format!("decompressed body over {cap} bytes")),
                    retry_after: None,
                });
            }
            out
        }
        Some(other) => {
            return Err(Refusal {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                body: Value::String(format!("Unsupported Content-Encoding: {other}")),
                retry_after: None,
            })
        }
    };
    Ok((decoded, wire.len()))
}

/// Scripted faults first, then random busy answers.
fn injected_fault(shared: &Shared) -> Option<Refusal> {
    let mut knobs = shared.knobs.lock();
    if !knobs.scripted.is_empty() {
        let f = knobs.scripted.remove(0)?;
        return Some(Refusal {
            status: StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body: serde_json::from_str(&f.body).unwrap_or(Value::String(f.body)),
            retry_after: f.retry_after,
        });
    }
    if knobs.busy_rate > 0.0 && knobs.random() < knobs.busy_rate {
        return Some(Refusal::new(503, "Server is busy", 9));
    }
    None
}

const ENVELOPE_KEYS: [&str; 7] = [
    "event",
    "time",
    "host",
    "source",
    "sourcetype",
    "index",
    "fields",
];

/// Validates one envelope (already known to be JSON text) into an event.
fn envelope(
    shared: &Shared,
    raw: &RawValue,
    channel: &Option<String>,
) -> Result<Result<HecEvent, String>, Refusal> {
    let map: HashMap<String, Box<RawValue>> =
        serde_json::from_str(raw.get()).map_err(|_| Refusal::new(400, "Invalid data format", 6))?;
    if let Some(k) = map.keys().find(|k| !ENVELOPE_KEYS.contains(&k.as_str())) {
        return Ok(Err(k.clone()));
    }
    let event: Value = match map.get("event") {
        None => return Err(Refusal::new(400, "Event field is required", 12)),
        Some(r) => serde_json::from_str(r.get())
            .map_err(|_| Refusal::new(400, "Invalid data format", 6))?,
    };
    match &event {
        Value::String(s) if s.trim().is_empty() => {
            return Err(Refusal::new(400, "Event field cannot be blank", 13))
        }
        Value::Null | Value::Bool(false) => {
            return Err(Refusal::new(400, "Invalid data format", 6))
        }
        _ => {}
    }
    let time = match map.get("time") {
        None => None,
        Some(r) => {
            let text = r.get();
            let inner = match serde_json::from_str::<Value>(text) {
                Ok(Value::String(s)) => s,
                Ok(Value::Number(_)) => text.to_string(),
                _ => return Err(Refusal::new(400, "Error in handling indexed fields", 15)),
            };
            if !is_plain_decimal(&inner) {
                return Err(Refusal::new(400, "Error in handling indexed fields", 15));
            }
            Some(inner)
        }
    };
    let text_key = |k: &str| -> Result<Option<String>, Refusal> {
        match map.get(k) {
            None => Ok(None),
            Some(r) => match serde_json::from_str::<Value>(r.get()) {
                Ok(Value::String(s)) => Ok(Some(s)),
                _ => Err(Refusal::new(400, "Invalid data format", 6)),
            },
        }
    };
    let index = text_key("index")?;
    if let (Some(i), Some(allowed)) = (&index, &shared.opts.allowed_indexes) {
        if !allowed.contains(i) {
            return Err(Refusal::new(400, "Incorrect index", 7));
        }
    }
    let fields = match map.get("fields") {
        None => None,
        Some(r) => match serde_json::from_str::<Value>(r.get()) {
            Ok(Value::Object(m)) => {
                let flat = m.values().all(|v| match v {
                    Value::String(_) => true,
                    Value::Array(a) => a.iter().all(Value::is_string),
                    _ => false,
                });
                if !flat {
                    return Err(Refusal::new(400, "Error in handling indexed fields", 15));
                }
                Some(m)
            }
            _ => return Err(Refusal::new(400, "Error in handling indexed fields", 15)),
        },
    };
    Ok(Ok(HecEvent {
        event,
        time,
        host: text_key("host")?,
        source: text_key("source")?,
        sourcetype: text_key("sourcetype")?,
        index: index.unwrap_or_else(|| shared.opts.default_index.clone()),
        fields,
        channel: channel.clone(),
        endpoint: "event",
    }))
}

/// `1718000000`, `1718000000.123`, `-5.5`: what HEC takes as `time` (no exponent, no sign games).
fn is_plain_decimal(s: &str) -> bool {
    let s = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
}

struct Ingested {
    status: StatusCode,
    body: Value,
    retry_after: Option<String>,
    indexed: Vec<HecEvent>,
    lost: Vec<HecEvent>,
    rejected: bool,
    wire: usize,
    decoded: usize,
}

impl Ingested {
    fn refused(r: Refusal) -> Self {
        Ingested {
            status: r.status,
            body: r.body,
            retry_after: r.retry_after,
            indexed: Vec::new(),
            lost: Vec::new(),
            rejected: false,
            wire: 0,
            decoded: 0,
        }
    }
}

async fn event_handler(
    State(shared): State<Arc<Shared>>,
    Query(params): Params,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let channel = channel_of(&headers, &params);
    let out = ingest(&shared, &headers, &params, &channel, body, false).await;
    finish(&shared, "/services/collector/event", &headers, channel, out)
}

async fn raw_handler(
    State(shared): State<Arc<Shared>>,
    Query(params): Params,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let channel = channel_of(&headers, &params);
    let out = ingest(&shared, &headers, &params, &channel, body, true).await;
    finish(&shared, "/services/collector/raw", &headers, channel, out)
}

async fn ingest(
    shared: &Shared,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
    channel: &Option<String>,
    body: Body,
    raw: bool,
) -> Ingested {
    if let Err(r) = check_auth(shared, headers, params) {
        return Ingested::refused(r);
    }
    if let Err(r) = check_channel(shared, channel.as_deref()) {
        return Ingested::refused(r);
    }
    if let Some(r) = injected_fault(shared) {
        return Ingested::refused(r);
    }
    let (decoded, wire) = match read_body(shared, headers, body).await {
        Ok(b) => b,
        Err(r) => return Ingested::refused(r),
    };
    let mut out = Ingested::refused(Refusal::new(200, "Success", 0));
    out.wire = wire;
    out.decoded = decoded.len();
    if decoded.iter().all(u8::is_ascii_whitespace) {
        out.status = StatusCode::BAD_REQUEST;
        out.body = reply("No data", 5);
        return out;
    }
    let reject = shared.knobs.lock().reject.clone();
    let mut failed: Option<(usize, Refusal)> = None;
    if raw {
        let index = params.get("index").cloned();
        if let (Some(i), Some(allowed)) = (&index, &shared.opts.allowed_indexes) {
            if !allowed.contains(i) {
                return Ingested::refused(Refusal::new(400, "Incorrect index", 7));
            }
        }
        for line in String::from_utf8_lossy(&decoded)
            .lines()
            .filter(|l| !l.trim().is_empty())
        {
            out.indexed.push(HecEvent {
                event: Value::String(line.to_string()),
                time: None,
                host: params.get("host").cloned(),
                source: params.get("source").cloned(),
                sourcetype: params.get("sourcetype").cloned(),
                index: index
                    .clone()
                    .unwrap_or_else(|| shared.opts.default_index.clone()),
                fields: None,
                channel: channel.clone(),
                endpoint: "raw",
            });
        }
    } else {
        let stream = serde_json::Deserializer::from_slice(&decoded).into_iter::<&RawValue>();
        for (n, item) in stream.enumerate() {
            let parsed = item
                .map_err(|_| Refusal::new(400, "Invalid data format", 6))
                .and_then(|raw| envelope(shared, raw, channel));
            match parsed {
                Ok(Ok(ev)) => {
                    if reject.as_ref().is_some_and(|p| p(&ev)) {
                        out.rejected = true;
                        failed = Some((n, Refusal::new(400, "Invalid data format", 6)));
                        break;
                    }
                    out.indexed.push(ev);
                }
                Ok(Err(key)) => {
                    shared.store.lock().violations.push(format!(
                        "unknown envelope key `{key}` in event {n}: Splunk answers 200 but drops this event and the rest"
                    ));
                    break;
                }
                Err(r) => {
                    failed = Some((n, r));
                    break;
                }
            }
        }
    }
    if let Some((n, r)) = failed {
        // Events before the failing one stay indexed; it and the rest are not.
        out.status = r.status;
        out.body = r.body;
        out.body["invalid-event-number"] = json!(n);
        return out;
    }
    if shared.opts.acknowledgements {
        let mut knobs = shared.knobs.lock();
        let lost = knobs.ack_loss_rate > 0.0 && knobs.random() < knobs.ack_loss_rate;
        let (min, max) = knobs.ack_delay;
        let delay = min + (max - min).mul_f64(knobs.random());
        drop(knobs);
        let mut store = shared.store.lock();
        let ch = store
            .channels
            .entry(channel.clone().unwrap_or_default())
            .or_default();
        let id = ch.next_id;
        ch.next_id += 1;
        ch.pending.insert(
            id,
            PendingAck {
                ready_at: Instant::now() + delay,
                lost,
            },
        );
        store.stats.acks_issued += 1;
        if lost {
            store.stats.acks_lost += 1;
            out.lost = std::mem::take(&mut out.indexed);
        }
        out.body["ackId"] = json!(id);
    }
    out
}

fn finish(
    shared: &Shared,
    path: &str,
    headers: &HeaderMap,
    channel: Option<String>,
    out: Ingested,
) -> Response {
    let mut store = shared.store.lock();
    store.stats.requests += 1;
    let code = out.body.get("code").and_then(Value::as_i64);
    match out.status.as_u16() {
        503 if code == Some(9) => store.stats.busy += 1,
        401 | 403 => store.stats.unauthorized += 1,
        413 => store.stats.too_large += 1,
        _ => {}
    }
    if out.rejected {
        store.stats.rejected_events += 1;
    }
    store.requests.push(RequestLog {
        path: path.to_string(),
        status: out.status.as_u16(),
        code,
        content_encoding: headers
            .get(header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        wire_bytes: out.wire,
        body_bytes: out.decoded,
        indexed: out.indexed.len(),
        channel,
    });
    store.events.extend(out.indexed);
    store.lost.extend(out.lost);
    drop(store);
    let refusal = Refusal {
        status: out.status,
        retry_after: out.retry_after,
        body: out.body,
    };
    refusal.into_response()
}

async fn ack_handler(
    State(shared): State<Arc<Shared>>,
    Query(params): Params,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let channel = channel_of(&headers, &params);
    let result = async {
        check_auth(&shared, &headers, &params)?;
        if !shared.opts.acknowledgements {
            return Err(Refusal::new(400, "ACK is disabled", 14));
        }
        check_channel(&shared, channel.as_deref())?;
        let (body, _) = read_body(&shared, &headers, body).await?;
        #[derive(serde::Deserialize)]
        struct AckQuery {
            acks: Vec<u64>,
        }
        let q: AckQuery = serde_json::from_slice(&body)
            .map_err(|_| Refusal::new(400, "Invalid data format", 6))?;
        let now = Instant::now();
        let mut store = shared.store.lock();
        store.stats.ack_polls += 1;
        let mut answers = Map::new();
        let mut trues = 0;
        if let Some(ch) = store
            .channels
            .get_mut(channel.as_deref().unwrap_or_default())
        {
            for id in &q.acks {
                let ready = ch
                    .pending
                    .get(id)
                    .is_some_and(|p| !p.lost && p.ready_at <= now);
                if ready {
                    // Splunk forgets an id once it has answered true.
                    ch.pending.remove(id);
                    trues += 1;
                }
                answers.insert(id.to_string(), Value::Bool(ready));
            }
        } else {
            for id in &q.acks {
                answers.insert(id.to_string(), Value::Bool(false));
            }
        }
        store.stats.acks_answered_true += trues;
        Ok(json!({ "acks": answers }))
    }
    .await;
    match result {
        Ok(body) => answer(StatusCode::OK, body),
        Err(r) => r.into_response(),
    }
}

async fn health_handler() -> Response {
    answer(StatusCode::OK, reply("HEC is healthy", 17))
}

/// A receiver for benchmarks: answers every event request 200 `Success` and counts requests,
/// without decompressing, parsing, storing or checking anything (the benchmark measures the
/// sender).
pub async fn start_counter() -> (TestServer, Arc<std::sync::atomic::AtomicU64>) {
    use std::sync::atomic::{AtomicU64, Ordering};
    let count = Arc::new(AtomicU64::new(0));
    let counter = count.clone();
    let handler = move |_body: axum::body::Bytes| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::Relaxed);
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"text":"Success","code":0}"#,
            )
                .into_response()
        }
    };
    let router = Router::new()
        .route("/services/collector/event", post(handler))
        .layer(axum::extract::DefaultBodyLimit::disable());
    (crate::http::serve_nodelay(router).await, count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_decimals() {
        for ok in ["1718000000", "1718000000.123", "-5.5", "0"] {
            assert!(is_plain_decimal(ok), "{ok}");
        }
        for bad in ["1.718E9", "1e3", "", ".5", "5.", "abc", "--1", "1.2.3"] {
            assert!(!is_plain_decimal(bad), "{bad}");
        }
    }
}
