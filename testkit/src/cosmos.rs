//! Azure Cosmos DB (NoSQL API) emulator: one database and container, partition key ranges
//! with splits, the change feed in latest-version and all-versions-and-deletes modes, and
//! master-key authorization checked exactly as the service does (`docs/protocols.md` section 4).
//!
//! What it enforces, with the service's status codes and error bodies:
//! * `Authorization`: the string to sign is rebuilt from the request itself (verb, resource
//!   type and link from the path, `x-ms-date` lower-cased) and the HMAC-SHA256 compared; a
//!   wrong signature is 401 (the body shows the payload the server signed), a date more than
//!   15 minutes from the server clock is 403 "not valid at the current time".
//! * `x-ms-version` is required; a change-feed request names one range in
//!   `x-ms-documentdb-partitionkeyrangeid`; `If-None-Match` is absent, `*` or an etag this
//!   server issued; all-versions mode needs its wire-format header and a start from now or a
//!   continuation (400 otherwise).
//! * A range that was split answers 410 with `x-ms-substatus: 1002` from then on.
//!
//! Continuations are LSNs, shared by the whole container, so a child range accepts its
//! parent's etag as the real service does. Knobs: [`CosmosEmulator::throttle`] (429 with
//! `x-ms-retry-after-ms`), [`CosmosEmulator::fail_next`], [`CosmosEmulator::set_clock_skew`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::State as AxState;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::http::{serve, TestServer};

/// A master key for tests (base64 of 64 fixed bytes).
pub const TEST_KEY: &str =
    "c2x1aWNlLWNvc21vcy1lbXVsYXRvci1tYXN0ZXIta2V5LTAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVm";

/// How long around its `x-ms-date` a token is accepted.
pub const TOKEN_WINDOW: Duration = Duration::from_secs(15 * 60);

const EPK_END: u64 = 1 << 32;

/// What the emulator serves.
#[derive(Debug, Clone)]
pub struct CosmosOptions {
    pub database: String,
    pub container: String,
    /// Partition key path, e.g. `/pk` or `/tenant/id`.
    pub partition_key: String,
    /// Number of partition key ranges at start (ids `0`, `1`, ...).
    pub ranges: usize,
    /// Base64 master key.
    pub key: String,
    /// Ranges per `pkranges` page; small values make clients follow `x-ms-continuation`.
    pub pkranges_page_size: usize,
}

impl Default for CosmosOptions {
    fn default() -> Self {
        CosmosOptions {
            database: "grc".into(),
            container: "controls".into(),
            partition_key: "/pk".into(),
            ranges: 4,
            key: TEST_KEY.into(),
            pkranges_page_size: 100,
        }
    }
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub status: u16,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A partition key range as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeView {
    pub id: String,
    pub min: String,
    pub max: String,
    pub parents: Vec<String>,
}

#[derive(Debug, Clone)]
struct Range {
    id: String,
    min: u64,
    max: u64,
    parents: Vec<String>,
}

impl Range {
    fn holds(&self, epk: u32) -> bool {
        (self.min..self.max).contains(&u64::from(epk))
    }

