//! The fan-out step between a pipeline's transforms and its sinks: each record goes to every
//! sink whose route takes it, through that sink's own transforms, into that sink's batcher and
//! bounded queue. A record routed to several sinks is cloned (its payload is shared `Bytes`).
//!
//! Commit guarantee: before a record enters any queue, the tracker learns how many sinks it
//! waits for, so no sink's answer can complete it early. A record no route takes follows
//! `unrouted` (dead-lettered with kind `unrouted`, or dropped and counted as filtered).

use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use sluice_sdk::{ErrorContext, Record, Stage};
use tokio::sync::mpsc;

use super::dead::DeadLetters;
use super::delivery::Batch;
use super::tracker::Tracker;
use super::{PipelineDef, PipelineError};
use crate::config::{BatchConfig, Unrouted};
use crate::integrity::chain::Book;
use crate::metrics::PipelineMetrics;
use crate::transform::condition::{route_all, Route};
use crate::transform::{Chain, Verdict};
use sluice_sdk::json::MemberSpans;

/// One sink's batcher and the sending end of its queue.
pub struct Lane<'a> {
    cfg: BatchConfig,
    chain: &'a Chain,
    dead: Arc<DeadLetters>,
    tx: mpsc::Sender<Batch>,
    batch: Vec<Record>,
    bytes: u64,
    started: Instant,
    /// The pipeline's integrity chains and this sink's name, when it has `integrity:`.
    stamp: Option<(Arc<Mutex<Book>>, Arc<str>)>,
}

impl<'a> Lane<'a> {
    pub fn new(
        cfg: BatchConfig,
        chain: &'a Chain,
        dead: Arc<DeadLetters>,
        tx: mpsc::Sender<Batch>,
        stamp: Option<(Arc<Mutex<Book>>, Arc<str>)>,
    ) -> Self {
        Lane {
            cfg,
            chain,
            dead,
            tx,
            batch: Vec::with_capacity(cfg.max_events),
            bytes: 0,
            started: Instant::now(),
            stamp,
        }
    }

    /// Adds a record; true when the batch is full and is to be sent ([`Lane::flush`]). Not
    /// async, so a record is moved once, into the batch, not first into a future.
    fn add(&mut self, mut r: Record) -> Result<bool, PipelineError> {
        if let Some((book, sink)) = &self.stamp {
            book.lock()
                .stamp(sink, &mut r)
                .map_err(|e| PipelineError::Sink(format!("integrity stamp: {e}")))?;
        }
        if self.batch.is_empty() {
            self.started = Instant::now();
        }
        self.bytes += r.size() as u64;
        self.batch.push(r);
        Ok(self.batch.len() >= self.cfg.max_events || self.bytes >= self.cfg.max_bytes)
    }

    /// Sends the current batch; false if the sink's delivery has ended.
    async fn flush(&mut self) -> bool {
        if self.batch.is_empty() {
            return true;
        }
        let full = std::mem::replace(&mut self.batch, Vec::with_capacity(self.cfg.max_events));
        self.bytes = 0;
        self.tx.send(Batch::new(full)).await.is_ok()
    }

    fn due(&self) -> bool {
        !self.batch.is_empty() && self.started.elapsed() >= self.cfg.linger
    }
}

/// Every sink's lane of one run, and what routing needs.
pub struct Lanes<'a> {
    lanes: Vec<Lane<'a>>,
    routes: Vec<Option<&'a Route>>,
    /// One sink, no route, no own transforms: records move straight into its batch.
    direct: bool,
    unrouted: Unrouted,
    hits: Vec<bool>,
    spans: MemberSpans,
}

impl<'a> Lanes<'a> {
    pub fn new(def: &'a PipelineDef, lanes: Vec<Lane<'a>>) -> Self {
        let routes: Vec<Option<&Route>> = def.sinks.iter().map(|s| s.route.as_ref()).collect();
        let direct = lanes.len() == 1 && routes[0].is_none() && lanes[0].chain.is_empty();
        Lanes {
            lanes,
            routes,
            direct,
            unrouted: def.cfg.unrouted,
            hits: Vec::new(),
            spans: MemberSpans::new(),
        }
    }

    /// How many records to ask the source for: what the single sink's batch still has room
    /// for, else `max_events`.
    pub fn room(&self, max_events: usize) -> usize {
        if self.direct {
            let l = &self.lanes[0];
            return l.cfg.max_events.saturating_sub(l.batch.len()).max(1);
        }
        max_events
    }

