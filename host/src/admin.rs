//! Admin HTTP: `/health`, `/metrics`, `/pipelines`, `GET /pipelines/{name}/offsets` and the
//! controls `POST /pipelines/{name}/pause|resume|restart`.
//!
//! With `host.admin.token` every request needs `Authorization: Bearer <token>`, except a bare
//! `GET /health` that answers liveness only (200 or 503, no per-pipeline details). Without a
//! token the controls answer only on a loopback listener: anyone who reaches a wider one could
//! otherwise stop the flow of audit records. With `host.admin.tls` the listener speaks HTTPS
//! only.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use sluice_sdk::http::server_tls::{self, TlsListener};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::config::{AdminConfig, AdminTls};
use crate::metrics::Metrics;
use crate::status::{PipelineStatus, State as PipelineState};

/// What the admin endpoints read.
pub struct AdminState {
    pub pipelines: Vec<Arc<PipelineStatus>>,
    pub metrics: Arc<Metrics>,
}

/// Why the admin listener cannot start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot listen on {listen}: {source}")]
    Bind {
        listen: SocketAddr,
        source: std::io::Error,
    },
    #[error("host.admin.token is empty")]
    EmptyToken,
    #[error("host.admin.tls.{field} {path}: {message}")]
    Tls {
        field: &'static str,
        path: String,
        message: String,
    },
}

/// The state handlers see: the pipelines and the token, if any.
struct Shared {
    state: Arc<AdminState>,
    token: Option<Vec<u8>>,
    /// Whether the controls answer without a token: only on a loopback listener.
    open_controls: bool,
}

/// Whether a request carries the token: absent, right or wrong.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Caller {
    /// No token is configured: everything is open.
    Open,
    Authorised,
    Anonymous,
}

impl Shared {
    fn pipeline(&self, name: &str) -> Option<&Arc<PipelineStatus>> {
        self.state.pipelines.iter().find(|p| p.name == name)
    }

    fn caller(&self, headers: &HeaderMap) -> Result<Caller, ()> {
        let Some(token) = &self.token else {
            return Ok(Caller::Open);
        };
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Ok(Caller::Anonymous);
        };
        let given = value
            .as_bytes()
            .strip_prefix(b"Bearer ")
            .or_else(|| value.as_bytes().strip_prefix(b"bearer "))
            .ok_or(())?;
        // Constant time over the token's bytes: the comparison does not tell how much of a
        // guess was right (a length mismatch is told apart, the length is no secret worth it).
        if bool::from(given.ct_eq(token)) {
            Ok(Caller::Authorised)
        } else {
            Err(())
        }
    }
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        "a valid bearer token is required\n",
    )
        .into_response()
}

/// Every route but `/health` needs the token when one is set; a wrong token is refused
/// everywhere.
async fn authorise(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    match s.caller(req.headers()) {
        Err(()) => unauthorized(),
        Ok(Caller::Anonymous) if req.uri().path() != "/health" => unauthorized(),
        Ok(_) => next.run(req).await,
    }
}

async fn health(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let snaps: Vec<_> = s.state.pipelines.iter().map(|p| p.snapshot()).collect();
    let ok = snaps.iter().all(|p| p.healthy);
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let degraded = snaps.iter().any(|p| p.degraded.is_some());
    let paused = snaps.iter().any(|p| p.state == PipelineState::Paused);
    let status = match (ok, degraded, paused) {
        (false, _, _) => "unhealthy",
        (true, true, _) => "degraded",
        (true, false, true) => "paused",
        (true, false, false) => "ok",
    };
    if s.caller(&headers) == Ok(Caller::Anonymous) {
        return (code, Json(json!({ "status": status }))).into_response();
    }
    let body = json!({
        "status": status,
        "pipelines": snaps.iter().map(|p| (p.name.clone(), json!({
            "state": p.state,
            "healthy": p.healthy,
            "problem": p.problem,
            "degraded": p.degraded,
            "sinks": p.sinks,
        }))).collect::<serde_json::Map<_, _>>(),
    });
    (code, Json(body)).into_response()
}

async fn pipelines(State(s): State<Arc<Shared>>) -> Response {
    let snaps: Vec<_> = s.state.pipelines.iter().map(|p| p.snapshot()).collect();
    Json(json!({ "pipelines": snaps })).into_response()
}

fn no_such_pipeline(name: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "error": format!("no pipeline named `{name}`") })),
    )
        .into_response()
}

