//! Elasticsearch emulator: `GET /`, `_bulk`, and reading back with point-in-time searches
//! (`_pit`, `_search` with `search_after` over `_shard_doc`), checked as `docs/protocols.md`
//! section 2 says.
//!
//! * Every answer carries `X-Elastic-Product: Elasticsearch` (unless
//!   [`EsOptions::product_header`] is off, to play an impostor).
//! * Auth (Basic, ApiKey, Bearer) as configured; failures answer 401 `security_exception`.
//! * `_bulk`: `Content-Type` must be `application/x-ndjson`, `application/json` or a vendor
//!   `compatible-with` type (else 406); gzip bodies are decoded; a body over
//!   `max_content_length` gets 413; a body not ending in `\n` gets 400; action lines must hold
//!   exactly one known action and known metadata (`_type` is refused as in 8.x).
//! * Documents are stored per index and id: `create` on an existing id answers 409
//!   `version_conflict_engine_exception`, `index` replaces and bumps `_version`, `delete` of a
//!   missing id answers 404 `not_found`, `update` merges `doc` (404 `document_missing_exception`).
//! * Faults: per-item 429 for documents matching a predicate (a limited number of times),
//!   per-item 400 `mapper_parsing_exception` for documents matching a predicate, whole-request
//!   errors for the next N requests.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use base64::Engine as _;
use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::http::{decode_body, serve, serve_tls, ServerTls, TestServer};

mod search;

/// A predicate over `(index, id, document)`.
pub type DocPredicate = Arc<dyn Fn(&str, &str, &Value) -> bool + Send + Sync>;

/// Credentials the emulator requires.
#[derive(Clone, Debug)]
pub enum EsAuth {
    Basic {
        username: String,
        password: String,
    },
    /// The encoded form `base64(id:key)`, as sent after `ApiKey `.
    ApiKey(String),
    Bearer(String),
}

/// How the emulated cluster behaves.
#[derive(Clone, Debug)]
pub struct EsOptions {
    pub auth: Option<EsAuth>,
    /// `version.number` of `GET /`.
    pub version: String,
    /// Send `X-Elastic-Product: Elasticsearch`; off plays a server that is not Elasticsearch.
    pub product_header: bool,
    /// `http.max_content_length` (decoded body bytes).
    pub max_content_length: usize,
    /// Serve `https` with this certificate (`xpack.security.http.ssl`).
    pub tls: Option<ServerTls>,
}

impl Default for EsOptions {
    fn default() -> Self {
        EsOptions {
            auth: None,
            version: "8.15.0".into(),
            product_header: true,
            max_content_length: 100 * 1024 * 1024,
            tls: None,
        }
    }
}

/// What one `_bulk` request carried.
#[derive(Clone, Debug)]
pub struct BulkRequestInfo {
    pub items: usize,
    /// Decoded body size.
    pub bytes: usize,
    pub gzip: bool,
    pub content_type: String,
    pub query: Option<String>,
}

/// A stored document.
#[derive(Clone, Debug)]
pub struct StoredDoc {
    pub source: Value,
    pub version: u64,
    /// Position in the index: the `_seq_no` of the write that made this version (Lucene
    /// adds a new document for every write, so a replaced document moves to the end).
    pub seq_no: u64,
}

#[derive(Default)]
struct Faults {
    item_429: Option<(DocPredicate, usize)>,
    /// 429 answers given so far per (index, id).
    attempts_429: HashMap<(String, String), usize>,
    mapper_error: Option<DocPredicate>,
    /// Scripted answers of the next `_bulk` requests.
    requests: VecDeque<RequestFault>,
}

/// A scripted answer to one `_bulk` request.
#[derive(Clone, Copy, Debug)]
enum RequestFault {
    /// Processed as usual.
    Pass,
    /// Answered with this status as a whole.
    Status(u16),
    /// Nothing processed; the answer's headers are sent and the connection is cut before its
    /// body, as a proxy or a dying node does.
    Close,
}

