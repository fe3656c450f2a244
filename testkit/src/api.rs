//! A REST API emulator for the `http` sink, checked as `docs/protocols.md` ("REST API calls
//! and OAuth2 client credentials") says.
//!
//! * Routes are declared (`POST /api/applied-controls/*/`, `*` one path segment): another path
//!   answers 404, another method on a known path 405. Bodies must be JSON
//!   (`application/json`) or NDJSON (`application/x-ndjson`), else 400 or 415; `gzip` bodies
//!   are decompressed.
//! * Auth is strict: a bearer token, basic credentials, a named header, or OAuth2 access tokens
//!   from `POST /oauth/token` (client credentials grant, RFC 6749 §4.4; a wrong client secret
//!   is refused with 401 `invalid_client`). A missing or wrong credential answers 401.
//! * Calls carrying the idempotency header are applied once per key; a repeat answers like the
//!   first and is counted ([`ApiEmulator::duplicates`]).
//! * Fault knobs: a fraction of calls answered 503 or 429 with `Retry-After` or cut off after
//!   being applied; scripted statuses for the next calls; statuses for bodies with a given
//!   field value; tokens expired on demand.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine as _;
use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::http::{serve, TestServer};

/// Where OAuth2 access tokens are issued.
pub const TOKEN_PATH: &str = "/oauth/token";

/// The credential the API requires.
#[derive(Debug, Clone)]
pub enum ApiAuth {
    None,
    /// `Authorization: Bearer <token>`.
    Bearer(String),
    /// `Authorization: Basic base64(user:password)`.
    Basic {
        username: String,
        password: String,
    },
    /// `<name>: <value>`, e.g. `Authorization: Token abc`.
    Header {
        name: String,
        value: String,
    },
    /// Bearer tokens issued at [`TOKEN_PATH`] to this client, valid for `ttl`.
    OAuth2 {
        client_id: String,
        client_secret: String,
        ttl: Duration,
    },
}

/// A call the API applied.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    /// The JSON body; an NDJSON body is an array of its lines.
    pub body: Value,
}

/// How a fraction of calls fails (see [`ApiEmulator::faults`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 503 with `Retry-After`; not applied.
    Unavailable,
    /// 429 with `Retry-After`; not applied.
    TooManyRequests,
    /// Applied, then the connection is cut before the answer: the caller cannot know.
    Dropped,
}

struct Rule {
    field: String,
    value: Value,
    status: u16,
    body: Value,
}

#[derive(Default)]
struct Counters {
    calls: u64,
    applied: u64,
    duplicates: u64,
    faults: HashMap<&'static str, u64>,
    tokens_issued: u64,
    tokens_refused: u64,
    unauthorized: u64,
}

struct Inner {
    auth: ApiAuth,
    routes: Vec<(Method, Vec<String>)>,
    idempotency_header: String,
    applied: Vec<Call>,
    /// Status first answered per idempotency key.
    keys: HashMap<String, u16>,
    tokens: HashMap<String, Instant>,
    fault_rate: f64,
    retry_after_secs: u64,
    rng: u64,
    script: VecDeque<(u16, Value)>,
    rules: Vec<Rule>,
    counters: Counters,
}

type Shared = Arc<Mutex<Inner>>;

/// A running API; dropping it stops the server.
pub struct ApiEmulator {
    server: TestServer,
    state: Shared,
}