    /// Routes records to the sinks' batchers; false if a sink's delivery has ended.
    pub async fn push(
        &mut self,
        records: Vec<Record>,
        tracker: &Mutex<Tracker>,
        metrics: &PipelineMetrics,
        pipeline_dead: &DeadLetters,
    ) -> Result<bool, PipelineError> {
        if self.direct {
            let lane = &mut self.lanes[0];
            for r in records {
                if lane.add(r)? && !lane.flush().await {
                    return Ok(false);
                }
            }
            return Ok(true);
        }
        let n = self.lanes.len();
        // Every decision first, and the tracker told, before any record enters a queue.
        let mut masks: Vec<bool> = Vec::with_capacity(records.len() * n);
        for r in &records {
            route_all(&self.routes, &r.value, &mut self.spans, &mut self.hits);
            masks.extend_from_slice(&self.hits);
        }
        {
            let mut t = tracker.lock();
            for (r, mask) in records.iter().zip(masks.chunks_exact(n)) {
                let k = mask.iter().filter(|h| **h).count() as u32;
                if k > 1 {
                    t.expect_more(&r.origin, k - 1);
                }
            }
        }
        let mut unrouted: Vec<Record> = Vec::new();
        let mut dead: Vec<Vec<(Record, ErrorContext)>> = vec![Vec::new(); n];
        let mut skipped = Vec::new();
        for (i, r) in records.into_iter().enumerate() {
            let mask = &masks[i * n..(i + 1) * n];
            let Some(last) = mask.iter().rposition(|h| *h) else {
                unrouted.push(r);
                continue;
            };
            let mut r = Some(r);
            for j in 0..=last {
                if !mask[j] {
                    continue;
                }
                let mut copy = if j == last {
                    match r.take() {
                        Some(r) => r,
                        None => break,
                    }
                } else {
                    match &r {
                        Some(r) => r.clone(),
                        None => break,
                    }
                };
                let lane = &mut self.lanes[j];
                if !lane.chain.is_empty() {
                    match lane.chain.apply(&mut copy) {
                        Verdict::Keep => {}
                        Verdict::Skip => {
                            skipped.push(copy.origin);
                            continue;
                        }
                        Verdict::Fail(e) => {
                            let ctx = lane.dead.context(
                                Stage::Transformation,
                                e.kind(),
                                e.to_string(),
                                0,
                            );
                            dead[j].push((copy, ctx));
                            continue;
                        }
                    }
                }
                if lane.add(copy)? && !lane.flush().await {
                    return Ok(false);
                }
            }
        }
        for (j, letters) in dead.iter().enumerate() {
            if letters.is_empty() {
                continue;
            }
            self.lanes[j].dead.write(letters).await?;
            let mut t = tracker.lock();
            for (r, _) in letters {
                t.ack(&r.origin);
            }
        }
        if !unrouted.is_empty() {
            match self.unrouted {
                Unrouted::DeadLetter => {
                    let letters: Vec<(Record, ErrorContext)> = unrouted
                        .into_iter()
                        .map(|r| {
                            let ctx = pipeline_dead.context(
                                Stage::Transformation,
                                "unrouted",
                                "no sink's route takes the record",
                                0,
                            );
                            (r, ctx)
                        })
                        .collect();
                    pipeline_dead.write(&letters).await?;
                    let mut t = tracker.lock();
                    for (r, _) in &letters {
                        t.ack(&r.origin);
                    }
                }
                Unrouted::Drop => {
                    skipped.extend(unrouted.into_iter().map(|r| r.origin));
                }
            }
        }
        if !skipped.is_empty() {
            metrics.filtered.inc_by(skipped.len() as u64);
            let mut t = tracker.lock();
            for o in &skipped {
                t.ack(o);
            }
        }
        Ok(true)
    }

    /// Sends the batches whose linger has passed; false if a sink's delivery has ended.
    pub async fn flush_due(&mut self) -> bool {
        for lane in &mut self.lanes {
            if lane.due() && !lane.flush().await {
                return false;
            }
        }
        true
    }

    /// Sends every batch being filled; false if a sink's delivery has ended.
    pub async fn flush_all(&mut self) -> bool {
        for lane in &mut self.lanes {
            if !lane.flush().await {
                return false;
            }
        }
        true
    }
}
