//! One run of a pipeline: open the connectors, move records from the source through the
//! transforms into batches, hand batches to delivery, and commit positions as records finish.
//!
//! Ordering: records are registered with the tracker in source order before anything can
//! acknowledge them, so a commit never jumps over a record still in flight.

use std::future::Future;
use std::num::NonZeroU32;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use parking_lot::Mutex;
use sluice_sdk::{
    ErrorContext, Polled, Record, SinkContext, Source, SourceContext, SourceError, Stage,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::batch::Batch;
use super::dead::DeadLetters;
use super::delivery::Delivery;
use super::fallback::Fallback;
use super::fanout::{Lane, Lanes};
use super::fault::{maybe_panic, panic_text};
use super::tracker::Tracker;
use super::{HostEnv, Input, PipelineDef, PipelineError};
use crate::config::RateLimitConfig;
use crate::integrity::chain::{Book, DigestLog};
use crate::integrity::copy::DigestCopy;
use crate::metrics::PipelineMetrics;
use crate::offsets::OffsetStore;
use crate::status::{PipelineStatus, State};
use crate::transform::Verdict;
use sluice_sdk::retry::Backoff;

/// How a run ended without error.
#[derive(Debug, PartialEq, Eq)]
pub enum RunEnd {
    Finished,
    Stopped,
}

/// Batches queued between the source loop and each sink's delivery. With the batch size and
/// the sink's concurrency this bounds the memory a fast source can fill while a sink is slow.
const QUEUE_BATCHES: usize = 2;

/// How long a closing step (the last commit, closing a connector, the end of delivery) may
/// still take once the shutdown timeout has passed.
const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// Runs a closing step to its end, unless the shutdown has run out of time (`abort`) and
/// the step is still not done [`CLOSE_GRACE`] later: then `None`, and the step is dropped.
async fn bounded<T>(abort: &CancellationToken, step: impl Future<Output = T>) -> Option<T> {
    tokio::select! {
        r = step => Some(r),
        _ = async {
            abort.cancelled().await;
            tokio::time::sleep(CLOSE_GRACE).await;
        } => None,
    }
}

/// Waits, or returns false if the host is stopping.
async fn pause(d: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = stop.cancelled() => false,
    }
}

/// Retries a connector's `open` until it works, the error is fatal, or the host stops.
macro_rules! open_with_retry {
    ($what:expr, $open:expr, $health:expr, $stop:expr, $fatal:path, $is_retryable:expr) => {{
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        loop {
            match $open.await {
                Ok(()) => break Ok(true),
                Err(e) if $is_retryable(&e) => {
                    tracing::warn!(pipeline = %$what.0, error = %e, "cannot open {}; retrying", $what.1);
                    $health.set_unhealthy(e.to_string());
                    if !pause(backoff.next_delay(), $stop).await {
                        break Ok(false);
                    }
                }
                Err(e) => break Err($fatal(e.to_string())),
            }
        }
    }};
}

struct SourceSide<'a> {
    def: &'a PipelineDef,
    status: &'a PipelineStatus,
    metrics: &'a PipelineMetrics,
    source: Box<dyn Source>,
    store: OffsetStore,
    tracker: Arc<Mutex<Tracker>>,
    /// Letters of the stages before the sinks (decoding, transforms, unrouted records).
    dead: Arc<DeadLetters>,
    last_flush: Instant,
    /// The integrity chains and their digest log, when a sink has `integrity:`.
    integrity: Option<(Arc<Mutex<Book>>, DigestLog)>,
    /// The digest log's second copy (`integrity.digests_to`).
    digest_copy: Option<DigestCopy>,
    stop: CancellationToken,
}

