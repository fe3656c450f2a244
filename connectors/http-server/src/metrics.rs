//! `sluice_http_events_total{pipeline,tenant,outcome}`: events by what was answered.
//!
//! The counter lives in the process-wide Prometheus registry, which the host's `/metrics`
//! exposes next to its own. Its labels are bounded: `tenant` is one of the configured tenants
//! (or `unknown` for requests without a valid token, `anonymous` without `auth`), `outcome`
//! one of [`Outcome`].

use std::sync::OnceLock;

use prometheus::{IntCounter, IntCounterVec, Opts};

/// What became of an event (or of a request refused before its events were read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    Invalid,
    Forbidden,
    Unauthorized,
    TooLarge,
    RateLimited,
    Unavailable,
}

const OUTCOMES: [(Outcome, &str); 7] = [
    (Outcome::Accepted, "accepted"),
    (Outcome::Invalid, "invalid"),
    (Outcome::Forbidden, "forbidden"),
    (Outcome::Unauthorized, "unauthorized"),
    (Outcome::TooLarge, "too_large"),
    (Outcome::RateLimited, "rate_limited"),
    (Outcome::Unavailable, "unavailable"),
];

fn family() -> &'static IntCounterVec {
    static FAMILY: OnceLock<IntCounterVec> = OnceLock::new();
    FAMILY.get_or_init(|| {
        let c = IntCounterVec::new(
            Opts::new(
                "sluice_http_events_total",
                "Events posted to an http_server source, by tenant and by what was answered.",
            ),
            &["pipeline", "tenant", "outcome"],
        )
        .expect("valid metric definition");
        // Registered once per process; a second registration can only be this same family.
        let _ = prometheus::default_registry().register(Box::new(c.clone()));
        c
    })
}

/// The counters of one tenant, resolved once.
#[derive(Clone)]
pub struct TenantCounters([IntCounter; 7]);

impl TenantCounters {
    pub fn new(pipeline: &str, tenant: &str) -> Self {
        let f = family();
        TenantCounters(OUTCOMES.map(|(_, name)| f.with_label_values(&[pipeline, tenant, name])))
    }

    pub fn add(&self, outcome: Outcome, n: u64) {
        if n > 0 {
            self.0[outcome as usize].inc_by(n);
        }
    }
}