/// `GET /pipelines/{name}/offsets`: the saved positions, and for sources that report them
/// (Kafka) each partition's committed offset, end and lag.
async fn offsets(State(s): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    let Some(p) = s.pipeline(&name) else {
        return no_such_pipeline(&name);
    };
    let snap = p.snapshot();
    Json(json!({
        "pipeline": snap.name,
        "committed": snap.committed,
        "partitions": snap.partitions,
        "lag": snap.lag,
    }))
    .into_response()
}

/// What a control request asks.
#[derive(Clone, Copy)]
enum Ask {
    Pause,
    Resume,
    Restart,
}

/// `POST /pipelines/{name}/pause|resume|restart`. Pause and resume are idempotent; the answer
/// is 202: the pipeline acts on it at its next step (a pause sends the batches in hand first).
fn control(s: &Shared, headers: &HeaderMap, name: &str, ask: Ask) -> Response {
    if s.caller(headers) == Ok(Caller::Open) && !s.open_controls {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({ "error": "the admin API listens beyond this host without host.admin.token: set a token to use the controls" })),
        )
            .into_response();
    }
    let Some(p) = s.pipeline(name) else {
        return no_such_pipeline(name);
    };
    let action = match ask {
        Ask::Pause => {
            p.control.set_paused(true);
            "pause"
        }
        Ask::Resume => {
            p.control.set_paused(false);
            "resume"
        }
        Ask::Restart => {
            p.control.request_restart();
            "restart"
        }
    };
    tracing::info!(pipeline = %name, action, "admin request");
    (
        StatusCode::ACCEPTED,
        Json(json!({ "pipeline": name, "requested": action, "paused": p.control.is_paused() })),
    )
        .into_response()
}

async fn pause(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    control(&s, &headers, &name, Ask::Pause)
}

async fn resume(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    control(&s, &headers, &name, Ask::Resume)
}

async fn restart(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    control(&s, &headers, &name, Ask::Restart)
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.state.metrics.render(),
    )
        .into_response()
}

/// Binds the admin listener (so a taken port fails start-up) and serves until `stop`.
pub async fn start(
    cfg: &AdminConfig,
    state: Arc<AdminState>,
    stop: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, AdminError> {
    let listen = cfg.listen;
    let token = match &cfg.token {
        Some(t) if t.expose().is_empty() => return Err(AdminError::EmptyToken),
        Some(t) => Some(t.expose().as_bytes().to_vec()),
        None => None,
    };
    let acceptor = cfg.tls.as_ref().map(tls_acceptor).transpose()?;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| AdminError::Bind { listen, source })?;
    if token.is_none() && !listen.ip().is_loopback() {
        tracing::warn!(
            %listen,
            "the admin API listens beyond this host without host.admin.token: anyone who reaches it can read pipeline status and metrics; set a token"
        );
    }
    let open_controls = listen.ip().is_loopback();
    let shared = Arc::new(Shared {
        state,
        token,
        open_controls,
    });
    let app = Router::new()
        .route("/health", get(health))
        .route("/pipelines", get(pipelines))
        .route("/metrics", get(metrics))
        .route("/pipelines/{name}/offsets", get(offsets))
        .route("/pipelines/{name}/pause", post(pause))
        .route("/pipelines/{name}/resume", post(resume))
        .route("/pipelines/{name}/restart", post(restart))
        .layer(middleware::from_fn_with_state(shared.clone(), authorise))
        .with_state(shared);
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    tracing::info!(%listen, scheme, "admin HTTP listening");
    Ok(tokio::spawn(async move {
        let shutdown = stop.clone();
        match acceptor {
            None => {
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async move { shutdown.cancelled().await })
                    .await;
            }
            Some(acceptor) => {
                let tls = TlsListener::start(listener, acceptor, stop.clone(), "admin");
                let _ = axum::serve(tls, app)
                    .with_graceful_shutdown(async move { shutdown.cancelled().await })
                    .await;
            }
        }
    }))
}

/// A rustls server config from PEM files: the certificate chain and its private key.
fn tls_acceptor(cfg: &AdminTls) -> Result<TlsAcceptor, AdminError> {
    server_tls::acceptor(&cfg.cert_file, &cfg.key_file, None).map_err(|e| AdminError::Tls {
        field: e.field,
        path: e.path,
        message: e.message,
    })
}
