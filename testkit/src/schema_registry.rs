//! Emulated Confluent Schema Registry (`docs/protocols.md` section 6): the part a consumer and a test
//! producer need.
//!
//! * `GET /schemas/ids/{id}`: `{"schema": "<schema as a JSON string>"}` (double-encoded, no
//!   `schemaType` for Avro), 404 with `error_code` 40403 for an unknown id.
//! * `GET /schemas/ids/{id}/schema`: the raw schema document.
//! * `POST /subjects/{subject}/versions`: registers an Avro schema (42201 if it does not
//!   parse), idempotent: the same schema gets the same global id.
//! * `GET /subjects/{subject}/versions/{version|latest}`.
//! * Basic auth when credentials are set: 401 with `error_code` 40101 otherwise.
//!
//! Knobs: [`SchemaRegistry::fail_next`] answers the next N requests with 500 / 50001, and
//! every request is recorded.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use base64::Engine;
use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::http::{serve, TestServer};

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// One request as the emulator saw it.
#[derive(Clone, Debug)]
pub struct SeenRequest {
    pub method: String,
    pub path: String,
}

#[derive(Clone, Debug)]
struct Stored {
    /// The schema text exactly as registered.
    text: String,
    /// Parsing Canonical Form, for idempotent registration.
    canonical: String,
}

#[derive(Default)]
struct Inner {
    schemas: Vec<Stored>,
    /// subject -> ids of its versions (version = index + 1).
    subjects: BTreeMap<String, Vec<u32>>,
    credentials: Option<(String, String)>,
    fail_next: u32,
    requests: Vec<SeenRequest>,
}

/// A running emulated registry; dropping it stops the server.
pub struct SchemaRegistry {
    pub server: TestServer,
    inner: Arc<Mutex<Inner>>,
}

/// First global id handed out; real registries start at 1, a higher start catches clients
/// that confuse ids with versions.
const FIRST_ID: u32 = 100;

impl SchemaRegistry {
    /// Starts a registry without authentication.
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// Starts a registry that requires Basic auth with these credentials.
    pub async fn start_with_auth(user: &str, password: &str) -> Self {
        Self::start_with(Some((user.to_string(), password.to_string()))).await
    }

    async fn start_with(credentials: Option<(String, String)>) -> Self {
        let inner = Arc::new(Mutex::new(Inner {
            credentials,
            ..Inner::default()
        }));
        let router = Router::new()
            .route("/schemas/ids/{id}", get(schema_by_id))
            .route("/schemas/ids/{id}/schema", get(raw_schema_by_id))
            .route(
                "/subjects/{subject}/versions",
                axum::routing::post(register),
            )
            .route(
                "/subjects/{subject}/versions/{version}",
                get(subject_version),
            )
            .fallback(any(not_found))
            .layer(axum::middleware::from_fn_with_state(inner.clone(), guard))
            .with_state(inner.clone());
        SchemaRegistry {
            server: serve(router).await,
            inner,
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Registers a schema directly (as a producer would via the API) and returns its id.
    pub fn register(&self, subject: &str, schema: &str) -> u32 {
        let canonical = canonical(schema).expect("test schema must be valid Avro");
        store(&mut self.inner.lock(), subject, schema, canonical)
    }

    /// Answers the next `n` requests with HTTP 500 / error_code 50001.
    pub fn fail_next(&self, n: u32) {
        self.inner.lock().fail_next = n;
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.inner.lock().requests.clone()
    }

    /// How many `GET /schemas/ids/{id}` requests were made for this id.
    pub fn fetches_of(&self, id: u32) -> usize {
        let path = format!("/schemas/ids/{id}");
        self.inner
            .lock()
            .requests
            .iter()
            .filter(|r| r.method == "GET" && r.path == path)
            .count()
    }
}

/// The Confluent wire format: magic byte 0, 4-byte big-endian schema id, then the payload.
pub fn frame(schema_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + payload.len());
    out.push(0);
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Encodes a JSON value as an Avro binary datum of `schema` (for test producers). Unions take
/// the first branch the value fits, enums their symbol string.
pub fn avro_datum(schema: &str, value: &Value) -> Vec<u8> {
    let schema = apache_avro::Schema::parse_str(schema).expect("test schema must be valid Avro");
    let avro = apache_avro::types::Value::from(value.clone())
        .resolve(&schema)
        .unwrap_or_else(|e| panic!("{value} does not fit the schema: {e}"));
    apache_avro::to_avro_datum(&schema, avro).expect("encode Avro datum")
}

fn canonical(schema: &str) -> Result<String, String> {
    apache_avro::Schema::parse_str(schema)
        .map(|s| s.canonical_form())
        .map_err(|e| e.to_string())
}

fn store(inner: &mut Inner, subject: &str, text: &str, canonical: String) -> u32 {
    let id = match inner.schemas.iter().position(|s| s.canonical == canonical) {
        Some(i) => FIRST_ID + i as u32,
        None => {
            inner.schemas.push(Stored {
                text: text.to_string(),
                canonical,
            });
            FIRST_ID + inner.schemas.len() as u32 - 1
        }
    };
    let versions = inner.subjects.entry(subject.to_string()).or_default();
    if !versions.contains(&id) {
        versions.push(id);
    }
    id
}

fn error(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        json!({"error_code": code, "message": message}).to_string(),
    )
        .into_response()
}

fn ok(body: Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        body.to_string(),
    )
        .into_response()
}