impl SourceSide<'_> {
    /// Passes newly committable positions to the source and saves what it returns; flushes
    /// the store at most every `commit_interval` unless `force`.
    async fn commit(&mut self, force: bool) -> Result<(), PipelineError> {
        let through = self.tracker.lock().take_commits();
        if let Some((book, _)) = &self.integrity {
            book.lock().advance(&through);
        }
        let due = force || self.last_flush.elapsed() >= self.def.cfg.commit_interval;
        // A source that keeps positions upstream (a Kafka group) commits the chains' state
        // with them, atomically: a restart anywhere resumes both at the same record.
        if let Some((book, _)) = &self.integrity {
            if !through.is_empty() && self.source.keeps_notes() {
                let b = book.lock();
                let notes = through
                    .iter()
                    .filter_map(|o| {
                        b.note(&o.stream, o.partition)
                            .map(|n| (o.stream.clone(), o.partition, n))
                    })
                    .collect();
                drop(b);
                self.source.note(notes);
            }
        }
        // On every interval the source is asked even when no record finished: a source may
        // have a position to save before its first record (Cosmos `start_from: now`).
        if !through.is_empty() || due {
            let checkpoints = self
                .source
                .commit(&through)
                .await
                .map_err(|e| PipelineError::Source(format!("commit failed: {e}")))?;
            self.store.update(checkpoints);
        }
        if due {
            self.last_flush = Instant::now();
            // The digests are signed and fsynced, and the chains' state joins the positions,
            // before the positions are saved.
            if let Some((book, log)) = &mut self.integrity {
                let (digests, state) = {
                    let mut b = book.lock();
                    if !b.is_dirty() {
                        (Vec::new(), None)
                    } else {
                        let now =
                            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
                        (b.take_digests(&now), Some(b.saved()))
                    }
                };
                if let Some(state) = state {
                    let lines = {
                        let b = book.lock();
                        log.append(digests, &b)
                            .map_err(|e| PipelineError::Sink(format!("integrity: {e}")))?
                    };
                    if let Some(copy) = &mut self.digest_copy {
                        copy.push(lines);
                    }
                    self.store.set_integrity(state);
                }
            }
            if !self.copy_digests().await {
                // Stopping with the copy behind: the positions stay where they were, and the
                // next run stamps the same records again and sends the copy first.
                return Ok(());
            }
            if self.store.is_dirty() {
                self.store.flush()?;
                self.status.set_committed(self.store.positions());
            }
        }
        Ok(())
    }

    /// Partitions newly assigned to a source that keeps notes resume their chains from the
    /// state committed with their position, before any of their records is stamped.
    fn resume_chains(&mut self) -> Result<(), PipelineError> {
        if !self.source.keeps_notes() {
            return Ok(());
        }
        let resumed = self.source.take_assigned_notes();
        let Some((book, _)) = &self.integrity else {
            return Ok(());
        };
        for r in resumed {
            book.lock()
                .resume(&r.stream, r.partition, r.offset, r.note.as_deref())
                .map_err(|e| PipelineError::Source(format!("integrity: {e}")))?;
        }
        Ok(())
    }

    /// Writes the digest copy's pending lines, retrying while the destination is unavailable
    /// (the commit waits; the pipeline's health names the destination). False when the host
    /// stops first.
    async fn copy_digests(&mut self) -> bool {
        let Some(copy) = &mut self.digest_copy else {
            return true;
        };
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
        while copy.has_pending() {
            match copy.send().await {
                Ok(()) => self.status.set_integrity_problem(None),
                Err(e) => {
                    let problem = format!(
                        "cannot write the digest copy to {}: {e}; commits wait",
                        copy.describe()
                    );
                    if backoff.attempts() == 0 {
                        tracing::warn!(pipeline = %self.def.name, "{problem}");
                    }
                    self.status.set_integrity_problem(Some(problem));
                    if !pause(backoff.next_delay(), &self.stop).await {
                        return false;
                    }
                }
            }
        }
        true
    }

    /// Registers polled records, runs transforms, dead-letters undecodable ones and returns
    /// the records to send.
    async fn register_and_transform(
        &mut self,
        mut records: Vec<Record>,
    ) -> Result<Vec<Record>, PipelineError> {
        {
            let mut t = self.tracker.lock();
            for r in &records {
                // The records registered before a refused one stay in flight, unsent: the
                // commit holds before them and the next run reads them again.
                t.register(&r.origin)
                    .map_err(|e| PipelineError::Source(e.to_string()))?;
            }
        }
        let chain = &self.def.chain;
        let any_invalid = records.iter().any(|r| r.decode_error.is_some());
        if chain.is_empty() && !any_invalid {
            return Ok(records);
        }
        let mut dead: Vec<(Record, ErrorContext)> = Vec::new();
        let mut skipped = Vec::new();
        // The whole poll at once: a transform from a plugin takes it in one call.
        let mut verdicts = if chain.is_empty() {
            Vec::new()
        } else {
            chain.apply_batch(&mut records)
        }
        .into_iter();
        records.retain_mut(|r| {
            let verdict = verdicts.next();
            if let Some(err) = r.decode_error.take() {
                let kind = sluice_sdk::dead_letter::decode_error_kind(&err);
                let ctx = self.dead.context(Stage::Conversion, kind, err, 0);
                dead.push((std::mem::replace(r, placeholder(r)), ctx));
                return false;
            }
            match verdict {
                None | Some(Verdict::Keep) => true,
                Some(Verdict::Skip) => {
                    skipped.push(r.origin.clone());
                    false
                }
                Some(Verdict::Fail(e)) => {
                    let ctx = self
                        .dead
                        .context(Stage::Transformation, e.kind(), e.to_string(), 0);
                    dead.push((std::mem::replace(r, placeholder(r)), ctx));
                    false
                }
            }
        });
        if !dead.is_empty() {
            self.dead.write(&dead).await?;
        }
        let mut t = self.tracker.lock();
        for (r, _) in &dead {
            t.ack(&r.origin);
        }
        for o in &skipped {
            t.ack(o);
        }
        self.metrics.filtered.inc_by(skipped.len() as u64);
        Ok(records)
    }
}

