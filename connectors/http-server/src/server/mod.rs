//! The HTTP endpoint: authenticates, limits, checks and stamps events, appends them to the
//! write-ahead log, and answers once they are fsynced.

mod answer;
mod auth;
mod body;
mod event;
pub mod tls;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota};
use http_body_util::BodyExt;
use sluice_sdk::Health;

pub use answer::{Item, ItemError};
pub use auth::Tokens;

use crate::config::HttpServerConfig;
use crate::metrics::{Outcome, TenantCounters};
use crate::schema::Schema;
use crate::wal::{segment, AppendError, Wal};
use body::{BodyError, Framing};
use event::Tenant;

/// A tenant as the endpoint knows it.
struct TenantState {
    name: String,
    limiter: Option<DefaultDirectRateLimiter>,
    counters: TenantCounters,
}

/// Everything a request needs.
pub struct Ingest {
    wal: Arc<Wal>,
    /// `None` without `auth`: every request is taken as the one `anonymous` tenant.
    tokens: Option<Tokens>,
    tenants: Vec<TenantState>,
    unknown: TenantCounters,
    tenant_field: String,
    schema: Option<Schema>,
    max_body_bytes: u64,
    max_events: usize,
    retry_after: Duration,
    health: Health,
}

impl Ingest {
    pub fn new(
        cfg: &HttpServerConfig,
        pipeline: &str,
        wal: Arc<Wal>,
        schema: Option<Schema>,
        health: Health,
    ) -> Self {
        let quota = cfg.rate_limit.as_ref().and_then(|r| {
            let rate = NonZeroU32::new(r.events_per_second)?;
            let burst = r.burst.and_then(NonZeroU32::new).unwrap_or(rate);
            Some(Quota::per_second(rate).allow_burst(burst))
        });
        let tokens = cfg.auth.as_ref().map(|a| {
            Tokens::new(
                a.tokens
                    .iter()
                    .map(|(t, s)| (t.clone(), s.expose().to_string())),
            )
        });
        let names: Vec<String> = match &tokens {
            Some(t) => t.names().map(str::to_string).collect(),
            None => vec!["anonymous".to_string()],
        };
        let tenants = names
            .into_iter()
            .map(|name| TenantState {
                limiter: quota.map(DefaultDirectRateLimiter::direct),
                counters: TenantCounters::new(pipeline, &name),
                name,
            })
            .collect();
        Ingest {
            wal,
            tokens,
            tenants,
            unknown: TenantCounters::new(pipeline, "unknown"),
            tenant_field: cfg.tenant_field.clone(),
            schema,
            max_body_bytes: cfg.max_body_bytes,
            max_events: cfg.max_events_per_request,
            retry_after: cfg.retry_after,
            health,
        }
    }
}

/// The routes on the configured paths.
pub fn router(ingest: Arc<Ingest>, single: &str, bulk: &str) -> Router {
    Router::new()
        .route(single, post(single_handler))
        .route(bulk, post(bulk_handler))
        .with_state(ingest)
}

async fn single_handler(
    State(ing): State<Arc<Ingest>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(&ing, &headers, body, false).await
}

async fn bulk_handler(State(ing): State<Arc<Ingest>>, headers: HeaderMap, body: Body) -> Response {
    handle(&ing, &headers, body, true).await
}