pub(crate) struct Inner {
    opts: EsOptions,
    docs: HashMap<String, HashMap<String, StoredDoc>>,
    seq_no: u64,
    requests: Vec<BulkRequestInfo>,
    items_seen: usize,
    items_429: usize,
    faults: Faults,
    /// Open points in time: id -> (index, the documents as of opening).
    pits: HashMap<String, (String, search::Snapshot)>,
}

pub(crate) type Shared = Arc<Mutex<Inner>>;

/// A running emulated cluster; dropping it stops the server.
pub struct EsEmulator {
    server: TestServer,
    state: Shared,
}

impl EsEmulator {
    /// A cluster without auth, version 8.15.0.
    pub async fn start() -> Self {
        Self::start_with(EsOptions::default()).await
    }

    pub async fn start_with(opts: EsOptions) -> Self {
        let tls = opts.tls.clone();
        let state: Shared = Arc::new(Mutex::new(Inner {
            opts,
            docs: HashMap::new(),
            seq_no: 0,
            requests: Vec::new(),
            items_seen: 0,
            items_429: 0,
            faults: Faults::default(),
            pits: HashMap::new(),
        }));
        let router = Router::new()
            .route("/", get(root).head(root))
            .route("/_bulk", any(bulk_root))
            .route("/{index}/_bulk", any(bulk_index))
            .route("/{index}/_pit", any(search::open_pit))
            .route("/_pit", any(search::close_pit))
            .route("/_search", any(search::search))
            .route("/{index}/_search", any(search::search_index))
            .fallback(no_handler)
            // Limits are the service's, checked in the handler, not axum's 2 MB default.
            .layer(axum::extract::DefaultBodyLimit::disable())
            .with_state(state.clone());
        let server = match &tls {
            Some(tls) => serve_tls(router, tls).await,
            None => serve(router).await,
        };
        EsEmulator { server, state }
    }

    /// `http://127.0.0.1:PORT` (`https://` with TLS)
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Each item matching `pred` is answered 429 `es_rejected_execution_exception` on its
    /// first `times` attempts (counted per index and id); later attempts succeed.
    pub fn reject_items_with_429(
        &self,
        times: usize,
        pred: impl Fn(&str, &str, &Value) -> bool + Send + Sync + 'static,
    ) {
        let mut s = self.state.lock();
        s.faults.item_429 = Some((Arc::new(pred), times));
        s.faults.attempts_429.clear();
    }

    /// Items matching `pred` are answered 400 `mapper_parsing_exception`, every time.
    pub fn mapper_parsing_exception_when(
        &self,
        pred: impl Fn(&str, &str, &Value) -> bool + Send + Sync + 'static,
    ) {
        self.state.lock().faults.mapper_error = Some(Arc::new(pred));
    }

    /// The next `n` `_bulk` requests are answered with `status` as a whole (429
    /// `es_rejected_execution_exception`, 5xx, 401...).
    pub fn fail_next_requests(&self, status: u16, n: usize) {
        self.fail_requests_after(0, status, n);
    }

    /// Lets the next `ok` `_bulk` requests through, then answers `n` with `status`: an
    /// outage that starts between two requests of one batch.
    pub fn fail_requests_after(&self, ok: usize, status: u16, n: usize) {
        let mut s = self.state.lock();
        s.faults
            .requests
            .extend(std::iter::repeat_n(RequestFault::Pass, ok));
        s.faults
            .requests
            .extend(std::iter::repeat_n(RequestFault::Status(status), n));
    }

    /// Lets the next `ok` `_bulk` requests through, then cuts the connection of the next one
    /// before its answer's body, without processing it.
    pub fn close_connection_after(&self, ok: usize) {
        let mut s = self.state.lock();
        s.faults
            .requests
            .extend(std::iter::repeat_n(RequestFault::Pass, ok));
        s.faults.requests.push_back(RequestFault::Close);
    }

    /// A stored document.
    pub fn document(&self, index: &str, id: &str) -> Option<StoredDoc> {
        self.state.lock().docs.get(index)?.get(id).cloned()
    }

    /// All documents of an index, by id.
    pub fn documents(&self, index: &str) -> HashMap<String, StoredDoc> {
        self.state
            .lock()
            .docs
            .get(index)
            .cloned()
            .unwrap_or_default()
    }

