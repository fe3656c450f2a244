//! The sink side of a pipeline: sends batches, applies per-record outcomes, retries with
//! backoff, splits batches the destination finds too large, and dead-letters what cannot be
//! delivered. A record leaves this module acknowledged only when the sink or the DLQ took it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use parking_lot::Mutex;
use sluice_sdk::{
    views, DeadLetter, DeadLetterWriter, ErrorContext, Origin, Outcome, Record, Sink, SinkError,
    Stage,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::tracker::Tracker;
use super::PipelineError;
use crate::config::RetryConfig;
use crate::metrics::PipelineMetrics;
use crate::status::PipelineStatus;
use sluice_sdk::retry::{delay, Backoff};

/// A batch on its way from the source to the sink.
pub struct Batch {
    pub records: Vec<Record>,
}

impl Batch {
    pub fn new(records: Vec<Record>) -> Self {
        Batch { records }
    }
}

/// What is left of a batch once its outcomes are applied.
struct Settled {
    /// Records to send again, one attempt more.
    retry: Vec<Record>,
    /// Records the destination could not take at all, with the first reason given.
    rest: Option<(Vec<Record>, String)>,
}

/// Everything the sink side needs, shared by the batches in flight.
pub struct Delivery {
    pub pipeline: Arc<str>,
    pub sink: Arc<dyn Sink>,
    pub dlq: Arc<dyn DeadLetterWriter>,
    pub tracker: Arc<Mutex<Tracker>>,
    pub metrics: PipelineMetrics,
    pub status: Arc<PipelineStatus>,
    pub retry: RetryConfig,
    /// Cancelled when a shutdown ran out of time: stop retrying, leave the rest unacknowledged.
    pub abort: CancellationToken,
}

/// Sleeps unless aborted; returns false when aborted.
async fn pause(d: Duration, abort: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = abort.cancelled() => false,
    }
}

impl Delivery {
    /// Receives batches until the channel closes, keeping up to `concurrency` in flight.
    pub async fn run(
        &self,
        mut rx: mpsc::Receiver<Batch>,
        concurrency: usize,
    ) -> Result<(), PipelineError> {
        let mut inflight = FuturesUnordered::new();
        let mut open = true;
        while open || !inflight.is_empty() {
            tokio::select! {
                biased;
                Some(res) = inflight.next(), if !inflight.is_empty() => res?,
                got = rx.recv(), if open && inflight.len() < concurrency => match got {
                    Some(batch) => inflight.push(self.deliver(batch)),
                    None => open = false,
                },
            }
        }
        Ok(())
    }