/// Records the request, injects failures, checks Basic auth.
async fn guard(
    State(inner): State<Arc<Mutex<Inner>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    {
        let mut st = inner.lock();
        st.requests.push(SeenRequest {
            method: method.to_string(),
            path: uri.path().to_string(),
        });
        if st.fail_next > 0 {
            st.fail_next -= 1;
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                50001,
                "Error in the backend data store",
            );
        }
        if let Some((user, pass)) = &st.credentials {
            let expected = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
            );
            let given = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            if given != Some(expected.as_str()) {
                return error(StatusCode::UNAUTHORIZED, 40101, "Unauthorized");
            }
        }
    }
    next.run(request).await
}

async fn schema_by_id(State(inner): State<Arc<Mutex<Inner>>>, Path(id): Path<String>) -> Response {
    match lookup(&inner, &id) {
        Some(text) => ok(json!({ "schema": text })),
        None => error(StatusCode::NOT_FOUND, 40403, "Schema not found"),
    }
}

async fn raw_schema_by_id(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(id): Path<String>,
) -> Response {
    match lookup(&inner, &id) {
        Some(text) => {
            (StatusCode::OK, [(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
        }
        None => error(StatusCode::NOT_FOUND, 40403, "Schema not found"),
    }
}

fn lookup(inner: &Mutex<Inner>, id: &str) -> Option<String> {
    let id: u32 = id.parse().ok()?;
    let idx = id.checked_sub(FIRST_ID)? as usize;
    inner.lock().schemas.get(idx).map(|s| s.text.clone())
}

async fn register(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(subject): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    if !matches!(
        media,
        "application/vnd.schemaregistry.v1+json"
            | "application/vnd.schemaregistry+json"
            | "application/json"
            | "application/octet-stream"
    ) {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            415,
            &format!("HTTP 415 Unsupported Media Type: {content_type}"),
        );
    }
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                400,
                &format!("Unrecognized JSON: {e}"),
            )
        }
    };
    let Some(text) = req.get("schema").and_then(Value::as_str) else {
        // A nested object instead of a string is the classic client mistake.
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            42201,
            "Invalid schema: `schema` must be a string containing the schema",
        );
    };
    let schema_type = req
        .get("schemaType")
        .and_then(Value::as_str)
        .unwrap_or("AVRO");
    if schema_type != "AVRO" {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            42201,
            &format!("Invalid schema: this emulator stores AVRO only, got {schema_type}"),
        );
    }
    match canonical(text) {
        Ok(c) => {
            let id = store(&mut inner.lock(), &subject, text, c);
            ok(json!({ "id": id }))
        }
        Err(e) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            42201,
            &format!("Invalid schema {text}: {e}"),
        ),
    }
}

async fn subject_version(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path((subject, version)): Path<(String, String)>,
) -> Response {
    let st = inner.lock();
    let Some(ids) = st.subjects.get(&subject) else {
        return error(
            StatusCode::NOT_FOUND,
            40401,
            &format!("Subject '{subject}' not found."),
        );
    };
    let index = match version.as_str() {
        "latest" | "-1" => ids.len().checked_sub(1),
        v => match v.parse::<usize>() {
            Ok(n) if n >= 1 => Some(n - 1),
            _ => {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    42202,
                    &format!("The specified version '{v}' is not a valid version id."),
                )
            }
        },
    };
    let Some((i, id)) = index.and_then(|i| ids.get(i).map(|id| (i, *id))) else {
        return error(
            StatusCode::NOT_FOUND,
            40402,
            &format!("Version {version} not found."),
        );
    };
    let text = st.schemas[(id - FIRST_ID) as usize].text.clone();
    ok(json!({"subject": subject, "id": id, "version": i + 1, "schema": text}))
}

async fn not_found(uri: Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        404,
        &format!("HTTP 404 Not Found: {}", uri.path()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames() {
        assert_eq!(frame(258, &[9]), vec![0, 0, 0, 1, 2, 9]);
    }

    #[test]
    fn datums_round_trip() {
        let schema = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"long"},
            {"name":"b","type":["null","string"]}]}"#;
        let datum = avro_datum(schema, &json!({"a": 5, "b": "x"}));
        let parsed = apache_avro::Schema::parse_str(schema).unwrap();
        let back = apache_avro::from_avro_datum(&parsed, &mut &datum[..], None).unwrap();
        assert_eq!(Value::try_from(back).unwrap(), json!({"a": 5, "b": "x"}));
    }

    #[tokio::test]
    async fn registers_idempotently_and_serves_by_id() {
        let reg = SchemaRegistry::start_with_auth("u", "p").await;
        let schema = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"long"}]}"#;
        let http = reqwest_like_get(&reg.url(), "/schemas/ids/100", None).await;
        assert_eq!(http.0, 401);
        let id = reg.register("t-value", schema);
        assert_eq!(reg.register("t-value", schema), id);
        let (code, body) =
            reqwest_like_get(&reg.url(), &format!("/schemas/ids/{id}"), Some(("u", "p"))).await;
        assert_eq!(code, 200);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(v["schema"].is_string(), "schema is a JSON string: {body}");
        let (code, body) = reqwest_like_get(&reg.url(), "/schemas/ids/999", Some(("u", "p"))).await;
        assert_eq!(code, 404);
        assert!(body.contains("40403"));
    }

    /// A minimal HTTP/1.1 GET (the testkit has no HTTP client dependency).
    async fn reqwest_like_get(base: &str, path: &str, auth: Option<(&str, &str)>) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = base.trim_start_matches("http://");
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let auth = auth
            .map(|(u, p)| {
                format!(
                    "Authorization: Basic {}\r\n",
                    base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
                )
            })
            .unwrap_or_default();
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let code = out[9..12].parse().unwrap();
        let body = out
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (code, body)
    }
}