    /// Index names and their document counts.
    pub fn indices(&self) -> HashMap<String, usize> {
        self.state
            .lock()
            .docs
            .iter()
            .map(|(k, v)| (k.clone(), v.len()))
            .collect()
    }

    /// Documents stored in all indices.
    pub fn document_count(&self) -> usize {
        self.state.lock().docs.values().map(HashMap::len).sum()
    }

    /// Every `_bulk` request that reached item processing.
    pub fn bulk_requests(&self) -> Vec<BulkRequestInfo> {
        self.state.lock().requests.clone()
    }

    /// Bulk items received (all attempts).
    pub fn items_seen(&self) -> usize {
        self.state.lock().items_seen
    }

    /// Items answered 429 so far.
    pub fn items_answered_429(&self) -> usize {
        self.state.lock().items_429
    }
}

pub(crate) fn es_response(product: bool, status: StatusCode, body: Value) -> Response {
    let mut resp = (status, axum::Json(body)).into_response();
    if product {
        resp.headers_mut().insert(
            "x-elastic-product",
            HeaderValue::from_static("Elasticsearch"),
        );
    }
    resp
}

/// `{"error": {type, reason, root_cause}, "status": N}` as Elasticsearch writes it.
pub(crate) fn error_body(status: StatusCode, kind: &str, reason: &str) -> Value {
    json!({
        "error": {
            "root_cause": [{"type": kind, "reason": reason}],
            "type": kind,
            "reason": reason,
        },
        "status": status.as_u16(),
    })
}

/// Checks credentials; `Some` is the 401 answer.
pub(crate) fn auth_failure(opts: &EsOptions, headers: &HeaderMap, path: &str) -> Option<Response> {
    let auth = opts.auth.as_ref()?;
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let ok = match (auth, given) {
        (_, None) => false,
        (EsAuth::Basic { username, password }, Some(h)) => h
            .strip_prefix("Basic ")
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .is_some_and(|d| d == format!("{username}:{password}").as_bytes()),
        (EsAuth::ApiKey(k), Some(h)) => h.strip_prefix("ApiKey ") == Some(k.as_str()),
        (EsAuth::Bearer(t), Some(h)) => h.strip_prefix("Bearer ") == Some(t.as_str()),
    };
    if ok {
        return None;
    }
    let reason = match given {
        None => format!("missing authentication credentials for REST request [{path}]"),
        Some(_) => format!(
            "unable to authenticate with provided credentials and anonymous access is not \
             allowed for this request [{path}]"
        ),
    };
    let mut body = error_body(StatusCode::UNAUTHORIZED, "security_exception", &reason);
    body["error"]["header"] = json!({"WWW-Authenticate": ["Basic realm=\"security\", charset=\"UTF-8\"", "Bearer realm=\"security\"", "ApiKey"]});
    let mut resp = es_response(opts.product_header, StatusCode::UNAUTHORIZED, body);
    resp.headers_mut().insert(
        "www-authenticate",
        HeaderValue::from_static("Basic realm=\"security\", charset=\"UTF-8\""),
    );
    Some(resp)
}

async fn root(State(state): State<Shared>, headers: HeaderMap) -> Response {
    let opts = state.lock().opts.clone();
    if let Some(r) = auth_failure(&opts, &headers, "/") {
        return r;
    }
    es_response(
        opts.product_header,
        StatusCode::OK,
        json!({
            "name": "emulator-node-1",
            "cluster_name": "sluice-test",
            "cluster_uuid": "8AqiuT9qQ3GGEvyR8Yw4lg",
            "version": {
                "number": opts.version,
                "build_flavor": "default",
                "build_type": "docker",
                "lucene_version": "9.11.1",
                "minimum_wire_compatibility_version": "7.17.0",
                "minimum_index_compatibility_version": "7.0.0",
            },
            "tagline": "You Know, for Search",
        }),
    )
}

async fn no_handler(State(state): State<Shared>, method: Method, uri: Uri) -> Response {
    let product = state.lock().opts.product_header;
    es_response(
        product,
        StatusCode::BAD_REQUEST,
        json!({"error": format!("no handler found for uri [{}] and method [{method}]", uri.path()), "status": 400}),
    )
}

