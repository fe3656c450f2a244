//! Admin HTTP: `/health`, `/metrics`, `/pipelines`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::status::PipelineStatus;

/// What the admin endpoints read.
pub struct AdminState {
    pub pipelines: Vec<Arc<PipelineStatus>>,
    pub metrics: Arc<Metrics>,
}

async fn health(State(s): State<Arc<AdminState>>) -> Response {
    let snaps: Vec<_> = s.pipelines.iter().map(|p| p.snapshot()).collect();
    let ok = snaps.iter().all(|p| p.healthy);
    let body = json!({
        "status": if ok { "ok" } else { "unhealthy" },
        "pipelines": snaps.iter().map(|p| (p.name.clone(), json!({
            "state": p.state,
            "healthy": p.healthy,
            "problem": p.problem,
        }))).collect::<serde_json::Map<_, _>>(),
    });
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn pipelines(State(s): State<Arc<AdminState>>) -> Response {
    let snaps: Vec<_> = s.pipelines.iter().map(|p| p.snapshot()).collect();
    Json(json!({ "pipelines": snaps })).into_response()
}

async fn metrics(State(s): State<Arc<AdminState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}

/// Binds the admin listener (so a taken port fails start-up) and serves until `stop`.
pub async fn start(
    listen: SocketAddr,
    state: Arc<AdminState>,
    stop: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(listen).await?;
    let app = Router::new()
        .route("/health", get(health))
        .route("/pipelines", get(pipelines))
        .route("/metrics", get(metrics))
        .with_state(state);
    tracing::info!(%listen, "admin HTTP listening");
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
    }))
}