async fn handle(ing: &Ingest, headers: &HeaderMap, body: Body, bulk_path: bool) -> Response {
    let started = Instant::now();
    // Who is asking.
    let tenant_ix = match &ing.tokens {
        None => 0,
        Some(tokens) => {
            let auth = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
            match tokens.tenant(auth) {
                Some(i) => i,
                None => {
                    ing.unknown.add(Outcome::Unauthorized, 1);
                    return answer::refused(
                        StatusCode::UNAUTHORIZED,
                        "unauthorized",
                        "a valid bearer token is required",
                        None,
                    );
                }
            }
        }
    };
    let tenant = &ing.tenants[tenant_ix];
    let counters = &tenant.counters;

    // The body, within its limit.
    let too_large = || {
        counters.add(Outcome::TooLarge, 1);
        answer::refused(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            &format!(
                "the body is over max_body_bytes ({} bytes)",
                ing.max_body_bytes
            ),
            None,
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > ing.max_body_bytes) {
        return too_large();
    }
    let limited = http_body_util::Limited::new(body, ing.max_body_bytes as usize);
    let raw = match limited.collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return too_large(),
        Err(e) => {
            return answer::refused(
                StatusCode::BAD_REQUEST,
                "bad_request",
                &format!("the body could not be read: {e}"),
                None,
            )
        }
    };
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok());
    let bytes = match body::decode(encoding, raw, ing.max_body_bytes) {
        Ok(b) => b,
        Err(BodyError::TooLarge(_)) => return too_large(),
        Err(e @ BodyError::Encoding(_)) => {
            counters.add(Outcome::Invalid, 1);
            return answer::refused(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_encoding",
                &e.to_string(),
                None,
            );
        }
        Err(e) => {
            counters.add(Outcome::Invalid, 1);
            return answer::refused(StatusCode::BAD_REQUEST, "bad_request", &e.to_string(), None);
        }
    };
    let (events, framing) = match body::split(&bytes, bulk_path) {
        Ok(v) => v,
        Err(e) => {
            counters.add(Outcome::Invalid, 1);
            return answer::refused(StatusCode::BAD_REQUEST, "bad_request", &e.to_string(), None);
        }
    };
    if events.len() > ing.max_events {
        counters.add(Outcome::TooLarge, events.len() as u64);
        return answer::refused(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_events",
            &format!(
                "{} events is over max_events_per_request ({})",
                events.len(),
                ing.max_events
            ),
            None,
        );
    }

    // The tenant's rate.
    if let Some(limiter) = &tenant.limiter {
        let n = NonZeroU32::new(events.len() as u32).unwrap_or(NonZeroU32::MIN);
        let wait = match limiter.check_n(n) {
            Ok(Ok(())) => None,
            Ok(Err(not_until)) => Some(not_until.wait_time_from(DefaultClock::default().now())),
            // More events than the burst: they can never pass at once.
            Err(_) => Some(Duration::from_secs(1)),
        };
        if let Some(wait) = wait {
            counters.add(Outcome::RateLimited, events.len() as u64);
            return answer::refused(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                &format!("tenant {} is over its rate_limit", tenant.name),
                Some(wait),
            );
        }
    }

    // Each event: its tenant, its schema; the accepted ones encoded for the log.
    let ts = now_millis();
    let mut items = Vec::with_capacity(events.len());
    let mut log = Vec::with_capacity(bytes.len() + events.len() * (segment::HEADER_BYTES + 32));
    let mut stamped = Vec::new();
    let (mut invalid, mut forbidden) = (0u64, 0u64);
    for raw in &events {
        let text = raw.get();
        let who = match event::tenant(text, &ing.tenant_field) {
            Ok(t) => t,
            Err(e) => {
                invalid += 1;
                items.push(Item::rejected(400, "invalid_event", e.to_string(), None));
                continue;
            }
        };
        let payload: &[u8] = match (&ing.tokens, who) {
            (Some(_), Tenant::Named(t)) if t != tenant.name => {
                forbidden += 1;
                items.push(Item::rejected(
                    403,
                    "forbidden",
                    format!(
                        "the event's {} names another tenant than the token's",
                        ing.tenant_field
                    ),
                    None,
                ));
                continue;
            }
            (Some(_), Tenant::Missing { empty }) => {
                stamped.clear();
                event::stamp(&mut stamped, text, &ing.tenant_field, &tenant.name, empty);
                &stamped
            }
            _ => text.as_bytes(),
        };
        if let Some(schema) = &ing.schema {
            if let Err(v) = schema.check(payload) {
                invalid += 1;
                items.push(Item::rejected(
                    400,
                    "schema_violation",
                    v.reason,
                    Some(v.pointer),
                ));
                continue;
            }
        }
        segment::encode(&mut log, ts, payload);
        items.push(Item::accepted());
    }
    counters.add(Outcome::Invalid, invalid);
    counters.add(Outcome::Forbidden, forbidden);
    let accepted = items.iter().filter(|i| i.is_accepted()).count() as u64;

    // Kept: only once fsynced.
    if accepted > 0 {
        match ing.wal.append(log).await {
            Ok(_) => {
                counters.add(Outcome::Accepted, accepted);
                ing.health.set_healthy();
            }
            Err(e) => {
                counters.add(Outcome::Unavailable, accepted);
                if matches!(e, AppendError::Full | AppendError::HighWater) {
                    ing.health.set_unhealthy(format!("answering 503: {e}"));
                }
                return answer::refused(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    &e.to_string(),
                    Some(ing.retry_after),
                );
            }
        }
    }
    tracing::trace!(elapsed = ?started.elapsed(), events = items.len(), accepted, "http_server request");
    match framing {
        Framing::One if !bulk_path => answer::single(&items[0]),
        _ => answer::bulk(&items),
    }
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