async fn bulk_root(
    state: State<Shared>,
    method: Method,
    query: RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    bulk(state, None, method, query, headers, body)
}

async fn bulk_index(
    state: State<Shared>,
    Path(index): Path<String>,
    method: Method,
    query: RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    bulk(state, Some(index), method, query, headers, body)
}

/// Content types Elasticsearch accepts for `_bulk`.
fn acceptable_content_type(ct: &str) -> bool {
    let mut parts = ct.split(';').map(str::trim);
    let base = parts.next().unwrap_or("").to_ascii_lowercase();
    let params: Vec<&str> = parts.collect();
    match base.as_str() {
        "application/x-ndjson" | "application/json" => params.is_empty(),
        "application/vnd.elasticsearch+x-ndjson" | "application/vnd.elasticsearch+json" => {
            params.len() == 1
                && params[0]
                    .strip_prefix("compatible-with=")
                    .is_some_and(|v| matches!(v, "7" | "8" | "9"))
        }
        _ => false,
    }
}

fn bulk(
    State(state): State<Shared>,
    path_index: Option<String>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = state.lock();
    let product = s.opts.product_header;
    let path = match &path_index {
        Some(i) => format!("/{i}/_bulk"),
        None => "/_bulk".to_string(),
    };
    if method != Method::POST && method != Method::PUT {
        return es_response(
            product,
            StatusCode::METHOD_NOT_ALLOWED,
            json!({"error": format!("Incorrect HTTP method for uri [{path}] and method [{method}], allowed: [POST, PUT]"), "status": 405}),
        );
    }
    if let Some(r) = auth_failure(&s.opts, &headers, &path) {
        return r;
    }
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if !acceptable_content_type(&content_type) {
        return es_response(
            product,
            StatusCode::NOT_ACCEPTABLE,
            json!({"error": format!("Content-Type header [{content_type}] is not supported"), "status": 406}),
        );
    }
    let gzip = headers
        .get(axum::http::header::CONTENT_ENCODING)
        .is_some_and(|v| v == "gzip");
    let decoded = match decode_body(&headers, &body) {
        Ok(d) => d,
        Err(enc) => {
            return es_response(
                product,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                error_body(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "illegal_argument_exception",
                    &format!("unsupported content encoding [{enc}]"),
                ),
            )
        }
    };
    if decoded.len() > s.opts.max_content_length {
        let mut resp = StatusCode::PAYLOAD_TOO_LARGE.into_response();
        if product {
            resp.headers_mut().insert(
                "x-elastic-product",
                HeaderValue::from_static("Elasticsearch"),
            );
        }
        return resp;
    }
    let fault = s.faults.requests.pop_front();
    if let Some(RequestFault::Close) = fault {
        let cut = futures::stream::once(async {
            Err::<Bytes, std::io::Error>(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "connection cut by the emulator",
            ))
        });
        return (StatusCode::OK, axum::body::Body::from_stream(cut)).into_response();
    }
    if let Some(RequestFault::Status(status)) = fault {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let (kind, reason) = match status.as_u16() {
            429 => (
                "es_rejected_execution_exception",
                "rejected execution of coordinating operation [coordinating_and_primary_bytes=0, \
                 replica_bytes=0, all_bytes=0, coordinating_operation_bytes=1024, \
                 max_coordinating_and_primary_bytes=0]",
            ),
            401 => ("security_exception", "unable to authenticate user"),
            403 => (
                "security_exception",
                "action [indices:data/write/bulk] is unauthorized",
            ),
            407 => (
                "proxy_authentication_required",
                "proxy authentication required",
            ),
            _ => (
                "unavailable_shards_exception",
                "primary shard is not active",
            ),
        };
        return es_response(product, status, error_body(status, kind, reason));
    }
    match process_bulk(&mut s, path_index.as_deref(), &decoded) {
        Ok(items) => {
            let errors = items.iter().any(|i| {
                i.as_object()
                    .and_then(|o| o.values().next())
                    .and_then(|r| r.get("error"))
                    .is_some()
            });
            s.requests.push(BulkRequestInfo {
                items: items.len(),
                bytes: decoded.len(),
                gzip,
                content_type,
                query,
            });
            es_response(
                product,
                StatusCode::OK,
                json!({"errors": errors, "took": 1, "items": items}),
            )
        }
        Err((kind, reason)) => es_response(
            product,
            StatusCode::BAD_REQUEST,
            error_body(StatusCode::BAD_REQUEST, kind, &reason),
        ),
    }
}