/// A cheap stand-in left behind when a record is moved out of a vector being filtered.
fn placeholder(r: &Record) -> Record {
    Record::new(bytes::Bytes::new(), r.origin.clone())
}

pub(super) fn rate_limiter(rl: Option<RateLimitConfig>) -> Option<(DefaultDirectRateLimiter, u32)> {
    let rl = rl?;
    let rate = NonZeroU32::new(rl.events_per_second)?;
    let burst = rl.burst.unwrap_or((rl.events_per_second / 4).max(1));
    let burst = NonZeroU32::new(burst)?;
    Some((
        RateLimiter::direct(Quota::per_second(rate).allow_burst(burst)),
        burst.get(),
    ))
}

/// One run of `def` reading `input`, until the source finishes, the host stops (`stop`), or
/// the shutdown runs out of time (`abort`).
pub async fn run_once(
    def: &PipelineDef,
    env: &HostEnv,
    status: &Arc<PipelineStatus>,
    metrics: &PipelineMetrics,
    stop: &CancellationToken,
    abort: &CancellationToken,
    input: &Input,
) -> Result<RunEnd, PipelineError> {
    let (mut source, parts, dlq) = def.connectors(&env.registry, input)?;
    let sink_statuses: Vec<_> = def
        .sinks
        .iter()
        .map(|s| status.sink(&s.name, s.plan.named))
        .collect();
    let store = match &input.store {
        Some(path) => OffsetStore::open_at(path.clone(), &def.name)?,
        None => OffsetStore::open(&env.data_dir, &def.name)?,
    };
    status.set_committed(store.positions());

    let src_ctx = SourceContext {
        pipeline: def.name.clone(),
        checkpoints: store
            .positions()
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect(),
        health: status.source_health.clone(),
    };
    maybe_panic(&def.name, "open");
    let what = (&def.name, "source");
    let retryable_source = |e: &SourceError| !matches!(e, SourceError::Fatal(_));
    if !open_with_retry!(
        what,
        source.open(src_ctx.clone()),
        status.source_health,
        stop,
        PipelineError::Source,
        retryable_source
    )? {
        return Ok(RunEnd::Stopped);
    }
    status.source_health.set_healthy();

    let tracker = Arc::new(Mutex::new(Tracker::default()));
    let mut keys = std::collections::BTreeMap::new();
    for s in &def.sinks {
        if let Some(c) = &s.plan.integrity {
            let k = c
                .keys()
                .map_err(|(key, e)| PipelineError::Build(format!("integrity.{key}: {e}")))?;
            keys.insert(s.name.to_string(), k);
        }
    }
    let (book, digest_log) = if keys.is_empty() {
        (None, None)
    } else {
        let integrity = |e: crate::integrity::chain::IntegrityError| {
            PipelineError::Build(format!("integrity: {e}"))
        };
        let book = Book::new(&def.name, keys, store.integrity()).map_err(integrity)?;
        let log = DigestLog::open(&env.data_dir, &def.name).map_err(integrity)?;
        (Some(Arc::new(Mutex::new(book))), Some(log))
    };
    // Validation makes every sink's `digests_to` the same: the pipeline has one digest log.
    let digest_copy = match (
        &digest_log,
        def.sinks
            .iter()
            .find_map(|s| s.plan.integrity.as_ref()?.digests_to.as_ref()),
    ) {
        (Some(log), Some(to)) => Some(
            DigestCopy::open(to, &def.name, log.path())
                .map_err(|e| PipelineError::Build(format!("integrity.digests_to: {e}")))?,
        ),
        _ => None,
    };
    let mut sinks: Vec<Arc<dyn sluice_sdk::Sink>> = Vec::new();
    let mut fallbacks: Vec<Arc<dyn sluice_sdk::Sink>> = Vec::new();
    let mut deliveries = Vec::new();
    let retryable_sink = |e: &sluice_sdk::SinkError| !matches!(e, sluice_sdk::SinkError::Fatal(_));
    for ((sdef, part), sstatus) in def.sinks.iter().zip(parts).zip(&sink_statuses) {
        let sink_ctx = SinkContext {
            pipeline: def.name.clone(),
            health: sstatus.health.clone(),
        };
        let mut sink = part.sink;
        let what = (&def.name, "sink");
        if !open_with_retry!(
            what,
            sink.open(sink_ctx.clone()),
            sstatus.health,
            stop,
            PipelineError::Sink,
            retryable_sink
        )? {
            close_all(def, abort, &mut source, &sinks, &fallbacks).await;
            return Ok(RunEnd::Stopped);
        }
        sstatus.health.set_healthy();
        let sink: Arc<dyn sluice_sdk::Sink> = Arc::from(sink);
        sinks.push(sink.clone());
        let fallback = match (part.fallback, &sdef.plan.fallback) {
            (Some(mut fb), Some(cfg)) => {
                let ctx = SinkContext {
                    pipeline: def.name.clone(),
                    health: sluice_sdk::Health::new(),
                };
                let what = (&def.name, "fallback sink");
                if !open_with_retry!(
                    what,
                    fb.open(ctx.clone()),
                    sstatus.health,
                    stop,
                    PipelineError::Sink,
                    retryable_sink
                )? {
                    close_all(def, abort, &mut source, &sinks, &fallbacks).await;
                    return Ok(RunEnd::Stopped);
                }
                let fb: Arc<dyn sluice_sdk::Sink> = Arc::from(fb);
                fallbacks.push(fb.clone());
                // The `file` sink keeps values only: the mark goes into them too.
                let mark_values = cfg.sink.type_name == "file";
                Some(Fallback::new(fb, cfg.after, &sdef.name, mark_values))
            }
            _ => None,
        };
        sstatus.set_fallback(false);
        let concurrency = sdef
            .plan
            .concurrency
            .unwrap_or_else(|| sink.default_concurrency())
            .max(1);
        let sink_metrics = env.metrics.sink(&def.name, &sdef.name);
        let dead = DeadLetters {
            pipeline: def.name.clone(),
            sink: sdef.plan.named.then(|| sdef.name.clone()),
            dlq: part.dlq,
            counter: sink_metrics.dead_lettered.clone(),
            abort: abort.clone(),
            integrity: book
                .as_ref()
                .filter(|b| b.lock().has_sink(&sdef.name))
                .map(|b| (b.clone(), sdef.name.clone())),
            replayed: input.replayed.clone(),
        };
        let delivery = Delivery {
            pipeline: def.name.clone(),
            sink,
            dead,
            tracker: tracker.clone(),
            metrics: sink_metrics,
            status: sstatus.clone(),
            retry: sdef.plan.retry,
            limiter: rate_limiter(sdef.plan.rate_limit),
            fallback,
            abort: abort.clone(),
        };
        deliveries.push((Arc::new(delivery), concurrency));
    }

    let pipeline_dead = Arc::new(DeadLetters {
        pipeline: def.name.clone(),
        sink: None,
        dlq,
        counter: metrics.dead_lettered.clone(),
        abort: abort.clone(),
        integrity: None,
        replayed: input.replayed.clone(),
    });
    let mut lanes = Vec::with_capacity(deliveries.len());
    let mut tasks = Vec::with_capacity(deliveries.len());
    for ((delivery, concurrency), sdef) in deliveries.iter().zip(&def.sinks) {
        let (tx, rx) = mpsc::channel::<Batch>(QUEUE_BATCHES);
        let lane_dead = Arc::new(DeadLetters {
            pipeline: def.name.clone(),
            sink: delivery.dead.sink.clone(),
            dlq: delivery.dead.dlq.clone(),
            counter: delivery.dead.counter.clone(),
            abort: abort.clone(),
            integrity: None,
            replayed: input.replayed.clone(),
        });
        let stamp = book
            .as_ref()
            .filter(|b| b.lock().has_sink(&sdef.name))
            .map(|b| (b.clone(), sdef.name.clone()));
        lanes.push(Lane::new(
            sdef.plan.batch,
            &sdef.chain,
            lane_dead,
            tx,
            stamp,
        ));
        let d = delivery.clone();
        let c = *concurrency;
        tasks.push(tokio::spawn(async move { d.run(rx, c).await }));
    }
    let mut deliver_task = tokio::spawn(join_deliveries(tasks));
    let lanes = Lanes::new(def, lanes);

    let mut side = SourceSide {
        def,
        status,
        metrics,
        source,
        store,
        tracker,
        dead: pipeline_dead,
        last_flush: Instant::now(),
        integrity: book.zip(digest_log),
        digest_copy,
        stop: stop.clone(),
    };
    status.set_state(State::Running);
    let names: Vec<String> = def
        .sinks
        .iter()
        .map(|s| format!("{}={}", s.name, s.plan.spec.type_name))
        .collect();
    tracing::info!(pipeline = %def.name, source = %def.cfg.source.type_name, sinks = %names.join(","), "pipeline started");

    // A panic anywhere in the source loop (a source, a transform) ends the run as a failure
    // carrying the panic's text; past the shutdown timeout the loop is dropped wherever it
    // waits (a poll, a commit, a full queue). Dropping the lanes closes the sinks' queues.
    let looped = AssertUnwindSafe(source_loop(&mut side, lanes, stop, &mut deliver_task));
    let result = tokio::select! {
        r = looped.catch_unwind() => r.unwrap_or_else(|p| Err(PipelineError::Panic {
            stage: "source loop",
            message: panic_text(&*p),
        })),
        _ = abort.cancelled() => Err(PipelineError::Aborted),
    };

    // Drain: delivery finishes what is queued (bounded by the shutdown timeout, after which
    // `abort` drops the sends in flight and leaves the rest unacknowledged for the next start).
    let delivered = match bounded(abort, &mut deliver_task).await {
        Some(Ok(r)) => r,
        Some(Err(join)) if join.is_panic() => Err(PipelineError::Panic {
            stage: "delivery",
            message: panic_text(&*join.into_panic()),
        }),
        Some(Err(join)) => Err(PipelineError::Sink(format!("delivery task failed: {join}"))),
        None => {
            deliver_task.abort();
            Err(PipelineError::Aborted)
        }
    };
    // Whatever happened, save every position that is fully done.
    let committed = bounded(abort, side.commit(true))
        .await
        .unwrap_or(Err(PipelineError::Aborted));
    close_all(def, abort, &mut side.source, &sinks, &fallbacks).await;
    let in_flight = side.tracker.lock().in_flight();
    if in_flight > 0 {
        tracing::warn!(pipeline = %def.name, in_flight, "stopped with records not yet delivered; they will be read again on the next start");
    }
    delivered?;
    committed?;
    match result {
        // Not everything was delivered: the pipeline did not finish, it stopped.
        Ok(RunEnd::Finished) if in_flight > 0 => Ok(RunEnd::Stopped),
        other => other,
    }
}