impl ApiEmulator {
    /// An API requiring `auth` and answering only `routes` (`("POST", "/api/x/*/")`).
    pub async fn start(auth: ApiAuth, routes: &[(&str, &str)]) -> Self {
        let routes = routes
            .iter()
            .map(|(m, p)| {
                let method = Method::from_bytes(m.as_bytes()).expect("route method");
                (method, segments(p))
            })
            .collect();
        let state: Shared = Arc::new(Mutex::new(Inner {
            auth,
            routes,
            idempotency_header: "idempotency-key".into(),
            applied: Vec::new(),
            keys: HashMap::new(),
            tokens: HashMap::new(),
            fault_rate: 0.0,
            retry_after_secs: 1,
            rng: 0x9E37_79B9_7F4A_7C15,
            script: VecDeque::new(),
            rules: Vec::new(),
            counters: Counters::default(),
        }));
        let router = Router::new()
            .route(TOKEN_PATH, post(token))
            .fallback(call)
            .layer(axum::extract::DefaultBodyLimit::disable())
            .with_state(state.clone());
        ApiEmulator {
            server: serve(router).await,
            state,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The idempotency header's name (default `Idempotency-Key`).
    pub fn idempotency_header(&self, name: &str) {
        self.state.lock().idempotency_header = name.to_ascii_lowercase();
    }

    /// A `fraction` of calls (0.0 to 1.0, picked by a seeded generator) fail with one of
    /// the faults, in turn; 503 and 429 carry `Retry-After: retry_after_secs`.
    pub fn faults(&self, fraction: f64, retry_after_secs: u64, seed: u64) {
        let mut s = self.state.lock();
        s.fault_rate = fraction;
        s.retry_after_secs = retry_after_secs;
        s.rng = seed | 1;
    }

    /// The next calls are answered these statuses (with these JSON bodies), not applied; a 429
    /// or 503 carries `Retry-After` (1 second unless [`faults`](Self::faults) set another).
    pub fn script(&self, answers: &[(u16, Value)]) {
        self.state.lock().script.extend(answers.iter().cloned());
    }

    /// A call whose JSON body has `value` at the dotted `field` is answered `status` with
    /// `body`, and not applied (a 2xx status applies it).
    pub fn answer_when(&self, field: &str, value: Value, status: u16, body: Value) {
        self.state.lock().rules.push(Rule {
            field: field.to_string(),
            value,
            status,
            body,
        });
    }

    /// Every issued token stops being valid now (as if its lifetime were over).
    pub fn expire_tokens(&self) {
        self.state.lock().tokens.clear();
    }

    /// Every call applied, in order.
    pub fn applied(&self) -> Vec<Call> {
        self.state.lock().applied.clone()
    }

    pub fn applied_count(&self) -> u64 {
        self.state.lock().counters.applied
    }

    /// Calls received on the API routes, answered or not.
    pub fn calls(&self) -> u64 {
        self.state.lock().counters.calls
    }

    /// Calls whose idempotency key was applied before (answered, not applied again).
    pub fn duplicates(&self) -> u64 {
        self.state.lock().counters.duplicates
    }

    /// Faults injected, by kind (`503`, `429`, `dropped`).
    pub fn faults_injected(&self, kind: &str) -> u64 {
        self.state
            .lock()
            .counters
            .faults
            .get(kind)
            .copied()
            .unwrap_or(0)
    }

    pub fn tokens_issued(&self) -> u64 {
        self.state.lock().counters.tokens_issued
    }

    /// Token requests refused (wrong client, grant or form).
    pub fn tokens_refused(&self) -> u64 {
        self.state.lock().counters.tokens_refused
    }

    /// API calls answered 401.
    pub fn unauthorized(&self) -> u64 {
        self.state.lock().counters.unauthorized
    }
}

fn segments(path: &str) -> Vec<String> {
    path.split('/').map(str::to_string).collect()
}

fn route_matches(pattern: &[String], path: &[&str]) -> bool {
    pattern.len() == path.len()
        && pattern
            .iter()
            .zip(path)
            .all(|(p, s)| p == s || (p == "*" && !s.is_empty()))
}

fn error(status: u16, body: Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(body)).into_response()
}

fn detail(status: u16, text: &str) -> Response {
    error(status, json!({ "detail": text }))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// An answer whose connection is cut before the body ends.
fn dropped() -> Response {
    let stream = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::other("connection dropped by the emulator"))
    });
    (StatusCode::OK, Body::from_stream(stream)).into_response()
}