const ACTIONS: [&str; 4] = ["index", "create", "update", "delete"];
const METADATA: [&str; 14] = [
    "_index",
    "_id",
    "routing",
    "if_seq_no",
    "if_primary_term",
    "version",
    "version_type",
    "pipeline",
    "require_alias",
    "require_data_stream",
    "dynamic_templates",
    "retry_on_conflict",
    "list_executed_pipelines",
    "_source",
];

type BulkError = (&'static str, String);

/// Parses and applies a decoded bulk body; `Err` is a whole-request 400.
fn process_bulk(
    s: &mut Inner,
    path_index: Option<&str>,
    body: &[u8],
) -> Result<Vec<Value>, BulkError> {
    if body.last() != Some(&b'\n') {
        return Err((
            "illegal_argument_exception",
            "The bulk request must be terminated by a newline [\\n]".into(),
        ));
    }
    let mut lines = body[..body.len() - 1]
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .enumerate()
        .map(|(n, l)| (n + 1, l));
    let mut items = Vec::new();
    while let Some((n, line)) = lines.next() {
        let action: Value = serde_json::from_slice(line).map_err(|e| {
            (
                "x_content_parse_exception",
                format!("[{n}:1] Malformed action/metadata line [{n}]: {e}"),
            )
        })?;
        let Some(obj) = action.as_object().filter(|o| o.len() == 1) else {
            return Err((
                "illegal_argument_exception",
                format!("Malformed action/metadata line [{n}], expected START_OBJECT or END_OBJECT but found [{}]", token_name(&action)),
            ));
        };
        let (name, meta) = obj.iter().next().expect("one key");
        if !ACTIONS.contains(&name.as_str()) {
            return Err((
                "illegal_argument_exception",
                format!("Malformed action/metadata line [{n}], expected field [create], [delete], [index] or [update] but found [{name}]"),
            ));
        }
        let Some(meta) = meta.as_object() else {
            return Err((
                "illegal_argument_exception",
                format!(
                    "Malformed action/metadata line [{n}], expected START_OBJECT but found [{}]",
                    token_name(meta)
                ),
            ));
        };
        if let Some(k) = meta.keys().find(|k| !METADATA.contains(&k.as_str())) {
            return Err((
                "illegal_argument_exception",
                format!("Action/metadata line [{n}] contains an unknown parameter [{k}]"),
            ));
        }
        let index = match meta.get("_index").and_then(Value::as_str).or(path_index) {
            Some(i) => i.to_string(),
            None => {
                return Err((
                    "action_request_validation_exception",
                    "Validation Failed: 1: index is missing;".into(),
                ))
            }
        };
        let id = meta.get("_id").map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        let source = if name == "delete" {
            None
        } else {
            match lines.next() {
                Some((_, l)) => Some(l),
                None => {
                    return Err((
                        "illegal_argument_exception",
                        format!("Malformed action/metadata line [{n}]: the [{name}] action needs a source line"),
                    ))
                }
            }
        };
        s.items_seen += 1;
        items.push(json!({ name.as_str(): apply_item(s, name, &index, id, source) }));
    }
    Ok(items)
}

fn token_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "VALUE_NULL",
        Value::Bool(_) => "VALUE_BOOLEAN",
        Value::Number(_) => "VALUE_NUMBER",
        Value::String(_) => "VALUE_STRING",
        Value::Array(_) => "START_ARRAY",
        Value::Object(_) => "START_OBJECT",
    }
}