/// Waits for every sink's delivery; the first to fail ends the others (what they had in
/// flight stays unacknowledged) and is the result.
async fn join_deliveries(
    tasks: Vec<tokio::task::JoinHandle<Result<(), PipelineError>>>,
) -> Result<(), PipelineError> {
    use futures::stream::{FuturesUnordered, StreamExt};
    let aborts: Vec<_> = tasks.iter().map(|t| t.abort_handle()).collect();
    let mut all: FuturesUnordered<_> = tasks.into_iter().collect();
    while let Some(done) = all.next().await {
        let failed = match done {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e,
            Err(join) if join.is_panic() => PipelineError::Panic {
                stage: "delivery",
                message: panic_text(&*join.into_panic()),
            },
            Err(join) => PipelineError::Sink(format!("delivery task failed: {join}")),
        };
        for a in &aborts {
            a.abort();
        }
        return Err(failed);
    }
    Ok(())
}

/// Closes the source, the sinks and their fallbacks, each bounded by the shutdown timeout.
async fn close_all(
    def: &PipelineDef,
    abort: &CancellationToken,
    source: &mut Box<dyn Source>,
    sinks: &[Arc<dyn sluice_sdk::Sink>],
    fallbacks: &[Arc<dyn sluice_sdk::Sink>],
) {
    match bounded(abort, source.close()).await {
        Some(Err(e)) => tracing::warn!(pipeline = %def.name, error = %e, "closing the source"),
        None => {
            tracing::warn!(pipeline = %def.name, "closing the source: abandoned at the shutdown timeout")
        }
        Some(Ok(())) => {}
    }
    for sink in sinks.iter().chain(fallbacks) {
        match bounded(abort, sink.close()).await {
            Some(Err(e)) => tracing::warn!(pipeline = %def.name, error = %e, "closing the sink"),
            None => {
                tracing::warn!(pipeline = %def.name, "closing the sink: abandoned at the shutdown timeout")
            }
            Some(Ok(())) => {}
        }
    }
}

