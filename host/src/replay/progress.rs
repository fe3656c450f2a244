//! Progress of a replay on stderr (see [`crate::progress_bar`]) and the summary at the end. Counts come from the
//! replay's own metrics (received, sent, dead-lettered, filtered).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::progress_bar::{Progress, TICK};

/// A replay's counts at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub received: u64,
    pub sent: u64,
    pub dead_lettered: u64,
    pub filtered: u64,
}

impl Counts {
    /// The counts of `pipeline` in `metrics` (sink and pipeline dead letters together).
    pub fn of(metrics: &Metrics, pipeline: &str) -> Counts {
        let m = metrics.pipeline(pipeline);
        let (sent, dead_lettered) = metrics.totals(pipeline);
        Counts {
            received: m.received.get(),
            sent,
            dead_lettered: dead_lettered + m.dead_lettered.get(),
            filtered: m.filtered.get(),
        }
    }

    fn text(&self) -> String {
        format!(
            "read {}, sent {}, dead-lettered {}, filtered {}",
            self.received, self.sent, self.dead_lettered, self.filtered
        )
    }
}

/// Shows progress until `stop`; `total` (records expected, when known) sizes the bar.
pub async fn run(
    metrics: Arc<Metrics>,
    pipeline: String,
    total: Option<u64>,
    stop: CancellationToken,
) {
    let started = Instant::now();
    let mut bar = Progress::new(format!("replay {pipeline}"), total);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = stop.cancelled() => return,
        }
        let c = Counts::of(&metrics, &pipeline);
        let secs = started.elapsed().as_secs_f64().max(0.001);
        let of = total.map(|t| format!(" of {t}")).unwrap_or_default();
        bar.update(
            c.received,
            None,
            format!(
                "{}{of} ({:.0} records/s)",
                c.text(),
                c.received as f64 / secs
            ),
        );
    }
}

/// The last line of a replay.
pub fn summary(pipeline: &str, c: Counts, took: Duration) -> String {
    let secs = took.as_secs_f64().max(0.001);
    format!(
        "replay {pipeline} done in {:.1}s: {} ({:.0} records/s)\n",
        secs,
        c.text(),
        c.received as f64 / secs
    )
}