fn item_error(index: &str, id: &str, status: u16, kind: &str, reason: &str) -> Value {
    json!({
        "_index": index,
        "_id": id,
        "status": status,
        "error": {"type": kind, "reason": reason, "index": index, "shard": "0", "index_uuid": "aAsFqTI0Tc2W0LCWgPNrOA"},
    })
}

fn invalid_index_name(index: &str) -> Option<String> {
    if index.is_empty() || index == "." || index == ".." {
        return Some("must not be empty, '.' or '..'".into());
    }
    if index.chars().any(|c| c.is_uppercase()) {
        return Some("must be lowercase".into());
    }
    if index.starts_with(['_', '-', '+']) {
        return Some("must not start with '_', '-', or '+'".into());
    }
    if index.chars().any(|c| {
        matches!(
            c,
            '\\' | '/' | '*' | '?' | '"' | '<' | '>' | '|' | ' ' | ',' | '#' | ':'
        )
    }) {
        return Some(
            "must not contain the following characters [ , \", *, \\, <, |, ,, >, /, ?, #, :]"
                .into(),
        );
    }
    None
}

/// Applies one item; returns its answer object.
fn apply_item(
    s: &mut Inner,
    action: &str,
    index: &str,
    id: Option<String>,
    source: Option<&[u8]>,
) -> Value {
    let id = id.unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    if let Some(why) = invalid_index_name(index) {
        let mut e = item_error(
            index,
            &id,
            400,
            "invalid_index_name_exception",
            &format!("Invalid index name [{index}], {why}"),
        );
        e["error"]["index"] = json!(index);
        return e;
    }
    let doc: Option<Value> = match source {
        None => None,
        Some(line) => match serde_json::from_slice::<Value>(line) {
            Ok(v @ Value::Object(_)) => Some(v),
            Ok(other) => {
                return item_error(
                    index,
                    &id,
                    400,
                    "document_parsing_exception",
                    &format!(
                        "[1:1] failed to parse: expected START_OBJECT but found [{}]",
                        token_name(&other)
                    ),
                )
            }
            Err(e) => {
                return item_error(
                    index,
                    &id,
                    400,
                    "document_parsing_exception",
                    &format!("[1:{}] failed to parse: {e}", e.column()),
                )
            }
        },
    };
    if let Some(d) = &doc {
        let hit = match &s.faults.item_429 {
            Some((pred, times)) if pred(index, &id, d) => {
                let given = s
                    .faults
                    .attempts_429
                    .entry((index.to_string(), id.clone()))
                    .or_default();
                let hit = *given < *times;
                if hit {
                    *given += 1;
                }
                hit
            }
            _ => false,
        };
        if hit {
            s.items_429 += 1;
            return item_error(index, &id, 429, "es_rejected_execution_exception",
                "rejected execution of org.elasticsearch.action.support.replication.TransportWriteAction$1 on EsThreadPoolExecutor[name = emulator/write, queue capacity = 10000]");
        }
        if s.faults
            .mapper_error
            .as_ref()
            .is_some_and(|p| p(index, &id, d))
        {
            return item_error(index, &id, 400, "mapper_parsing_exception",
                &format!("failed to parse field [severity] of type [long] in document with id '{id}'. Preview of field's value: 'high'"));
        }
    }
    s.seq_no += 1;
    let seq_no = s.seq_no;
    let docs = s.docs.entry(index.to_string()).or_default();
    let ok = |result: &str, status: u16, version: u64| {
        json!({
            "_index": index, "_id": id, "_version": version, "result": result,
            "_shards": {"total": 2, "successful": 1, "failed": 0},
            "_seq_no": seq_no, "_primary_term": 1, "status": status,
        })
    };
    match (action, doc) {
        ("create", Some(d)) => match docs.get(&id) {
            Some(existing) => item_error(
                index,
                &id,
                409,
                "version_conflict_engine_exception",
                &format!(
                    "[{id}]: version conflict, document already exists (current version [{}])",
                    existing.version
                ),
            ),
            None => {
                docs.insert(
                    id.clone(),
                    StoredDoc {
                        source: d,
                        version: 1,
                        seq_no,
                    },
                );
                ok("created", 201, 1)
            }
        },
        ("index", Some(d)) => {
            let version = docs.get(&id).map_or(1, |e| e.version + 1);
            docs.insert(
                id.clone(),
                StoredDoc {
                    source: d,
                    version,
                    seq_no,
                },
            );
            if version == 1 {
                ok("created", 201, 1)
            } else {
                ok("updated", 200, version)
            }
        }
        ("delete", _) => match docs.remove(&id) {
            Some(e) => ok("deleted", 200, e.version + 1),
            None => json!({
                "_index": index, "_id": id, "_version": 1, "result": "not_found",
                "_shards": {"total": 2, "successful": 1, "failed": 0},
                "_seq_no": seq_no, "_primary_term": 1, "status": 404,
            }),
        },
        ("update", Some(d)) => {
            let partial = d.get("doc").and_then(Value::as_object).cloned();
            let upsert = d.get("upsert").cloned();
            let as_upsert = d
                .get("doc_as_upsert")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            match (docs.get_mut(&id), partial) {
                (Some(existing), Some(p)) => {
                    if let Value::Object(m) = &mut existing.source {
                        for (k, v) in p {
                            m.insert(k, v);
                        }
                    }
                    existing.version += 1;
                    existing.seq_no = seq_no;
                    let v = existing.version;
                    ok("updated", 200, v)
                }
                (None, p) if upsert.is_some() || (as_upsert && p.is_some()) => {
                    let source = upsert.unwrap_or_else(|| Value::Object(p.unwrap_or_default()));
                    docs.insert(
                        id.clone(),
                        StoredDoc {
                            source,
                            version: 1,
                            seq_no,
                        },
                    );
                    ok("created", 201, 1)
                }
                (None, _) => item_error(
                    index,
                    &id,
                    404,
                    "document_missing_exception",
                    &format!("[{id}]: document missing"),
                ),
                (Some(_), None) => item_error(
                    index,
                    &id,
                    400,
                    "action_request_validation_exception",
                    "Validation Failed: 1: script or doc is missing;",
                ),
            }
        }
        _ => item_error(
            index,
            &id,
            400,
            "illegal_argument_exception",
            "missing source",
        ),
    }
}