/// A pause asked through the admin API: sends the partial batches, then reads nothing until
/// resumed, committing as the batches in flight finish. False when delivery ended (a sink
/// failed): the run ends as it would unpaused, and its failure is reported.
async fn paused(
    side: &mut SourceSide<'_>,
    lanes: &mut Lanes<'_>,
    stop: &CancellationToken,
    deliver_task: &mut tokio::task::JoinHandle<Result<(), PipelineError>>,
) -> Result<bool, PipelineError> {
    if !lanes.flush_all().await {
        return Ok(false);
    }
    side.status.set_state(State::Paused);
    tracing::info!(pipeline = %side.def.name, "pipeline paused");
    let control = &side.status.control;
    loop {
        tokio::select! {
            _ = control.resumed() => break,
            _ = stop.cancelled() => return Ok(true),
            _ = tokio::time::sleep(side.def.cfg.commit_interval) => {
                side.commit(false).await?;
                if deliver_task.is_finished() {
                    return Ok(false);
                }
            }
        }
    }
    side.status.set_state(State::Running);
    tracing::info!(pipeline = %side.def.name, "pipeline resumed");
    Ok(true)
}

async fn source_loop(
    side: &mut SourceSide<'_>,
    mut lanes: Lanes<'_>,
    stop: &CancellationToken,
    deliver_task: &mut tokio::task::JoinHandle<Result<(), PipelineError>>,
) -> Result<RunEnd, PipelineError> {
    let limiter = rate_limiter(side.def.cfg.rate_limit);
    // What is asked of the source at once: the smallest batch of any sink.
    let max_events = side
        .def
        .sinks
        .iter()
        .map(|s| s.plan.batch.max_events)
        .min()
        .unwrap_or(side.def.cfg.batch.max_events);
    let mut unavailable = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
    // Whether the source's health shows a failed poll, which the next records clear. A
    // problem the source reported itself (a partition it stopped) is the source's to clear.
    let mut poll_failed = false;
    let mut end = RunEnd::Stopped;

    loop {
        if stop.is_cancelled() {
            break;
        }
        if deliver_task.is_finished() {
            return Ok(RunEnd::Stopped);
        }
        side.commit(false).await?;
        if side.status.control.is_paused() && !paused(side, &mut lanes, stop, deliver_task).await? {
            return Ok(RunEnd::Stopped);
        }

        let mut want = lanes.room(max_events);
        if let Some((_, burst)) = &limiter {
            // Half the burst per poll leaves slack for a late timer wake-up; taking the whole
            // burst each time would turn every late wake-up into lost rate.
            want = want.min((*burst as usize / 2).max(1));
        }
        let polled = tokio::select! {
            p = side.source.poll(want) => p,
            _ = stop.cancelled() => break,
        };
        side.resume_chains()?;
        match polled {
            Ok(Polled::Records(records)) => {
                unavailable.reset();
                if std::mem::take(&mut poll_failed) {
                    side.status.source_health.set_healthy();
                }
                let n = records.len();
                if n == 0 {
                    continue;
                }
                side.metrics.received.inc_by(n as u64);
                maybe_panic(&side.def.name, "source");
                if let Some((l, burst)) = &limiter {
                    // A source may return more than it was asked for: every record waits
                    // its turn, a burst at a time (the limiter refuses a larger wait).
                    let mut left = n;
                    while left > 0 {
                        let chunk = left.min(*burst as usize);
                        left -= chunk;
                        let Some(c) = NonZeroU32::new(chunk as u32) else {
                            break;
                        };
                        tokio::select! {
                            r = l.until_n_ready(c) => {
                                if let Err(e) = r {
                                    return Err(PipelineError::Source(format!("rate limiter: {e}")));
                                }
                            }
                            _ = stop.cancelled() => break,
                        }
                    }
                }
                let records = side.register_and_transform(records).await?;
                if !lanes
                    .push(records, &side.tracker, side.metrics, &side.dead)
                    .await?
                {
                    return Ok(RunEnd::Stopped);
                }
            }
            Ok(Polled::Idle) => {}
            Ok(Polled::Finished) => {
                end = RunEnd::Finished;
                break;
            }
            Err(SourceError::Fatal(m)) => return Err(PipelineError::Source(m)),
            Err(e) => {
                if unavailable.attempts().is_multiple_of(10) {
                    tracing::warn!(pipeline = %side.def.name, error = %e, "source unavailable; retrying");
                }
                side.status.source_health.set_unhealthy(e.to_string());
                poll_failed = true;
                let mut d = unavailable.next_delay();
                if matches!(e, SourceError::Unauthorized(_)) {
                    d = d.max(Duration::from_secs(5));
                }
                if !pause(d, stop).await {
                    break;
                }
            }
        }
        if let Some(l) = side.source.lag() {
            side.metrics.lag.set(l as i64);
            side.status.set_lag(Some(l));
        }
        side.metrics.skipped.inc_by(side.source.take_skipped());
        if let Some(p) = side.source.positions() {
            side.status.set_partitions(p);
        }
        if !lanes.flush_due().await {
            return Ok(RunEnd::Stopped);
        }
    }
    if !lanes.flush_all().await {
        return Ok(RunEnd::Stopped);
    }
    Ok(end)
}
