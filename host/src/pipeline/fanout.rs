//! The fan-out step between a pipeline's transforms and its sinks: each record goes to every
//! sink whose route takes it, through that sink's own transforms, into that sink's batcher and
//! bounded queue.
//!
//! Sinks that send records as they are (no own transforms, no integrity stamp) and take at
//! least half of a poll share that poll ([`Poll`]): their batches point into it instead of
//! holding copies. A sink that changes its records, or takes less than half of a poll, gets
//! copies (sharing the payload bytes), so a sparse route never pins more than twice the
//! records a sink's queue holds.
//!
//! Commit guarantee: before a record enters any queue, the tracker learns how many sinks it
//! waits for, so no sink's answer can complete it early. A record no route takes follows
//! `unrouted` (dead-lettered with kind `unrouted`, or dropped and counted as filtered).

use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use sluice_sdk::{ErrorContext, Record, Stage};
use tokio::sync::mpsc;

use super::batch::{Batch, Poll};
use super::dead::DeadLetters;
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
    batch: Batch,
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
            batch: Batch::default(),
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
        let room = self.room();
        self.batch.push_record(r, room);
        Ok(self.full())
    }

    fn full(&self) -> bool {
        self.batch.len() >= self.cfg.max_events || self.bytes >= self.cfg.max_bytes
    }

    /// Records the batch being filled still has room for (at least one).
    fn room(&self) -> usize {
        self.cfg.max_events.saturating_sub(self.batch.len()).max(1)
    }

    /// Adds a poll's records, which no other sink takes, moving them as a whole where they
    /// fit; false if the sink's delivery has ended.
    async fn add_own(&mut self, mut records: Vec<Record>) -> Result<bool, PipelineError> {
        if self.stamp.is_some() {
            for r in records {
                if self.add(r)? && !self.flush().await {
                    return Ok(false);
                }
            }
            return Ok(true);
        }
        while !records.is_empty() {
            if self.batch.is_empty() {
                self.started = Instant::now();
            }
            let room = self.room();
            let mut take = 0;
            for r in &records {
                take += 1;
                self.bytes += r.size() as u64;
                if take >= room || self.bytes >= self.cfg.max_bytes {
                    break;
                }
            }
            let rest = if take < records.len() {
                records.split_off(take)
            } else {
                Vec::new()
            };
            self.batch.push_own(std::mem::replace(&mut records, rest));
            if self.full() && !self.flush().await {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Adds the records of a shared poll this sink takes (`at`, or all), with their sizes;
    /// false if the sink's delivery has ended.
    async fn add_shared(&mut self, poll: &Poll, sizes: &[u64], at: Option<Vec<u32>>) -> bool {
        let n = at.as_ref().map_or(poll.len(), Vec::len);
        let index = |k: usize| at.as_ref().map_or(k, |at| at[k] as usize);
        let mut start = 0;
        let mut k = 0;
        while k < n {
            if k == start && self.batch.is_empty() {
                self.started = Instant::now();
            }
            self.bytes += sizes[index(k)];
            k += 1;
            if self.batch.len() + (k - start) >= self.cfg.max_events
                || self.bytes >= self.cfg.max_bytes
            {
                self.push_part(poll, at.as_deref(), start..k);
                start = k;
                if !self.flush().await {
                    return false;
                }
            }
        }
        self.push_part(poll, at.as_deref(), start..n);
        true
    }

    fn push_part(&mut self, poll: &Poll, at: Option<&[u32]>, part: std::ops::Range<usize>) {
        match at {
            None => self.batch.push_range(poll, part),
            Some(at) => self.batch.push_at(poll, at[part].to_vec()),
        }
    }

    /// Sends the current batch; false if the sink's delivery has ended.
    async fn flush(&mut self) -> bool {
        if self.batch.is_empty() {
            return true;
        }
        let full = std::mem::take(&mut self.batch);
        self.bytes = 0;
        self.tx.send(full).await.is_ok()
    }

    /// Whether this sink sends records as the pipeline hands them over.
    fn sends_as_is(&self) -> bool {
        self.chain.is_empty() && self.stamp.is_none()
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
            return self.lanes[0].room();
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
            return self.lanes[0].add_own(records).await;
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
        let len = records.len();
        // Which sinks share the poll instead of taking copies.
        let taken: Vec<usize> = (0..n)
            .map(|j| masks.iter().skip(j).step_by(n).filter(|h| **h).count())
            .collect();
        let shared: Vec<bool> = (0..n)
            .map(|j| self.lanes[j].sends_as_is() && taken[j] > 0 && 2 * taken[j] >= len)
            .collect();
        let mut unrouted: Vec<Record> = Vec::new();
        let mut dead: Vec<Vec<(Record, ErrorContext)>> = vec![Vec::new(); n];
        let mut skipped = Vec::new();
        if shared.contains(&true) {
            // Copies first, for the sinks that take them and for what no route takes.
            for (r, mask) in records.iter().zip(masks.chunks_exact(n)) {
                if !mask.contains(&true) {
                    unrouted.push(r.clone());
                    continue;
                }
                for j in 0..n {
                    if mask[j]
                        && !shared[j]
                        && !self.take(j, r.clone(), &mut dead, &mut skipped).await?
                    {
                        return Ok(false);
                    }
                }
            }
            let poll: Poll = Arc::new(records);
            let sizes: Vec<u64> = poll.iter().map(|r| r.size() as u64).collect();
            for j in (0..n).filter(|&j| shared[j]) {
                let at = (taken[j] < len).then(|| {
                    (0..len)
                        .filter(|&i| masks[i * n + j])
                        .map(|i| i as u32)
                        .collect()
                });
                if !self.lanes[j].add_shared(&poll, &sizes, at).await {
                    return Ok(false);
                }
            }
        } else {
            // Copies for every sink but the last that takes a record, which gets the record.
            for (r, mask) in records.into_iter().zip(masks.chunks_exact(n)) {
                let Some(last) = mask.iter().rposition(|h| *h) else {
                    unrouted.push(r);
                    continue;
                };
                for j in (0..last).filter(|&j| mask[j]) {
                    if !self.take(j, r.clone(), &mut dead, &mut skipped).await? {
                        return Ok(false);
                    }
                }
                if !self.take(last, r, &mut dead, &mut skipped).await? {
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

    /// Hands sink `j` its copy of a record, through its own transforms: into its batch (sent
    /// when full), its dead letters, or the skipped; false if the sink's delivery has ended.
    async fn take(
        &mut self,
        j: usize,
        mut r: Record,
        dead: &mut [Vec<(Record, ErrorContext)>],
        skipped: &mut Vec<sluice_sdk::Origin>,
    ) -> Result<bool, PipelineError> {
        let lane = &mut self.lanes[j];
        if !lane.chain.is_empty() {
            match lane.chain.apply(&mut r) {
                Verdict::Keep => {}
                Verdict::Skip => {
                    skipped.push(r.origin);
                    return Ok(true);
                }
                Verdict::Fail(e) => {
                    let ctx = lane
                        .dead
                        .context(Stage::Transformation, e.kind(), e.to_string(), 0);
                    dead[j].push((r, ctx));
                    return Ok(true);
                }
            }
        }
        Ok(!lane.add(r)? || lane.flush().await)
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

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::{DeadLetter, DeadLetterError, DeadLetterWriter, Origin};
    use std::time::Duration;

    struct NoLetters;

    #[async_trait::async_trait]
    impl DeadLetterWriter for NoLetters {
        async fn write(&self, _: &[DeadLetter<'_>]) -> Result<(), DeadLetterError> {
            panic!("nothing is dead-lettered here")
        }
    }

    fn lane(chain: &Chain, max_events: usize, max_bytes: u64) -> (Lane<'_>, mpsc::Receiver<Batch>) {
        let (tx, rx) = mpsc::channel(64);
        let dead = Arc::new(DeadLetters {
            pipeline: "p".into(),
            sink: None,
            dlq: Arc::new(NoLetters),
            counter: prometheus::IntCounter::new("dead", "dead").expect("counter"),
            abort: Default::default(),
            integrity: None,
            replayed: None,
        });
        let cfg = BatchConfig {
            max_events,
            max_bytes,
            linger: Duration::from_secs(60),
        };
        (Lane::new(cfg, chain, dead, tx, None), rx)
    }

    /// Records of 10 bytes each, offsets `from..to`.
    fn poll(from: i64, to: i64) -> Vec<Record> {
        (from..to)
            .map(|o| Record::new(format!("{{\"n\":{o:>4}}}"), Origin::new("t".into(), 0, o)))
            .collect()
    }

    fn drain(rx: &mut mpsc::Receiver<Batch>) -> Vec<Vec<i64>> {
        let mut out = Vec::new();
        while let Ok(b) = rx.try_recv() {
            out.push(b.iter().map(|r| r.origin.offset).collect());
        }
        out
    }

    #[tokio::test]
    async fn shared_polls_are_cut_by_count_and_bytes_in_order() {
        let chain = Chain::default();
        let (mut l, mut rx) = lane(&chain, 4, 1 << 20);
        let first: Poll = Arc::new(poll(0, 10));
        assert_eq!(first[0].size(), 10);
        let sizes = vec![10; 10];
        assert!(l.add_shared(&first, &sizes, None).await);
        let second: Poll = Arc::new(poll(10, 20));
        assert!(l.add_shared(&second, &sizes, Some(vec![1, 2, 5, 9])).await);
        assert!(l.flush().await);
        assert_eq!(
            drain(&mut rx),
            vec![
                vec![0, 1, 2, 3],
                vec![4, 5, 6, 7],
                vec![8, 9, 11, 12],
                vec![15, 19]
            ]
        );
        // 35 bytes at most: three records of 10 bytes, then a fourth reaches it.
        let (mut l, mut rx) = lane(&chain, 100, 35);
        assert!(
            l.add_shared(&first, &sizes, Some(vec![0, 2, 4, 6, 8, 9]))
                .await
        );
        assert!(l.flush().await);
        assert_eq!(drain(&mut rx), vec![vec![0, 2, 4, 6], vec![8, 9]]);
        assert_eq!(
            first.len(),
            10,
            "the poll is the sinks' to share, never changed"
        );
    }

    #[tokio::test]
    async fn own_polls_move_whole_and_are_cut_where_a_batch_fills() {
        let chain = Chain::default();
        let (mut l, mut rx) = lane(&chain, 4, 1 << 20);
        assert!(l.add_own(poll(0, 3)).await.expect("added"));
        assert!(drain(&mut rx).is_empty(), "three records wait for more");
        assert!(l.add_own(poll(3, 9)).await.expect("added"));
        assert_eq!(drain(&mut rx), vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7]]);
        assert_eq!(l.room(), 3);
        assert!(l.add_own(Vec::new()).await.expect("added"));
        assert!(l.flush().await);
        assert_eq!(drain(&mut rx), vec![vec![8]]);
        let (mut l, mut rx) = lane(&chain, 100, 25);
        assert!(l.add_own(poll(0, 7)).await.expect("added"));
        assert!(l.flush().await);
        assert_eq!(drain(&mut rx), vec![vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
    }
}