/// A receiver for benchmarks: answers `GET /` like a cluster and every `_bulk` with one
/// `201` item per action, counting actions without storing or checking documents. Only for
/// bodies of `index`/`create` actions (two lines each).
pub async fn start_counter() -> (crate::http::TestServer, Arc<std::sync::atomic::AtomicU64>) {
    use std::sync::atomic::{AtomicU64, Ordering};
    let count = Arc::new(AtomicU64::new(0));
    let info = || async {
        let mut r = axum::Json(json!({
            "cluster_name": "bench", "tagline": "You Know, for Search",
            "version": {"number": "8.15.0", "build_flavor": "default"},
        }))
        .into_response();
        r.headers_mut().insert(
            "x-elastic-product",
            HeaderValue::from_static("Elasticsearch"),
        );
        r
    };
    let counter = count.clone();
    let bulk = move |headers: HeaderMap, body: Bytes| {
        let counter = counter.clone();
        async move {
            let decoded = match decode_body(&headers, &body) {
                Ok(d) => d,
                Err(_) => return StatusCode::UNSUPPORTED_MEDIA_TYPE.into_response(),
            };
            let actions = memchr::memchr_iter(b'\n', &decoded).count() / 2;
            counter.fetch_add(actions as u64, Ordering::Relaxed);
            let mut out = String::with_capacity(40 + actions * 32);
            out.push_str(r#"{"took":0,"errors":false,"items":["#);
            for i in 0..actions {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(r#"{"create":{"status":201}}"#);
            }
            out.push_str("]}");
            let mut r = (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                out,
            )
                .into_response();
            r.headers_mut().insert(
                "x-elastic-product",
                HeaderValue::from_static("Elasticsearch"),
            );
            r
        }
    };
    let router = Router::new()
        .route("/", get(info))
        .route("/_bulk", axum::routing::post(bulk))
        .layer(axum::extract::DefaultBodyLimit::disable());
    (crate::http::serve_nodelay(router).await, count)
}
