//! The sink side of a pipeline: sends batches, applies per-record outcomes, retries with
//! backoff, splits batches the destination finds too large, and dead-letters what cannot be
//! delivered. A record leaves this module acknowledged only when the sink or the DLQ took it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::DefaultDirectRateLimiter;
use parking_lot::Mutex;
use sluice_sdk::{views, ErrorContext, Origin, Outcome, Record, Sink, SinkError, Stage};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::batch::Batch;
use super::dead::DeadLetters;
use super::fallback::Fallback;
use super::tracker::Tracker;
use super::PipelineError;
use crate::config::RetryConfig;
use crate::metrics::SinkMetrics;
use crate::status::SinkStatus;
use sluice_sdk::retry::{delay, Backoff};

/// What is left of a batch once its outcomes are applied.
struct Settled {
    /// Records to send again, one attempt more.
    retry: Vec<Record>,
    /// Records the destination could not take at all, with the first reason given.
    rest: Option<(Vec<Record>, String)>,
}

/// Everything one sink's side needs, shared by its batches in flight.
pub struct Delivery {
    pub pipeline: Arc<str>,
    pub sink: Arc<dyn Sink>,
    pub dead: DeadLetters,
    pub tracker: Arc<Mutex<Tracker>>,
    pub metrics: SinkMetrics,
    pub status: Arc<SinkStatus>,
    pub retry: RetryConfig,
    /// The sink's own `rate_limit`, with its burst.
    pub limiter: Option<(DefaultDirectRateLimiter, u32)>,
    pub fallback: Option<Fallback>,
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
    ///
    /// Each batch in flight is a task of its own, so the sink's CPU work (encoding,
    /// compression) for two batches runs on two cores, not by turns on one. When this returns
    /// (a failure, or the task is aborted), the batches still in flight are cancelled with it.
    pub async fn run(
        self: Arc<Self>,
        mut rx: mpsc::Receiver<Batch>,
        concurrency: usize,
    ) -> Result<(), PipelineError> {
        let exclusive = concurrency > 1 && self.sink.orders_partitions();
        let mut inflight: JoinSet<(Vec<PartitionKey>, Result<(), PipelineError>)> = JoinSet::new();
        // Source partitions of the batches in flight, when they must not overlap.
        let mut busy: HashMap<PartitionKey, usize> = HashMap::new();
        // A batch waiting for one of its partitions, and with it every batch behind it.
        let mut held: Option<(Batch, Vec<PartitionKey>)> = None;
        let mut open = true;
        loop {
            if let Some((batch, keys)) = held.take() {
                if inflight.len() < concurrency && keys.iter().all(|k| !busy.contains_key(k)) {
                    self.start(&mut inflight, batch, keys, &mut busy);
                } else {
                    held = Some((batch, keys));
                }
            }
            if !open && inflight.is_empty() && held.is_none() {
                return Ok(());
            }
            tokio::select! {
                biased;
                Some(done) = inflight.join_next(), if !inflight.is_empty() => {
                    let (keys, res) = match done {
                        Ok(done) => done,
                        // A panic in a delivery is the delivery task's panic, as if it had
                        // happened here; the batches still in flight are cancelled with it.
                        Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
                        Err(join) => return Err(PipelineError::Sink(format!("delivery task failed: {join}"))),
                    };
                    if let Err(e) = res {
                        // Nothing in flight acknowledges anything once this has returned.
                        inflight.shutdown().await;
                        return Err(e);
                    }
                    for k in keys {
                        if let Some(n) = busy.get_mut(&k) {
                            *n -= 1;
                            if *n == 0 {
                                busy.remove(&k);
                            }
                        }
                    }
                }
                got = rx.recv(), if open && held.is_none() && inflight.len() < concurrency => match got {
                    Some(batch) => {
                        let keys = if exclusive { partitions(&batch) } else { Vec::new() };
                        if keys.iter().any(|k| busy.contains_key(k)) {
                            held = Some((batch, keys));
                        } else {
                            self.start(&mut inflight, batch, keys, &mut busy);
                        }
                    }
                    None => open = false,
                },
            }
        }
    }

    /// Marks a batch's partitions busy and delivers it on a task of its own, which gives them
    /// back.
    fn start(
        self: &Arc<Self>,
        inflight: &mut JoinSet<(Vec<PartitionKey>, Result<(), PipelineError>)>,
        batch: Batch,
        keys: Vec<PartitionKey>,
        busy: &mut HashMap<PartitionKey, usize>,
    ) {
        for k in &keys {
            *busy.entry(k.clone()).or_default() += 1;
        }
        let this = self.clone();
        inflight.spawn(async move {
            let res = this.deliver(batch).await;
            (keys, res)
        });
    }