/// xorshift64*: a reproducible draw in [0, 1).
fn draw(rng: &mut u64) -> f64 {
    let mut x = *rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *rng = x;
    (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
}

async fn call(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = state.lock();
    let path: Vec<&str> = uri.path().split('/').collect();
    let known: Vec<&Method> = s
        .routes
        .iter()
        .filter(|(_, p)| route_matches(p, &path))
        .map(|(m, _)| m)
        .collect();
    if known.is_empty() {
        return detail(404, "Not found.");
    }
    if !known.contains(&&method) {
        return detail(405, &format!("Method \"{method}\" not allowed."));
    }
    s.counters.calls += 1;
    if let Err(r) = authorize(&mut s, &headers) {
        s.counters.unauthorized += 1;
        return *r;
    }
    let value = match read_body(&method, &headers, &body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    if let Some((status, body)) = s.script.pop_front() {
        let mut r = error(status, body);
        if matches!(status, 429 | 503) {
            r.headers_mut()
                .insert("retry-after", HeaderValue::from(s.retry_after_secs));
        }
        return r;
    }
    if let Some(r) = s
        .rules
        .iter()
        .find(|r| sluice_sdk::json::get(&value, &r.field) == Some(&r.value))
    {
        if !(200..300).contains(&r.status) {
            return error(r.status, r.body.clone());
        }
    }
    let mut fault = None;
    if s.fault_rate > 0.0 && draw(&mut s.rng) < s.fault_rate {
        fault = Some(match (draw(&mut s.rng) * 3.0) as u8 {
            0 => Fault::Unavailable,
            1 => Fault::TooManyRequests,
            _ => Fault::Dropped,
        });
    }
    let retry_after = HeaderValue::from(s.retry_after_secs);
    match fault {
        Some(Fault::Unavailable) => {
            *s.counters.faults.entry("503").or_default() += 1;
            let mut r = detail(503, "Service temporarily unavailable.");
            r.headers_mut().insert("retry-after", retry_after);
            return r;
        }
        Some(Fault::TooManyRequests) => {
            *s.counters.faults.entry("429").or_default() += 1;
            let mut r = detail(429, "Request was throttled.");
            r.headers_mut().insert("retry-after", retry_after);
            return r;
        }
        _ => {}
    }
    let key_header = s.idempotency_header.clone();
    let status = match header(&headers, &key_header).map(str::to_string) {
        Some(key) => match s.keys.get(&key) {
            Some(&first) => {
                s.counters.duplicates += 1;
                first
            }
            None => {
                s.keys.insert(key, 201);
                apply(&mut s, method, &uri, &headers, value);
                201
            }
        },
        None => {
            apply(&mut s, method, &uri, &headers, value);
            201
        }
    };
    if fault == Some(Fault::Dropped) {
        *s.counters.faults.entry("dropped").or_default() += 1;
        return dropped();
    }
    error(status, json!({ "status": "applied" }))
}

fn apply(s: &mut Inner, method: Method, uri: &Uri, headers: &HeaderMap, body: Value) {
    s.counters.applied += 1;
    let headers = headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    s.applied.push(Call {
        method,
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        headers,
        body,
    });
}

fn authorize(s: &mut Inner, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let refuse = |challenge: &'static str| {
        let mut r = detail(
            401,
            "Authentication credentials were not provided or are invalid.",
        );
        r.headers_mut()
            .insert("www-authenticate", HeaderValue::from_static(challenge));
        Err(Box::new(r))
    };
    let authorization = header(headers, "authorization");
    match &s.auth {
        ApiAuth::None => Ok(()),
        ApiAuth::Bearer(token) => match authorization.and_then(|a| a.strip_prefix("Bearer ")) {
            Some(t) if t == token => Ok(()),
            _ => refuse("Bearer"),
        },
        ApiAuth::Basic { username, password } => {
            match authorization
                .and_then(|a| a.strip_prefix("Basic "))
                .and_then(decode_basic)
            {
                Some((u, p)) if &u == username && &p == password => Ok(()),
                _ => refuse("Basic realm=\"api\""),
            }
        }
        ApiAuth::Header { name, value } => match header(headers, name) {
            Some(v) if v == value => Ok(()),
            _ => refuse("Token"),
        },
        ApiAuth::OAuth2 { .. } => {
            let now = Instant::now();
            match authorization.and_then(|a| a.strip_prefix("Bearer ")) {
                Some(t) if s.tokens.get(t).is_some_and(|&exp| exp > now) => Ok(()),
                _ => refuse("Bearer error=\"invalid_token\""),
            }
        }
    }
}

fn decode_basic(b64: &str) -> Option<(String, String)> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

fn read_body(method: &Method, headers: &HeaderMap, body: &[u8]) -> Result<Value, Box<Response>> {
    if matches!(*method, Method::GET | Method::HEAD) && body.is_empty() {
        return Ok(Value::Null);
    }
    let decoded = crate::http::decode_body(headers, body).map_err(|e| {
        Box::new(detail(
            415,
            &format!("Unsupported content encoding \"{e}\"."),
        ))
    })?;
    let content_type = header(headers, "content-type").unwrap_or("");
    let base = content_type.split(';').next().unwrap_or("").trim();
    let parse = |bytes: &[u8]| {
        serde_json::from_slice::<Value>(bytes)
            .map_err(|e| Box::new(detail(400, &format!("JSON parse error - {e}"))))
    };
    match base {
        "application/json" => parse(&decoded),
        "application/x-ndjson" => {
            if !decoded.ends_with(b"\n") {
                return Err(Box::new(detail(400, "NDJSON body must end with a newline")));
            }
            decoded
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .map(parse)
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array)
        }
        other => Err(Box::new(detail(
            415,
            &format!("Unsupported media type \"{other}\" in request."),
        ))),
    }
}

