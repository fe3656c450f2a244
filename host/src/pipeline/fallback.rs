//! A sink's fallback: once the sink has been unavailable (an outage, refused credentials) for
//! longer than `after`, its batches go to the fallback sink, each record marked with the
//! header `sluice.fallback_of: <sink>`. What the fallback takes counts as done for the sink,
//! so the commit moves. The sink is tried again with a batch now and then; the first batch it
//! takes ends the fallback, and new batches go to it again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sluice_sdk::{Header, Record, Sink};

use crate::transform::mark::with_field;

/// The header marking a record its sink's fallback took.
pub const FALLBACK_OF: &str = "sluice.fallback_of";

/// How often a sink on fallback is tried again, at most.
const PROBE_EVERY: Duration = Duration::from_secs(5);

struct State {
    /// When the sink's current outage began.
    outage: Option<Instant>,
    last_probe: Option<Instant>,
}

pub struct Fallback {
    pub sink: Arc<dyn Sink>,
    pub after: Duration,
    /// Also mark JSON object values with the field `sluice.fallback_of` (for a fallback
    /// that keeps values only, as the `file` sink does).
    pub mark_values: bool,
    marker: Header,
    state: Mutex<State>,
}

impl Fallback {
    pub fn new(sink: Arc<dyn Sink>, after: Duration, of: &str, mark_values: bool) -> Self {
        Fallback {
            sink,
            after,
            mark_values,
            marker: Header::new(FALLBACK_OF, of.to_string()),
            state: Mutex::new(State {
                outage: None,
                last_probe: None,
            }),
        }
    }

    /// The sink could not take a batch: starts the outage clock if it is not running.
    pub fn unavailable(&self) {
        let mut s = self.state.lock();
        if s.outage.is_none() {
            s.outage = Some(Instant::now());
        }
    }

    /// The sink took a batch: the outage is over. True when the fallback was in use.
    pub fn recovered(&self) -> bool {
        let mut s = self.state.lock();
        let was = s.outage.is_some_and(|t| t.elapsed() >= self.after);
        s.outage = None;
        s.last_probe = None;
        was
    }

    /// Whether batches go to the fallback now.
    pub fn active(&self) -> bool {
        self.state
            .lock()
            .outage
            .is_some_and(|t| t.elapsed() >= self.after)
    }

    /// How long until the fallback takes over, while the outage clock runs.
    pub fn remaining(&self) -> Option<Duration> {
        let s = self.state.lock();
        s.outage.map(|t| self.after.saturating_sub(t.elapsed()))
    }

    /// While active: whether this batch should try the sink first (at most every few
    /// seconds), to notice that it answers again.
    pub fn probe_due(&self) -> bool {
        let mut s = self.state.lock();
        let due = s
            .last_probe
            .is_none_or(|t| t.elapsed() >= PROBE_EVERY.min(self.after));
        if due {
            s.last_probe = Some(Instant::now());
        }
        due
    }

    /// Marks a record the fallback takes: the header, and the field when asked.
    pub fn mark(&self, r: &mut Record) {
        r.headers.push(self.marker.clone());
        if self.mark_values {
            let of = serde_json::Value::String(self.of().to_string());
            if let Some(v) = with_field(&r.value, FALLBACK_OF, of) {
                r.value = v;
            }
        }
    }

    fn of(&self) -> &str {
        self.marker
            .value
            .as_deref()
            .and_then(|v| std::str::from_utf8(v).ok())
            .unwrap_or_default()
    }
}
