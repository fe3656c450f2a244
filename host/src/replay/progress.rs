//! Progress of a replay on stderr: a bar with counts and rate when stderr is a terminal,
//! a plain line every few seconds otherwise, and the summary at the end. Counts come from the
//! replay's own metrics (received, sent, dead-lettered, filtered).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Time between two plain progress lines.
const LINE_EVERY: Duration = Duration::from_secs(5);
/// Time between two redraws of the bar.
const BAR_EVERY: Duration = Duration::from_millis(200);

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
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let bar = indicatif::ProgressBar::with_draw_target(
            total,
            indicatif::ProgressDrawTarget::stderr(),
        );
        let template = match total {
            Some(_) => "{elapsed_precise} [{wide_bar}] {pos}/{len} read ({per_sec}) {msg}",
            // No total to show a share of (a file range is in bytes, not records).
            None => "{elapsed_precise} {spinner} {pos} read ({per_sec}) {msg}",
        };
        if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        loop {
            let c = Counts::of(&metrics, &pipeline);
            bar.set_position(c.received);
            bar.set_message(format!(
                "sent {}, dead-lettered {}, filtered {}",
                c.sent, c.dead_lettered, c.filtered
            ));
            tokio::select! {
                _ = tokio::time::sleep(BAR_EVERY) => {}
                _ = stop.cancelled() => break,
            }
        }
        bar.finish_and_clear();
        return;
    }
    let mut last = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(LINE_EVERY) => {}
            _ = stop.cancelled() => return,
        }
        let c = Counts::of(&metrics, &pipeline);
        if last == Some(c) {
            continue;
        }
        last = Some(c);
        let secs = started.elapsed().as_secs_f64().max(0.001);
        let of = total.map(|t| format!(" of {t}")).unwrap_or_default();
        eprintln!(
            "replay {pipeline}: {}{of} ({:.0} records/s)",
            c.text(),
            c.received as f64 / secs
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