    fn view(&self) -> RangeView {
        RangeView {
            id: self.id.clone(),
            min: epk_text(self.min),
            max: epk_text(self.max),
            parents: self.parents.clone(),
        }
    }
}

fn epk_text(v: u64) -> String {
    match v {
        0 => String::new(),
        EPK_END => "FF".into(),
        v => format!("{v:08X}"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Create,
    Replace,
    Delete,
}

#[derive(Debug)]
struct Change {
    lsn: u64,
    epk: u32,
    key: (String, String),
    op: Op,
    /// The document as stored after the change, system properties included.
    current: Option<Bytes>,
    previous: Option<Bytes>,
    previous_lsn: Option<u64>,
    ts: i64,
}

#[derive(Default)]
struct Faults {
    throttle: u32,
    retry_after_ms: u64,
    fail: Vec<(u16, u32)>,
}

struct Inner {
    lsn: u64,
    ranges: Vec<Range>,
    gone: HashSet<String>,
    next_range_id: u64,
    log: Vec<Change>,
    /// (partition key JSON, id) -> index in `log` of the latest change.
    latest: HashMap<(String, String), usize>,
    clock_skew_secs: i64,
    faults: Faults,
    requests: Vec<Request>,
    rid_counter: u64,
}

struct Shared {
    opts: CosmosOptions,
    key: Vec<u8>,
    coll_rid: String,
    inner: Mutex<Inner>,
}

/// A running emulator; dropping it stops the server.
pub struct CosmosEmulator {
    server: TestServer,
    shared: Arc<Shared>,
}

impl CosmosEmulator {
    /// Starts with the default options (database `grc`, container `controls`, 4 ranges).
    pub async fn start() -> Self {
        Self::with_options(CosmosOptions::default()).await
    }

    pub async fn with_options(opts: CosmosOptions) -> Self {
        let key = STANDARD
            .decode(&opts.key)
            .expect("CosmosOptions::key must be base64");
        let n = opts.ranges.max(1) as u64;
        let ranges = (0..n)
            .map(|i| Range {
                id: i.to_string(),
                min: EPK_END * i / n,
                max: EPK_END * (i + 1) / n,
                parents: Vec::new(),
            })
            .collect();
        let shared = Arc::new(Shared {
            opts,
            key,
            coll_rid: "sLuIcEAAAAA=".into(),
            inner: Mutex::new(Inner {
                lsn: 0,
                ranges,
                gone: HashSet::new(),
                next_range_id: n,
                log: Vec::new(),
                latest: HashMap::new(),
                clock_skew_secs: 0,
                faults: Faults::default(),
                requests: Vec::new(),
                rid_counter: 0,
            }),
        });
        let router = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let server = serve(router).await;
        CosmosEmulator { server, shared }
    }

    /// `http://127.0.0.1:PORT/`
    pub fn endpoint(&self) -> String {
        format!("{}/", self.server.url())
    }

    pub fn key(&self) -> &str {
        &self.shared.opts.key
    }

    pub fn options(&self) -> &CosmosOptions {
        &self.shared.opts
    }

    /// Creates or replaces a document (it needs a string `id`); returns the change's LSN.
    pub fn upsert(&self, doc: Value) -> u64 {
        self.upsert_batch(vec![doc])
    }

    /// Writes documents in one transaction: they share one LSN and come back together in
    /// the change feed.
    pub fn upsert_batch(&self, docs: Vec<Value>) -> u64 {
        let mut g = self.shared.inner.lock();
        g.lsn += 1;
        let lsn = g.lsn;
        let ts = now_secs(g.clock_skew_secs);
        for doc in docs {
            let Value::Object(mut map) = doc else {
                panic!("a document must be a JSON object");
            };
            let id = match map.get("id") {
                Some(Value::String(s)) => s.clone(),
                _ => panic!("a document needs a string `id`"),
            };
            let pk = pk_value(&Value::Object(map.clone()), &self.shared.opts.partition_key);
            let key = (pk.to_string(), id);
            let prev_idx = g.latest.get(&key).copied();
            let prev = prev_idx
                .map(|i| &g.log[i])
                .filter(|c| c.op != Op::Delete)
                .map(|c| (c.current.clone(), c.lsn));
            g.rid_counter += 1;
            let rid = STANDARD.encode(g.rid_counter.to_be_bytes());
            map.insert("_rid".into(), rid.clone().into());
            map.insert(
                "_self".into(),
                format!("dbs/sLuIcE==/colls/{}/docs/{rid}/", self.shared.coll_rid).into(),
            );
            map.insert(
                "_etag".into(),
                format!("\"{:016x}-0000\"", g.rid_counter).into(),
            );
            map.insert("_attachments".into(), "attachments/".into());
            map.insert("_ts".into(), ts.into());
            map.insert("_lsn".into(), lsn.into());
            let current = Bytes::from(serde_json::to_vec(&Value::Object(map)).unwrap());
            let change = Change {
                lsn,
                epk: epk_of(&pk),
                op: if prev.is_some() {
                    Op::Replace
                } else {
                    Op::Create
                },
                previous: prev.as_ref().and_then(|p| p.0.clone()),
                previous_lsn: prev.map(|p| p.1),
                current: Some(current),
                key: key.clone(),
                ts,
            };
            g.log.push(change);
            let idx = g.log.len() - 1;
            g.latest.insert(key, idx);
        }
        lsn
    }

    /// Deletes a document; returns the LSN, `None` if it did not exist.
    pub fn delete(&self, id: &str, partition_key: Value) -> Option<u64> {
        let mut g = self.shared.inner.lock();
        let key = (partition_key.to_string(), id.to_string());
        let idx = *g.latest.get(&key)?;
        if g.log[idx].op == Op::Delete {
            return None;
        }
        g.lsn += 1;
        let change = Change {
            lsn: g.lsn,
            epk: epk_of(&partition_key),
            key: key.clone(),
            op: Op::Delete,
            current: None,
            previous: g.log[idx].current.clone(),
            previous_lsn: Some(g.log[idx].lsn),
            ts: now_secs(g.clock_skew_secs),
        };
        g.log.push(change);
        let i = g.log.len() - 1;
        g.latest.insert(key, i);
        Some(g.lsn)
    }

    /// The id of the range a partition key value falls in.
    pub fn range_of(&self, partition_key: &Value) -> String {
        let epk = epk_of(partition_key);
        let g = self.shared.inner.lock();
        g.ranges
            .iter()
            .find(|r| r.holds(epk))
            .map(|r| r.id.clone())
            .expect("the ranges cover the key space")
    }

    /// The current ranges.
    pub fn ranges(&self) -> Vec<RangeView> {
        self.shared
            .inner
            .lock()
            .ranges
            .iter()
            .map(Range::view)
            .collect()
    }

    /// Splits a range in two at the middle of its span. From now on the old id answers
    /// 410/1002 and `pkranges` lists the children with the old id among their `parents`.
    /// Returns the children's ids.
    pub fn split(&self, range_id: &str) -> [String; 2] {
        let mut g = self.shared.inner.lock();
        let pos = g
            .ranges
            .iter()
            .position(|r| r.id == range_id)
            .unwrap_or_else(|| panic!("no live range {range_id}"));
        let parent = g.ranges.remove(pos);
        let mid = parent.min + (parent.max - parent.min) / 2;
        let mut parents = parent.parents.clone();
        parents.push(parent.id.clone());
        let a = g.next_range_id.to_string();
        let b = (g.next_range_id + 1).to_string();
        g.next_range_id += 2;
        g.ranges.insert(
            pos,
            Range {
                id: b.clone(),
                min: mid,
                max: parent.max,
                parents: parents.clone(),
            },
        );
        g.ranges.insert(
            pos,
            Range {
                id: a.clone(),
                min: parent.min,
                max: mid,
                parents,
            },
        );
        g.gone.insert(parent.id);
        [a, b]
    }

    /// The next `n` change-feed requests are answered 429 (substatus 3200) with
    /// `x-ms-retry-after-ms: retry_after_ms`.
    pub fn throttle(&self, n: u32, retry_after_ms: u64) {
        let mut g = self.shared.inner.lock();
        g.faults.throttle = n;
        g.faults.retry_after_ms = retry_after_ms;
    }

    /// The next `n` change-feed requests fail with `status` / `substatus` (e.g. 503/0,
    /// 410/1007).
    pub fn fail_next(&self, n: usize, status: u16, substatus: u32) {
        let mut g = self.shared.inner.lock();
        g.faults
            .fail
            .extend(std::iter::repeat_n((status, substatus), n));
    }

    /// Moves the server clock (used for `_ts` and the token window) by `secs`.
    pub fn set_clock_skew(&self, secs: i64) {
        self.shared.inner.lock().clock_skew_secs = secs;
    }

    /// Sets the server clock to `t` (for a request signed with a fixed date).
    pub fn set_time(&self, t: SystemTime) {
        let target = t.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
        self.set_clock_skew(target - now_secs(0));
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.inner.lock().requests.clone()
    }

    /// The number of live (not deleted) documents.
    pub fn document_count(&self) -> usize {
        let g = self.shared.inner.lock();
        g.latest
            .values()
            .filter(|&&i| g.log[i].op != Op::Delete)
            .count()
    }
}

fn now_secs(skew: i64) -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + skew
}

/// The partition key value of a document (`Null` when absent).
fn pk_value(doc: &Value, path: &str) -> Value {
    let mut v = doc;
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        match v.get(seg) {
            Some(x) => v = x,
            None => return Value::Null,
        }
    }
    v.clone()
}

/// Effective partition key: FNV-1a of the key's JSON (the service uses MurmurHash3; only
/// the spread matters here).
fn epk_of(pk: &Value) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in pk.to_string().bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    // Mix the high bits down so that similar keys spread over all ranges.
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn activity_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn fmt_date(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

fn error(status: u16, substatus: u32, code: &str, message: &str) -> Response {
    let id = activity_id();
    let body = json!({
        "code": code,
        "message": format!("{message}\r\nActivityId: {id}, Microsoft.Azure.Documents.Common/2.14.0"),
    });
    let mut b = Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-ms-activity-id", id);
    if substatus != 0 {
        b = b.header("x-ms-substatus", substatus.to_string());
    }
    b.body(Body::from(body.to_string())).unwrap()
}

fn bad_request(message: &str) -> Response {
    error(400, 0, "BadRequest", message)
}

/// What the request addresses: `(resource type, resource link)` as the signature uses them.
fn resource(segments: &[String]) -> (String, String) {
    let n = segments.len();
    if n == 0 {
        return (String::new(), String::new());
    }
    if n % 2 == 1 {
        // A feed: the type is the last segment, the link its parent.
        (segments[n - 1].clone(), segments[..n - 1].join("/"))
    } else {
        (segments[n - 2].clone(), segments.join("/"))
    }
}

/// Checks `Authorization` and `x-ms-date` as the service does.
fn check_auth(
    sh: &Shared,
    skew: i64,
    method: &Method,
    segments: &[String],
    headers: &HeaderMap,
) -> Result<(), Box<Response>> {
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let Some(auth) = header("authorization") else {
        return Err(Box::new(error(
            401,
            0,
            "Unauthorized",
            "Required Header authorization is missing. Ensure a valid Authorization token is passed.",
        )));
    };
    let Some(date) = header("x-ms-date") else {
        return Err(Box::new(error(
            401,
            0,
            "Unauthorized",
            "The input authorization token can't serve the request. Required header x-ms-date is missing.",
        )));
    };
    let (rtype, link) = resource(segments);
    let payload = format!(
        "{}\n{}\n{}\n{}\n\n",
        method.as_str().to_lowercase(),
        rtype.to_lowercase(),
        link,
        date.to_lowercase()
    );
    let token = percent_decode(auth).unwrap_or_default();
    let mut parts = HashMap::new();
    for kv in token.split('&') {
        if let Some((k, v)) = kv.split_once('=') {
            parts.insert(k, v);
        }
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(&sh.key).unwrap();
    mac.update(payload.as_bytes());
    let expected = mac.finalize().into_bytes();
    let given = parts.get("sig").and_then(|s| STANDARD.decode(s).ok());
    let ok = parts.get("type") == Some(&"master")
        && parts.get("ver") == Some(&"1.0")
        && given.as_deref() == Some(&expected[..]);
    if !ok {
        return Err(Box::new(error(
            401,
            0,
            "Unauthorized",
            &format!(
                "The input authorization token can't serve the request. The wrong key is being \
                 used or the expected payload is not built as per the protocol. For more info: \
                 https://aka.ms/cosmosdb-tsg-mac-token. Server used the following payload to \
                 sign: '{payload}'"
            ),
        )));
    }
    let Ok(when) = chrono::DateTime::parse_from_rfc2822(date) else {
        return Err(Box::new(error(
            401,
            0,
            "Unauthorized",
            &format!("The input authorization token can't serve the request. x-ms-date `{date}` is not an RFC 1123 date."),
        )));
    };
    let when = when.timestamp();
    let now = now_secs(skew);
    let window = TOKEN_WINDOW.as_secs() as i64;
    if (now - when).abs() > window {
        return Err(Box::new(error(
            403,
            0,
            "Forbidden",
            &format!(
                "The authorization token is not valid at the current time. Please create another \
                 token and retry (token start time: {}, token expiry time: {}, current server \
                 time: {}).",
                fmt_date(when),
                fmt_date(when + window),
                fmt_date(now)
            ),
        )));
    }
    Ok(())
}

async fn handle(
    AxState(sh): AxState<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let resp = route(&sh, &method, &uri, &headers);
    sh.inner.lock().requests.push(Request {
        method: method.to_string(),
        path: uri.path().to_string(),
        headers,
        status: resp.status().as_u16(),
    });
    resp
}

fn route(sh: &Shared, method: &Method, uri: &Uri, headers: &HeaderMap) -> Response {
    let segments: Option<Vec<String>> = uri
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let Some(segments) = segments else {
        return bad_request("The request path is not valid.");
    };
    let skew = sh.inner.lock().clock_skew_secs;
    if let Err(r) = check_auth(sh, skew, method, &segments, headers) {
        return *r;
    }
    if headers.get("x-ms-version").is_none() {
        return bad_request("The request is missing the required header x-ms-version.");
    }
    let o = &sh.opts;
    let not_found = || {
        error(
            404,
            0,
            "NotFound",
            "Message: {\"Errors\":[\"Resource Not Found. Learn more: https://aka.ms/cosmosdb-tsg-not-found\"]}",
        )
    };
    let [dbs, db, colls, coll, feed] = segments.as_slice() else {
        return not_found();
    };
    if dbs != "dbs" || colls != "colls" || *db != o.database || *coll != o.container {
        return not_found();
    }
    if method != Method::GET {
        return error(
            405,
            0,
            "MethodNotAllowed",
            "This emulator serves reads only.",
        );
    }
    match feed.as_str() {
        "pkranges" => pkranges(sh, headers),
        "docs" => docs(sh, headers),
        _ => not_found(),
    }
}

fn pkranges(sh: &Shared, headers: &HeaderMap) -> Response {
    let g = sh.inner.lock();
    let start: usize = match headers.get("x-ms-continuation") {
        None => 0,
        Some(v) => match v.to_str().ok().and_then(|s| s.parse().ok()) {
            Some(n) => n,
            None => return bad_request("The continuation token is malformed."),
        },
    };
    let size = headers
        .get("x-ms-max-item-count")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<i64>().ok())
        .filter(|n| *n > 0)
        .map(|n| n as usize)
        .unwrap_or(usize::MAX)
        .min(sh.opts.pkranges_page_size.max(1));
    let page: Vec<Value> = g
        .ranges
        .iter()
        .skip(start)
        .take(size)
        .map(|r| {
            let v = r.view();
            json!({
                "_rid": format!("sLuIcE{}", r.id),
                "id": v.id,
                "_etag": format!("\"{}\"", r.id),
                "minInclusive": v.min,
                "maxExclusive": v.max,
                "ridPrefix": r.id.parse::<u64>().unwrap_or(0),
                "_self": format!("dbs/sLuIcE==/colls/{}/pkranges/{}/", sh.coll_rid, r.id),
                "throughputFraction": 1.0 / g.ranges.len() as f64,
                "status": "online",
                "parents": v.parents,
                "_ts": now_secs(g.clock_skew_secs),
            })
        })
        .collect();
    let next = start + page.len();
    let body = json!({"_rid": sh.coll_rid, "PartitionKeyRanges": page, "_count": page.len()});
    let mut b = Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("x-ms-activity-id", activity_id())
        .header("x-ms-item-count", page.len().to_string());
    if next < g.ranges.len() {
        b = b.header("x-ms-continuation", next.to_string());
    }
    b.body(Body::from(body.to_string())).unwrap()
}

#[derive(PartialEq)]
enum FeedMode {
    Latest,
    AllVersions,
}

fn docs(sh: &Shared, headers: &HeaderMap) -> Response {
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let mode = match header("a-im").map(|s| s.to_ascii_lowercase()) {
        None => return read_feed(sh),
        Some(m) if m == "incremental feed" => FeedMode::Latest,
        Some(m) if m == "full-fidelity feed" => FeedMode::AllVersions,
        Some(m) => return bad_request(&format!("A-IM header value `{m}` is not supported.")),
    };
    if mode == FeedMode::AllVersions
        && header("x-ms-cosmos-changefeed-wire-format-version") != Some("2021-09-15")
    {
        return bad_request(
            "Full-Fidelity change feed requires the header x-ms-cosmos-changefeed-wire-format-version.",
        );
    }
    let Some(range_id) = header("x-ms-documentdb-partitionkeyrangeid") else {
        return bad_request(
            "A change feed request must name a partition key range in x-ms-documentdb-partitionkeyrangeid.",
        );
    };
    let mut g = sh.inner.lock();
    if g.faults.throttle > 0 {
        g.faults.throttle -= 1;
        let mut r = error(
            429,
            3200,
            "429",
            "Message: {\"Errors\":[\"Request rate is large. More Request Units may be needed, so no changes were made. Please retry this request later. Learn more: http://aka.ms/cosmosdb-error-429\"]}",
        );
        r.headers_mut().insert(
            "x-ms-retry-after-ms",
            g.faults.retry_after_ms.to_string().parse().unwrap(),
        );
        return r;
    }
    if !g.faults.fail.is_empty() {
        let (status, sub) = g.faults.fail.remove(0);
        return error(status, sub, "ServiceUnavailable", "Injected failure.");
    }
    if g.gone.contains(range_id) {
        return error(
            410,
            1002,
            "Gone",
            &format!("Message: {{\"Errors\":[\"The requested partition key range {range_id} is gone (split).\"]}}"),
        );
    }
    let Some(range) = g.ranges.iter().find(|r| r.id == range_id).cloned() else {
        return bad_request(&format!(
            "Partition key range id `{range_id}` is not valid."
        ));
    };
    let since = match header("if-modified-since") {
        None => None,
        Some(t) => match chrono::DateTime::parse_from_rfc2822(t) {
            Ok(t) => Some(t.timestamp()),
            Err(_) => return bad_request(&format!("If-Modified-Since `{t}` is not a valid date.")),
        },
    };
    let after = match header("if-none-match") {
        None => None,
        Some("*") => {
            let etag = format!("\"{}\"", g.lsn);
            return not_modified(&etag, g.lsn);
        }
        Some(e) => match e
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .and_then(|s| s.parse::<u64>().ok())
        {
            Some(n) if n <= g.lsn => Some(n),
            _ => {
                return bad_request(&format!(
                    "The continuation (If-None-Match) `{e}` is not valid."
                ))
            }
        },
    };
    if mode == FeedMode::AllVersions && (after.is_none() || since.is_some()) {
        return bad_request(
            "Full-Fidelity change feed supports only a start from now or from a continuation; \
             ChangeFeedStartFrom Beginning and PointInTime are not supported.",
        );
    }
    let max = header("x-ms-max-item-count")
        .and_then(|s| s.parse::<i64>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(100) as usize;
    let from = after.unwrap_or(0);
    let start = g.log.partition_point(|c| c.lsn <= from);
    let mut items: Vec<Bytes> = Vec::new();
    let mut last_lsn = None;
    for (i, c) in g.log.iter().enumerate().skip(start) {
        if items.len() >= max && last_lsn != Some(c.lsn) {
            break;
        }
        if !range.holds(c.epk) || since.is_some_and(|t| c.ts < t) {
            continue;
        }
        match mode {
            FeedMode::Latest => {
                if c.op == Op::Delete || g.latest.get(&c.key) != Some(&i) {
                    continue;
                }
                items.push(c.current.clone().unwrap_or_default());
            }
            FeedMode::AllVersions => items.push(envelope(c)),
        }
        last_lsn = Some(c.lsn);
    }
    let Some(last) = last_lsn else {
        let etag = format!("\"{}\"", g.lsn);
        return not_modified(&etag, g.lsn);
    };
    let etag = format!("\"{last}\"");
    let mut body = Vec::with_capacity(64 + items.iter().map(|d| d.len() + 1).sum::<usize>());
    body.extend_from_slice(format!("{{\"_rid\":\"{}\",\"Documents\":[", sh.coll_rid).as_bytes());
    for (i, d) in items.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(d);
    }
    body.extend_from_slice(format!("],\"_count\":{}}}", items.len()).as_bytes());
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("etag", &etag)
        .header("x-ms-continuation", &etag)
        .header("x-ms-item-count", items.len().to_string())
        .header("lsn", g.lsn.to_string())
        .header("x-ms-session-token", format!("0:-1#{}", g.lsn))
        .header("x-ms-request-charge", "1.0")
        .header("x-ms-activity-id", activity_id())
        .body(Body::from(body))
        .unwrap()
}

fn not_modified(etag: &str, lsn: u64) -> Response {
    Response::builder()
        .status(StatusCode::NOT_MODIFIED)
        .header("etag", etag)
        .header("x-ms-continuation", etag)
        .header("lsn", lsn.to_string())
        .header("x-ms-item-count", "0")
        .header("x-ms-request-charge", "1.0")
        .header("x-ms-activity-id", activity_id())
        .body(Body::empty())
        .unwrap()
}

fn envelope(c: &Change) -> Bytes {
    let op = match c.op {
        Op::Create => "create",
        Op::Replace => "replace",
        Op::Delete => "delete",
    };
    let mut out = Vec::new();
    out.extend_from_slice(b"{\"current\":");
    out.extend_from_slice(c.current.as_deref().unwrap_or(b"{}"));
    if c.op == Op::Delete {
        if let Some(p) = &c.previous {
            out.extend_from_slice(b",\"previous\":");
            out.extend_from_slice(p);
        }
    }
    let meta = json!({
        "operationType": op,
        "lsn": c.lsn,
        "crts": c.ts,
        "previousImageLSN": c.previous_lsn.unwrap_or(0),
        "timeToLiveExpired": false,
    });
    out.extend_from_slice(b",\"metadata\":");
    out.extend_from_slice(meta.to_string().as_bytes());
    out.push(b'}');
    Bytes::from(out)
}

/// A plain read feed (no `A-IM`): every live document, one page.
fn read_feed(sh: &Shared) -> Response {
    let g = sh.inner.lock();
    let mut idx: Vec<usize> = g
        .latest
        .values()
        .copied()
        .filter(|&i| g.log[i].op != Op::Delete)
        .collect();
    idx.sort_unstable();
    let docs: Vec<Value> = idx
        .iter()
        .filter_map(|&i| g.log[i].current.as_ref())
        .filter_map(|b| serde_json::from_slice(b).ok())
        .collect();
    let body = json!({"_rid": sh.coll_rid, "Documents": docs, "_count": docs.len()});
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("x-ms-activity-id", activity_id())
        .body(Body::from(body.to_string()))
        .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_of_paths() {
        let s = |p: &str| p.split('/').map(String::from).collect::<Vec<_>>();
        assert_eq!(
            resource(&s("dbs/db1/colls/c1/docs")),
            ("docs".into(), "dbs/db1/colls/c1".into())
        );
        assert_eq!(
            resource(&s("dbs/db1/colls/c1/docs/x")),
            ("docs".into(), "dbs/db1/colls/c1/docs/x".into())
        );
    }

    #[test]
    fn ranges_cover_and_split() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let e = CosmosEmulator::start().await;
            let r = e.ranges();
            assert_eq!(r.len(), 4);
            assert_eq!(r[0].min, "");
            assert_eq!(r[3].max, "FF");
            let [a, b] = e.split("1");
            let r = e.ranges();
            assert_eq!(r.len(), 5);
            assert_eq!(r[1].id, a);
            assert_eq!(r[2].id, b);
            assert_eq!(r[1].parents, ["1"]);
            assert_eq!(r[1].max, r[2].min);
        });
    }
}
