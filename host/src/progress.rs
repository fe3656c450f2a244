//! A progress line per pipeline every few seconds while `sluice run` runs, from the host's
//! metrics: someone watching the terminal (the quickstart) sees records move and where they
//! went. A pipeline whose counts did not change since its last line stays quiet.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Time between two progress lines.
const EVERY: Duration = Duration::from_secs(5);

/// Logs `received`, `sent`, `filtered` and `dead_lettered` per pipeline every [`EVERY`] until
/// `stop`.
pub async fn run(metrics: Arc<Metrics>, pipelines: Vec<String>, stop: CancellationToken) {
    let handles: Vec<_> = pipelines
        .into_iter()
        .map(|name| (metrics.pipeline(&name), name, None))
        .collect();
    let mut handles = handles;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + EVERY, EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        for (m, name, last) in &mut handles {
            let (sent, dead_lettered) = metrics.totals(name);
            let now = (m.received.get(), sent, m.filtered.get(), dead_lettered);
            if *last == Some(now) {
                continue;
            }
            *last = Some(now);
            let (received, sent, filtered, dead_lettered) = now;
            tracing::info!(
                pipeline = %name,
                received,
                sent,
                filtered,
                dead_lettered,
                "progress"
            );
        }
    }
}