/// Percent-decodes a form component (`+` is a space).
fn form_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn form_pairs(body: &[u8]) -> Option<HashMap<String, String>> {
    let text = std::str::from_utf8(body).ok()?;
    let mut out = HashMap::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        // RFC 6749 §3.2: parameters must not be repeated.
        if out.insert(form_decode(k)?, form_decode(v)?).is_some() {
            return None;
        }
    }
    Some(out)
}

fn oauth_error(status: u16, code: &str, basic: bool) -> Response {
    let mut r = error(status, json!({ "error": code }));
    r.headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-store"));
    if status == 401 && basic {
        r.headers_mut().insert(
            "www-authenticate",
            HeaderValue::from_static("Basic realm=\"oauth\""),
        );
    }
    r
}

/// `POST /oauth/token`: the client credentials grant (RFC 6749 §4.4, answers §5.1 and §5.2).
async fn token(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let mut s = state.lock();
    let ApiAuth::OAuth2 {
        client_id,
        client_secret,
        ttl,
    } = s.auth.clone()
    else {
        return detail(404, "Not found.");
    };
    let content_type = header(&headers, "content-type").unwrap_or("");
    let refused = |s: &mut Inner, status, code, basic| {
        s.counters.tokens_refused += 1;
        oauth_error(status, code, basic)
    };
    if content_type.split(';').next().map(str::trim) != Some("application/x-www-form-urlencoded") {
        return refused(&mut s, 400, "invalid_request", false);
    }
    let Some(form) = form_pairs(&body) else {
        return refused(&mut s, 400, "invalid_request", false);
    };
    let basic = header(&headers, "authorization")
        .and_then(|a| a.strip_prefix("Basic "))
        .map(|b| decode_basic(b).and_then(|(u, p)| Some((form_decode(&u)?, form_decode(&p)?))));
    let in_body = form.get("client_id").map(|id| {
        (
            id.clone(),
            form.get("client_secret").cloned().unwrap_or_default(),
        )
    });
    let (id, secret, by_basic) = match (basic, in_body) {
        // One client authentication method per request (RFC 6749 §2.3).
        (Some(_), Some(_)) => return refused(&mut s, 400, "invalid_request", false),
        (Some(Some((u, p))), None) => (u, p, true),
        (Some(None), None) => return refused(&mut s, 401, "invalid_client", true),
        (None, Some((u, p))) => (u, p, false),
        (None, None) => return refused(&mut s, 401, "invalid_client", false),
    };
    if id != client_id || secret != client_secret {
        return refused(&mut s, 401, "invalid_client", by_basic);
    }
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return refused(&mut s, 400, "unsupported_grant_type", false);
    }
    s.counters.tokens_issued += 1;
    let token = format!("tok-{}-{}", s.counters.tokens_issued, s.rng % 100_000);
    s.tokens.insert(token.clone(), Instant::now() + ttl);
    let mut r = error(
        200,
        json!({"access_token": token, "token_type": "Bearer", "expires_in": ttl.as_secs()}),
    );
    r.headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_and_draws() {
        let f = form_pairs(b"grant_type=client_credentials&scope=a+b%2Fc").unwrap();
        assert_eq!(f["scope"], "a b/c");
        assert!(form_pairs(b"a=1&a=2").is_none());
        let mut rng = 7;
        let hits = (0..10_000).filter(|_| draw(&mut rng) < 0.2).count();
        assert!((1_700..2_300).contains(&hits), "{hits}");
        assert!(route_matches(
            &segments("/api/x/*/"),
            &["", "api", "x", "7", ""]
        ));
        assert!(!route_matches(
            &segments("/api/x/*/"),
            &["", "api", "x", "", ""]
        ));
    }
}
