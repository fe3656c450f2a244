//! A test-side stand-in for the host's delivery loop, so a connector crate's tests can drive
//! a sink through the `Sink` trait the way the host does, without the host: batches in
//! flight, `Retry` outcomes and `Unavailable` batches resent, `TooLarge` batches halved (a
//! single record too large is dead-lettered), rejections collected as the DLQ would get them.
//! The host's own loop is tested end to end with the real binary.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use sluice_sdk::{views, Outcome, Record, Rejection, Sink, SinkError};

/// What the stand-in saw.
#[derive(Default)]
pub struct Driven {
    /// Records acknowledged, in the order their outcomes came back.
    pub delivered: Vec<Record>,
    /// Records the sink rejected, as the DLQ would receive them.
    pub rejected: Vec<(Record, Rejection)>,
    /// Records resent because of `Outcome::Retry`.
    pub retried: usize,
    /// The `retry_after` of every batch answered `Unavailable` (and resent).
    pub unavailable: Vec<Option<Duration>>,
    /// Batches halved because of `TooLarge`.
    pub too_large: usize,
}

impl Driven {
    /// Offsets of the delivered records.
    pub fn delivered_offsets(&self) -> Vec<i64> {
        self.delivered.iter().map(|r| r.origin.offset).collect()
    }
}

impl fmt::Debug for Driven {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Driven")
            .field("delivered", &self.delivered.len())
            .field("rejected", &self.rejected.len())
            .field("retried", &self.retried)
            .field("unavailable", &self.unavailable.len())
            .field("too_large", &self.too_large)
            .finish()
    }
}

/// Delivers `records` in batches of `batch`, `concurrency` batches in flight.
pub async fn drive(
    sink: &Arc<dyn Sink>,
    records: Vec<Record>,
    batch: usize,
    concurrency: usize,
) -> Driven {
    drive_with(sink, records, batch, concurrency, |_| {}).await
}

/// Like [`drive`], calling `before_send` with the number of sends so far before each one
/// (to inject faults at chosen requests). Panics on `Unauthorized`/`Fatal`, and when
/// delivery has not finished after two minutes.
pub async fn drive_with(
    sink: &Arc<dyn Sink>,
    records: Vec<Record>,
    batch: usize,
    concurrency: usize,
    mut before_send: impl FnMut(usize),
) -> Driven {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut queue: VecDeque<Vec<Record>> = records
        .chunks(batch.max(1))
        .map(<[Record]>::to_vec)
        .collect();
    let mut out = Driven::default();
    let mut sends = 0;
    while !queue.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "delivery did not finish: {out:?}"
        );
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..concurrency.max(1) {
            let Some(b) = queue.pop_front() else { break };
            before_send(sends);
            sends += 1;
            let s = sink.clone();
            set.spawn(async move {
                let r = s.send(&views(&b)).await;
                (b, r)
            });
        }
        let mut retry = Vec::new();
        let mut wait = Duration::ZERO;
        while let Some(joined) = set.join_next().await {
            let (b, result) = joined.expect("send task");
            match result {
                Ok(outcomes) => {
                    assert_eq!(outcomes.len(), b.len(), "one outcome per record");
                    for (r, o) in b.into_iter().zip(outcomes) {
                        match o {
                            Outcome::Delivered => out.delivered.push(r),
                            Outcome::Reject(rej) => out.rejected.push((r, rej)),
                            Outcome::Retry(_) | Outcome::Unavailable(_) => {
                                out.retried += 1;
                                retry.push(r);
                            }
                        }
                    }
                }
                Err(SinkError::Unavailable { retry_after, .. }) => {
                    out.unavailable.push(retry_after);
                    // A token wait instead of the real Retry-After: tests check the advice,
                    // not the clock.
                    wait = wait.max(Duration::from_millis(5));
                    queue.push_back(b);
                }
                Err(SinkError::TooLarge(m)) if b.len() == 1 => {
                    let r = b.into_iter().next().expect("one record");
                    out.rejected.push((
                        r,
                        Rejection {
                            kind: "too_large".into(),
                            message: m,
                        },
                    ));
                }
                Err(SinkError::TooLarge(_)) => {
                    out.too_large += 1;
                    let (l, r) = b.split_at(b.len() / 2);
                    queue.push_front(r.to_vec());
                    queue.push_front(l.to_vec());
                }
                Err(e) => panic!("unexpected sink error: {e}"),
            }
        }
        if !retry.is_empty() {
            queue.push_back(retry);
        }
        tokio::time::sleep(wait).await;
    }
    out
}