    /// Delivers one batch to the end: every record acknowledged, or an error (nothing of what
    /// is left is acknowledged), or an abort.
    pub async fn deliver(&self, batch: Batch) -> Result<(), PipelineError> {
        super::fault::maybe_panic(&self.pipeline, "delivery");
        // Work items: records that share an attempt count. Retries and halves of a split go
        // to the front so a batch finishes before the next one starts.
        let mut work: VecDeque<(Batch, u32)> = VecDeque::from([(batch, 0)]);
        while let Some((records, attempt)) = work.pop_front() {
            let mut unavailable = Backoff::new(self.retry.initial_backoff, self.retry.max_backoff);
            let mut records = records;
            loop {
                if self.abort.is_cancelled() {
                    return Ok(());
                }
                if let Some(fb) = &self.fallback {
                    if fb.active() && !fb.probe_due() {
                        self.to_fallback(fb, records).await?;
                        break;
                    }
                }
                if !self.rate_limit(records.len()).await {
                    return Ok(());
                }
                let started = Instant::now();
                let result = {
                    let views = records.views();
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
                            self.status.set_problem(None);
                            if self.fallback.as_ref().is_some_and(|f| f.recovered()) {
                                tracing::info!(pipeline = %self.pipeline, sink = %self.status.name, "sink answers again; its batches go to it, no longer to its fallback");
                                self.status.set_fallback(false);
                            }
                            if !retry.is_empty() {
                                let d = delay(
                                    self.retry.initial_backoff,
                                    self.retry.max_backoff,
                                    attempt,
                                );
                                if !pause(d, &self.abort).await {
                                    return Ok(());
                                }
                                work.push_front((Batch::from(retry), attempt + 1));
                            }
                            break;
                        };
                        // Part of the batch met an outage of the destination: like a whole
                        // batch that did, it is resent here with the outage's growing backoff,
                        // without counting an attempt, and the pipeline shows the problem.
                        // The record retries wait until it is through.
                        if unavailable.attempts() == 0 || unavailable.attempts().is_multiple_of(10)
                        {
                            tracing::warn!(pipeline = %self.pipeline, sink = %self.status.name, error = %reason, records = rest.len(), "sink cannot take part of the batch; retrying");
                        }
                        self.status.set_problem(Some(reason));
                        if !retry.is_empty() {
                            work.push_front((Batch::from(retry), attempt + 1));
                        }
                        let rest = Batch::from(rest);
                        if self.fallback_now() {
                            let fb = self
                                .fallback
                                .as_ref()
                                .ok_or_else(|| PipelineError::Sink("fallback vanished".into()))?;
                            self.to_fallback(fb, rest).await?;
                            break;
                        }
                        self.metrics.retried.inc_by(rest.len() as u64);
                        if !pause(self.outage_delay(unavailable.next_delay()), &self.abort).await {
                            return Ok(());
                        }
                        records = rest;
                    }
                    Err(SinkError::TooLarge(msg)) => {
                        if records.len() == 1 {
                            let ctx = self
                                .dead
                                .context(Stage::Sink, "too_large", msg, attempt + 1);
                            self.dead_letter(records, &ctx).await?;
                        } else {
                            let half = records.len() / 2;
                            let (head, tail) = records.split_off(half);
                            work.push_front((tail, attempt));
                            work.push_front((head, attempt));
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
                        if unavailable.attempts() == 0 || unavailable.attempts().is_multiple_of(10)
                        {
                            tracing::warn!(pipeline = %self.pipeline, sink = %self.status.name, error = %e, records = records.len(), "sink cannot take the batch; retrying");
                        }
                        self.status.set_problem(Some(e.to_string()));
                        if self.fallback_now() {
                            let fb = self
                                .fallback
                                .as_ref()
                                .ok_or_else(|| PipelineError::Sink("fallback vanished".into()))?;
                            self.to_fallback(fb, records).await?;
                            break;
                        }
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
                                if n == 1 || n.is_multiple_of(10) {
                                    tracing::warn!(pipeline = %self.pipeline, asked = %humantime::format_duration(ra), waiting = %humantime::format_duration(cap), "the sink asked to wait longer than retry.max_backoff; retrying after max_backoff");
                                }
                            }
                            d = d.max(ra.min(cap));
                        }
                        if !pause(self.outage_delay(d), &self.abort).await {
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
        records: Batch,
        outcomes: Vec<Outcome>,
        attempt: u32,
    ) -> Result<Settled, PipelineError> {
        // The usual answer: acknowledged in place, no record moved.
        if outcomes.iter().all(|o| matches!(o, Outcome::Delivered)) {
            self.metrics.sent.inc_by(records.len() as u64);
            let mut t = self.tracker.lock();
            for r in records.iter() {
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
        for (r, o) in records.into_records().into_iter().zip(outcomes) {
            match o {
                Outcome::Delivered => delivered.push(r.origin),
                Outcome::Retry(reason) => {
                    if attempt + 1 >= self.retry.max_attempts {
                        let msg = format!("gave up after {} attempts: {reason}", attempt + 1);
                        dead.push((
                            r,
                            self.dead
                                .context(Stage::Sink, "retries_exhausted", msg, attempt + 1),
                        ));
                    } else {
                        retry.push(r);
                    }
                }
                Outcome::Reject(rej) => {
                    dead.push((
                        r,
                        self.dead
                            .context(Stage::Sink, rej.kind, rej.message, attempt + 1),
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
            self.dead.write(&dead).await?;
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

    async fn dead_letter(&self, records: Batch, ctx: &ErrorContext) -> Result<(), PipelineError> {
        let dead: Vec<(Record, ErrorContext)> = records
            .into_records()
            .into_iter()
            .map(|r| (r, ctx.clone()))
            .collect();
        self.dead.write(&dead).await?;
        let mut t = self.tracker.lock();
        for (r, _) in &dead {
            t.ack(&r.origin);
        }
        Ok(())
    }

    /// Waits for the sink's own rate limit, a burst at a time; false if aborted.
    async fn rate_limit(&self, n: usize) -> bool {
        let Some((l, burst)) = &self.limiter else {
            return true;
        };
        let mut left = n;
        while left > 0 {
            let chunk = left.min(*burst as usize);
            left -= chunk;
            let Some(c) = std::num::NonZeroU32::new(chunk as u32) else {
                break;
            };
            tokio::select! {
                r = l.until_n_ready(c) => if r.is_err() { break },
                _ = self.abort.cancelled() => return false,
            }
        }
        true
    }

    /// The sink could not take a batch: whether its fallback takes it now.
    fn fallback_now(&self) -> bool {
        let Some(fb) = &self.fallback else {
            return false;
        };
        fb.unavailable();
        if !fb.active() {
            return false;
        }
        self.status.set_fallback(true);
        true
    }

    /// An outage's wait, cut short when the fallback takes over sooner.
    fn outage_delay(&self, d: Duration) -> Duration {
        match self.fallback.as_ref().and_then(Fallback::remaining) {
            Some(left) if !left.is_zero() => d.min(left),
            _ => d,
        }
    }

    /// Hands records to the fallback until it has taken or refused each: taken ones are done
    /// for this sink (counted in `sluice_records_fallback_total`), refused ones dead-lettered.
    /// Each carries the `sluice.fallback_of` header.
    async fn to_fallback(&self, fb: &Fallback, records: Batch) -> Result<(), PipelineError> {
        let mut records = records.into_records();
        for r in &mut records {
            fb.mark(r);
        }
        let mut work: VecDeque<Vec<Record>> = VecDeque::from([records]);
        let mut backoff = Backoff::new(self.retry.initial_backoff, self.retry.max_backoff);
        while let Some(records) = work.pop_front() {
            let result = {
                let views = views(&records);
                tokio::select! {
                    r = fb.sink.send(&views) => r,
                    _ = self.abort.cancelled() => return Ok(()),
                }
            };
            match result {
                Ok(outcomes) if outcomes.len() == records.len() => {
                    let mut again = Vec::new();
                    let mut dead = Vec::new();
                    let mut taken = 0u64;
                    {
                        let mut t = self.tracker.lock();
                        for (r, o) in records.into_iter().zip(outcomes) {
                            match o {
                                Outcome::Delivered => {
                                    t.ack(&r.origin);
                                    taken += 1;
                                }
                                Outcome::Reject(rej) => {
                                    let msg = format!("the fallback refused it: {}", rej.message);
                                    dead.push((
                                        r,
                                        self.dead.context(Stage::Sink, rej.kind, msg, 1),
                                    ));
                                }
                                Outcome::Retry(_) | Outcome::Unavailable(_) => again.push(r),
                            }
                        }
                    }
                    self.metrics.fallback.inc_by(taken);
                    if !dead.is_empty() {
                        self.dead.write(&dead).await?;
                        let mut t = self.tracker.lock();
                        for (r, _) in &dead {
                            t.ack(&r.origin);
                        }
                    }
                    if !again.is_empty() {
                        work.push_front(again);
                        if !pause(backoff.next_delay(), &self.abort).await {
                            return Ok(());
                        }
                    }
                }
                Ok(outcomes) => {
                    return Err(PipelineError::Sink(format!(
                        "fallback answered {} outcomes for {} records (connector bug)",
                        outcomes.len(),
                        records.len()
                    )))
                }
                Err(SinkError::Fatal(msg)) => {
                    return Err(PipelineError::Sink(format!("fallback: {msg}")))
                }
                Err(SinkError::TooLarge(msg)) if records.len() == 1 => {
                    let ctx = self.dead.context(Stage::Sink, "too_large", msg, 1);
                    self.dead_letter(Batch::from(records), &ctx).await?;
                }
                Err(SinkError::TooLarge(_)) => {
                    let mut records = records;
                    let tail = records.split_off(records.len() / 2);
                    work.push_front(tail);
                    work.push_front(records);
                }
                Err(e) => {
                    if backoff.attempts().is_multiple_of(10) {
                        tracing::warn!(pipeline = %self.pipeline, sink = %self.status.name, error = %e, "the fallback cannot take the batch either; retrying");
                    }
                    work.push_front(records);
                    if !pause(backoff.next_delay(), &self.abort).await {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }
}

/// A source partition: its stream and number.
type PartitionKey = (Arc<str>, i32);

/// The distinct source partitions of a batch's records.
fn partitions(records: &Batch) -> Vec<PartitionKey> {
    let mut keys: Vec<PartitionKey> = Vec::new();
    for r in records.iter() {
        let o = &r.origin;
        if !keys
            .iter()
            .any(|(s, p)| *p == o.partition && **s == *o.stream)
        {
            keys.push((o.stream.clone(), o.partition));
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::status::PipelineStatus;
    use sluice_sdk::{DeadLetter, DeadLetterError, DeadLetterWriter, RecordRef};
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    /// A sink whose `send` holds its thread for a while, as encoding and compressing a large
    /// batch does, and counts how many sends run at the same moment.
    #[derive(Default)]
    struct Busy {
        running: AtomicUsize,
        most: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Sink for Busy {
        async fn send(&self, records: &[RecordRef<'_>]) -> Result<Vec<Outcome>, SinkError> {
            let now = self.running.fetch_add(1, SeqCst) + 1;
            self.most.fetch_max(now, SeqCst);
            std::thread::sleep(Duration::from_millis(150));
            self.running.fetch_sub(1, SeqCst);
            Ok(vec![Outcome::Delivered; records.len()])
        }
    }

    struct NoLetters;

    #[async_trait::async_trait]
    impl DeadLetterWriter for NoLetters {
        async fn write(&self, _: &[DeadLetter<'_>]) -> Result<(), DeadLetterError> {
            panic!("nothing is dead-lettered here")
        }
    }

    /// Delivers six one-record batches (partitions 0-5) with `concurrency`; returns how many
    /// sends ran at once and the committable positions.
    async fn deliver_six(concurrency: usize) -> (usize, Vec<Origin>) {
        let sink = Arc::new(Busy::default());
        let metrics = Metrics::new();
        let status = PipelineStatus::new("p");
        let tracker = Arc::new(Mutex::new(Tracker::default()));
        let delivery = Arc::new(Delivery {
            pipeline: "p".into(),
            sink: sink.clone(),
            dead: DeadLetters {
                pipeline: "p".into(),
                sink: None,
                dlq: Arc::new(NoLetters),
                counter: metrics.sink("p", "default").dead_lettered.clone(),
                abort: CancellationToken::new(),
                integrity: None,
                replayed: None,
            },
            tracker: tracker.clone(),
            metrics: metrics.sink("p", "default"),
            status: status.sink("default", false),
            retry: RetryConfig::default(),
            limiter: None,
            fallback: None,
            abort: CancellationToken::new(),
        });
        let (tx, rx) = mpsc::channel(8);
        for partition in 0..6 {
            let record = Record::new(b"{}".to_vec(), Origin::new("t".into(), partition, 7));
            tracker
                .lock()
                .register(&record.origin)
                .expect("a new partition");
            tx.send(Batch::from(vec![record])).await.expect("queued");
        }
        drop(tx);
        delivery.run(rx, concurrency).await.expect("delivered");
        let mut commits = tracker.lock().take_commits();
        commits.sort_by_key(|o| o.partition);
        (sink.most.load(SeqCst), commits)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 3)]
    async fn batches_in_flight_are_worked_on_at_the_same_time() {
        // A send that does not yield (CPU work) must not hold up the other batch in flight:
        // each runs on a task of its own, so on a worker of its own.
        let (most, commits) = deliver_six(2).await;
        assert_eq!(
            most, 2,
            "two batches in flight were sent at the same moment"
        );
        let committed: Vec<_> = commits.iter().map(|o| (o.partition, o.offset)).collect();
        assert_eq!(committed, (0..6).map(|p| (p, 7)).collect::<Vec<_>>());
        let (most, commits) = deliver_six(1).await;
        assert_eq!(most, 1, "concurrency 1 sends one batch at a time");
        assert_eq!(commits.len(), 6);
    }
}