    /// Delivers one batch to the end: every record acknowledged, or an error (nothing of what
    /// is left is acknowledged), or an abort.
    pub async fn deliver(&self, batch: Batch) -> Result<(), PipelineError> {
        super::fault::maybe_panic(&self.pipeline, "delivery");
        // Work items: records that share an attempt count. Retries and halves of a split go
        // to the front so a batch finishes before the next one starts.
        let mut work: VecDeque<(Vec<Record>, u32)> = VecDeque::from([(batch.records, 0)]);
        while let Some((records, attempt)) = work.pop_front() {
            let mut unavailable = Backoff::new(self.retry.initial_backoff, self.retry.max_backoff);
            let mut records = records;
            loop {
                if self.abort.is_cancelled() {
                    return Ok(());
                }
                let started = Instant::now();
                let result = {
                    let views = views(&records);
                    let send = self.sink.send(&views);
                    // Past the shutdown timeout the send in flight is dropped (a plugin's is
                    // cancelled), whatever it waits for: its records stay unacknowledged.
                    tokio::select! {
                        r = send => r,
                        _ = self.abort.cancelled() => return Ok(()),
                    }
                };
                self.metrics
                    .request_duration
                    .observe(started.elapsed().as_secs_f64());
                match result {
                    Ok(outcomes) => {
                        if outcomes.len() != records.len() {
                            return Err(PipelineError::Sink(format!(
                                "sink answered {} outcomes for {} records (connector bug)",
                                outcomes.len(),
                                records.len()
                            )));
                        }
                        let settled = self.settle(records, outcomes, attempt).await?;
                        let Settled { retry, rest } = settled;
                        if !retry.is_empty() {
                            self.metrics.retried.inc_by(retry.len() as u64);
                        }
                        let Some((rest, reason)) = rest else {
                            self.status.set_delivery_problem(None);
                            if !retry.is_empty() {
                                let d = delay(
                                    self.retry.initial_backoff,
                                    self.retry.max_backoff,
                                    attempt,
                                );
                                if !pause(d, &self.abort).await {
                                    return Ok(());
                                }
                                work.push_front((retry, attempt + 1));
                            }
                            break;
                        };
                        // Part of the batch met an outage of the destination: like a whole
                        // batch that did, it is resent here with the outage's growing backoff,
                        // without counting an attempt, and the pipeline shows the problem.
                        // The record retries wait until it is through.
                        if unavailable.attempts() == 0 || unavailable.attempts() % 10 == 0 {
                            tracing::warn!(pipeline = %self.pipeline, error = %reason, records = rest.len(), "sink cannot take part of the batch; retrying");
                        }
                        self.status.set_delivery_problem(Some(reason));
                        self.metrics.retried.inc_by(rest.len() as u64);
                        if !retry.is_empty() {
                            work.push_front((retry, attempt + 1));
                        }
                        if !pause(unavailable.next_delay(), &self.abort).await {
                            return Ok(());
                        }
                        records = rest;
                    }
                    Err(SinkError::TooLarge(msg)) => {
                        if records.len() == 1 {
                            let ctx = self.context(Stage::Sink, "too_large", msg, attempt + 1);
                            self.dead_letter(records, &ctx).await?;
                        } else {
                            let tail = records.split_off(records.len() / 2);
                            work.push_front((tail, attempt));
                            work.push_front((records, attempt));
                        }
                        break;
                    }
                    Err(SinkError::Fatal(msg)) => return Err(PipelineError::Sink(msg)),
                    Err(e) => {
                        // The whole batch is still ours: wait and send it again, for as long
                        // as it takes. Never dead-lettered for an outage or a bad credential.
                        let (retry_after, slow) = match &e {
                            SinkError::Unavailable { retry_after, .. } => (*retry_after, false),
                            _ => (None, true),
                        };
                        if unavailable.attempts() == 0 || unavailable.attempts() % 10 == 0 {
                            tracing::warn!(pipeline = %self.pipeline, error = %e, records = records.len(), "sink cannot take the batch; retrying");
                        }
                        self.status.set_delivery_problem(Some(e.to_string()));
                        self.metrics.retried.inc_by(records.len() as u64);
                        let mut d = unavailable.next_delay();
                        if slow {
                            d = d.max(self.retry.max_backoff / 4);
                        }
                        if let Some(ra) = retry_after {
                            // A destination's advice is followed up to `max_backoff`: a
                            // `Retry-After: 86400` must not park the pipeline for a day.
                            let cap = self.retry.max_backoff;
                            if ra > cap {
                                let n = unavailable.attempts();
                                if n == 1 || n % 10 == 0 {
                                    tracing::warn!(pipeline = %self.pipeline, asked = %humantime::format_duration(ra), waiting = %humantime::format_duration(cap), "the sink asked to wait longer than retry.max_backoff; retrying after max_backoff");
                                }
                            }
                            d = d.max(ra.min(cap));
                        }
                        if !pause(d, &self.abort).await {
                            return Ok(());
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Applies outcomes: acknowledges delivered records, dead-letters rejected ones and those
    /// out of attempts, and returns the ones to retry and the ones the destination could not
    /// take at all (resent without counting an attempt).
    async fn settle(
        &self,
        records: Vec<Record>,
        outcomes: Vec<Outcome>,
        attempt: u32,
    ) -> Result<Settled, PipelineError> {
        // The usual answer: acknowledged in place, no record moved.
        if outcomes.iter().all(|o| matches!(o, Outcome::Delivered)) {
            self.metrics.sent.inc_by(records.len() as u64);
            let mut t = self.tracker.lock();
            for r in &records {
                t.ack(&r.origin);
            }
            return Ok(Settled {
                retry: Vec::new(),
                rest: None,
            });
        }
        let mut delivered: Vec<Origin> = Vec::with_capacity(records.len());
        let mut retry = Vec::new();
        let mut unavailable = Vec::new();
        let mut reason = None;
        let mut dead: Vec<(Record, ErrorContext)> = Vec::new();
        for (r, o) in records.into_iter().zip(outcomes) {
            match o {
                Outcome::Delivered => delivered.push(r.origin),
                Outcome::Retry(reason) => {
                    if attempt + 1 >= self.retry.max_attempts {
                        let msg = format!("gave up after {} attempts: {reason}", attempt + 1);
                        dead.push((
                            r,
                            self.context(Stage::Sink, "retries_exhausted", msg, attempt + 1),
                        ));
                    } else {
                        retry.push(r);
                    }
                }
                Outcome::Reject(rej) => {
                    dead.push((
                        r,
                        self.context(Stage::Sink, rej.kind, rej.message, attempt + 1),
                    ));
                }
                Outcome::Unavailable(why) => {
                    reason.get_or_insert(why);
                    unavailable.push(r);
                }
            }
        }
        self.metrics.sent.inc_by(delivered.len() as u64);
        if !dead.is_empty() {
            self.write_dead(&dead).await?;
            let mut t = self.tracker.lock();
            for (r, _) in &dead {
                t.ack(&r.origin);
            }
        }
        let mut t = self.tracker.lock();
        for o in &delivered {
            t.ack(o);
        }
        Ok(Settled {
            retry,
            rest: reason.map(|why| (unavailable, why)),
        })
    }

    pub fn context(
        &self,
        stage: Stage,
        kind: impl Into<String>,
        message: impl Into<String>,
        attempts: u32,
    ) -> ErrorContext {
        ErrorContext {
            pipeline: self.pipeline.clone(),
            stage,
            kind: kind.into(),
            message: message.into(),
            attempts,
        }
    }

    async fn dead_letter(
        &self,
        records: Vec<Record>,
        ctx: &ErrorContext,
    ) -> Result<(), PipelineError> {
        let dead: Vec<(Record, ErrorContext)> =
            records.into_iter().map(|r| (r, ctx.clone())).collect();
        self.write_dead(&dead).await?;
        let mut t = self.tracker.lock();
        for (r, _) in &dead {
            t.ack(&r.origin);
        }
        Ok(())
    }

    /// Writes to the DLQ; on failure the pipeline stops and nothing is acknowledged past
    /// these records.
    pub async fn write_dead(&self, dead: &[(Record, ErrorContext)]) -> Result<(), PipelineError> {
        let letters: Vec<DeadLetter<'_>> = dead
            .iter()
            .map(|(record, error)| DeadLetter { record, error })
            .collect();
        let written = tokio::select! {
            r = self.dlq.write(&letters) => r,
            _ = self.abort.cancelled() => return Err(PipelineError::Aborted),
        };
        match written {
            Ok(()) => {
                self.metrics.dead_lettered.inc_by(dead.len() as u64);
                for (r, e) in dead.iter().take(3) {
                    tracing::warn!(pipeline = %self.pipeline, stage = %e.stage, kind = %e.kind, topic = %r.origin.stream, partition = r.origin.partition, offset = r.origin.offset, "record dead-lettered: {}", e.summary());
                }
                Ok(())
            }
            Err(e) => {
                let first = &dead[0].0.origin;
                Err(PipelineError::DeadLetter(format!(
                    "{} record(s) could go neither to the sink nor to the dead-letter queue (first: {} partition {} offset {}; reason: {}): {e}",
                    dead.len(),
                    first.stream,
                    first.partition,
                    first.offset,
                    dead[0].1.summary()
                )))
            }
        }
    }
}
