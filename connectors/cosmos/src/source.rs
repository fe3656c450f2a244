//! The `cosmos_change_feed` source: one reader task per range, pages handed out round-robin,
//! and checkpoints that resume exactly after the last committed document.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use sluice_sdk::{
    async_trait, Checkpoint, Origin, Polled, Record, Source, SourceContext, SourceError,
};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use crate::client::Client;
use crate::config::{CosmosConfig, StartFrom};
use crate::feed::Doc;
use crate::position::{Cursor, Resume, Skip, Stored};
use crate::ranges::{self, PkRange, RangeInfo};
use crate::reader::{Event, Reader, ServerPosition, Shared, CHANNEL_PAGES};

/// Longest time `poll` waits for a page.
const POLL_WAIT: Duration = Duration::from_millis(100);

/// Reads a container's change feed.
pub struct CosmosSource {
    cfg: CosmosConfig,
    key: Arc<[u8]>,
    shared: Option<Arc<Shared>>,
    /// Readers in round-robin order.
    live: Vec<Live>,
    next: usize,
    /// By origin partition.
    tracks: HashMap<i32, Track>,
    /// Records of the last page not handed out yet.
    ready: VecDeque<Record>,
}

struct Live {
    partition: i32,
    rx: mpsc::Receiver<Event>,
    task: JoinHandle<()>,
}

/// Commit bookkeeping of one range.
struct Track {
    info: Arc<RangeInfo>,
    last_offset: i64,
    /// Pages handed out and not wholly committed, oldest first.
    pages: VecDeque<Inflight>,
    /// The range split: no page will follow those in `pages`.
    retired: bool,
    /// Parent ranges (by id) still owed commits. A child's position is not saved before its
    /// parent's, or a restart would resume the child past parent documents not yet done.
    blocked_by: Vec<Arc<str>>,
    /// A position ready to save on the next `commit`.
    unsaved: Option<Cursor>,
    /// Where the server's feed of this range is, as its reader last heard.
    server: Arc<ServerPosition>,
    /// Highest committed record offset (the change's LSN, see `handle`).
    done: Option<i64>,
}

impl Track {
    /// Changes of this range not delivered yet, estimated as the change feed estimator of
    /// the Cosmos SDKs does: the server's latest LSN minus the LSN delivered. `None` while
    /// unknown (no answer yet, or nothing delivered nor read since a restart).
    fn lag(&self, queued: bool) -> Option<u64> {
        if self.pages.is_empty() && !queued && (self.retired || self.server.caught_up()) {
            return Some(0);
        }
        let latest = self.server.latest_lsn()?;
        let base = self.done.or_else(|| {
            let first = self.pages.front()?.offsets.iter().flatten().next()?;
            Some(first - 1)
        })?;
        // Documents of one transaction share an LSN but get consecutive offsets, so the
        // difference can dip below zero.
        Some(u64::try_from(latest - base).unwrap_or(0))
    }
}

struct Inflight {
    from: Cursor,
    next: Cursor,
    docs: Vec<Doc>,
    /// Each document's record offset, `None` for one skipped as already done.
    offsets: Vec<Option<i64>>,
    last_offset: i64,
}

impl CosmosSource {
    /// Makes the source; checks the configuration, does no I/O.
    pub fn new(cfg: CosmosConfig) -> Result<Self, sluice_sdk::ConfigError> {
        let key = cfg.validate()?;
        Ok(CosmosSource {
            cfg,
            key: key.into(),
            shared: None,
            live: Vec::new(),
            next: 0,
            tracks: HashMap::new(),
            ready: VecDeque::new(),
        })
    }

    fn stop_readers(&mut self) {
        for l in self.live.drain(..) {
            l.task.abort();
        }
        self.tracks.clear();
        self.ready.clear();
        self.shared = None;
    }

    fn start_cursor(&self) -> Cursor {
        Cursor::new(match self.cfg.start_from {
            StartFrom::Beginning => Resume::Beginning,
            StartFrom::Now => Resume::Now,
            StartFrom::Time(t) => Resume::Since(t),
        })
    }

    /// The range's own checkpoint, else its nearest ancestor's (by `parents`, then by span),
    /// else the configured start. `saved` is by partition (see [`ranges::partition_of`]).
    fn resume_from(
        &self,
        range: &PkRange,
        saved: &HashMap<i32, Stored>,
    ) -> Result<Cursor, SourceError> {
        let own = ranges::partition_of(&range.id);
        let stored = saved.get(&own).or_else(|| {
            range
                .parents
                .iter()
                .rev()
                .find_map(|p| saved.get(&ranges::partition_of(p)))
                .or_else(|| {
                    saved
                        .iter()
                        .filter(|(partition, s)| {
                            **partition != own
                                && ranges::span_contains(&s.min, &s.max, &range.min, &range.max)
                        })
                        // The narrowest enclosing span is the nearest ancestor.
                        .max_by(|a, b| (&a.1.min, &b.1.max).cmp(&(&b.1.min, &a.1.max)))
                        .map(|(_, s)| s)
                })
        });
        match stored {
            Some(s) => s
                .cursor()
                .map_err(|e| SourceError::Fatal(format!("checkpoint for range {}: {e}", range.id))),
            None => Ok(self.start_cursor()),
        }
    }

    fn spawn(&mut self, range: PkRange, cursor: Cursor, blocked_by: Vec<Arc<str>>) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let info = Arc::new(RangeInfo::new(&self.cfg.container, range.clone()));
        if self.tracks.contains_key(&info.partition) {
            return;
        }
        let (tx, rx) = mpsc::channel(CHANNEL_PAGES);
        let server = Arc::new(ServerPosition::default());
        let reader = Reader {
            shared,
            range,
            cursor,
            tx,
            server: server.clone(),
        };
        let task = tokio::spawn(reader.run());
        self.live.push(Live {
            partition: info.partition,
            rx,
            task,
        });
        self.tracks.insert(
            info.partition,
            Track {
                info,
                last_offset: 0,
                pages: VecDeque::new(),
                retired: false,
                blocked_by,
                unsaved: None,
                server,
                done: None,
            },
        );
    }

    /// Applies one reader event; returns an error to surface, if any.
    fn handle(&mut self, partition: i32, ev: Event) -> Result<(), SourceError> {
        match ev {
            Event::Page { from, next, docs } => {
                let Some(track) = self.tracks.get_mut(&partition) else {
                    return Ok(());
                };
                let mut offsets = Vec::with_capacity(docs.len());
                for doc in &docs {
                    let offset = if doc.skipped {
                        None
                    } else {
                        // `_lsn` when it grows; documents of one transaction share an LSN, so
                        // the second and later take the next free number.
                        let o = match doc.lsn {
                            Some(l) if l > track.last_offset => l,
                            _ => track.last_offset + 1,
                        };
                        track.last_offset = o;
                        let mut rec = Record::new(
                            doc.value.clone(),
                            Origin::new(track.info.stream.clone(), partition, o),
                        );
                        rec.key = doc.key.clone();
                        rec.timestamp = doc.timestamp;
                        rec.decode_error = doc.error.clone();
                        self.ready.push_back(rec);
                        Some(o)
                    };
                    offsets.push(offset);
                }
                track.pages.push_back(Inflight {
                    from,
                    next,
                    docs,
                    offsets,
                    last_offset: track.last_offset,
                });
            }
            Event::Position(cursor) => {
                if let Some(track) = self.tracks.get_mut(&partition) {
                    if track.pages.is_empty() {
                        track.unsaved = Some(cursor);
                    }
                }
            }
            Event::Split { children, cursor } => {
                let Some(track) = self.tracks.get_mut(&partition) else {
                    return Ok(());
                };
                track.retired = true;
                // A child waits for its parent and for whatever the parent waits for.
                let mut blocked_by = track.blocked_by.clone();
                blocked_by.push(track.info.id.clone());
                for child in children {
                    self.spawn(child, cursor.clone(), blocked_by.clone());
                }
            }
            Event::Failed(e) => return Err(e),
        }
        Ok(())
    }

    fn take_ready(&mut self, max: usize) -> Polled {
        let n = max.max(1).min(self.ready.len());
        Polled::Records(self.ready.drain(..n).collect())
    }

    /// The position after the document with `offset`, dropping pages wholly done.
    fn advance(track: &mut Track, offset: i64) -> Option<Cursor> {
        let mut pos = None;
        while let Some(page) = track.pages.front() {
            if page.last_offset <= offset {
                pos = Some(page.next.clone());
                track.pages.pop_front();
                continue;
            }
            // Skipped documents (`None`) can sit between others: no binary search.
            let Some(i) = page.offsets.iter().position(|o| *o == Some(offset)) else {
                break;
            };
            pos = Some(Cursor {
                resume: page.from.resume.clone(),
                skip: Skip::after(&page.docs, i, &page.from.skip),
            });
            break;
        }
        pos
    }

    /// Removes split ranges with nothing left to commit or save, and unblocks their
    /// children. Returns whether any was removed.
    fn retire_drained(&mut self) -> bool {
        let drained: Vec<(i32, Arc<str>)> = self
            .tracks
            .iter()
            .filter(|(_, t)| {
                t.retired && t.pages.is_empty() && t.blocked_by.is_empty() && t.unsaved.is_none()
            })
            .map(|(p, t)| (*p, t.info.id.clone()))
            .collect();
        for (p, id) in &drained {
            self.tracks.remove(p);
            for t in self.tracks.values_mut() {
                t.blocked_by.retain(|b| b != id);
            }
        }
        !drained.is_empty()
    }

    /// Positions ready to save, of ranges no parent holds back; parents before children.
    fn take_unsaved(&mut self, out: &mut Vec<Checkpoint>) {
        let start = out.len();
        for t in self.tracks.values_mut() {
            if !t.blocked_by.is_empty() {
                continue;
            }
            if let Some(cursor) = t.unsaved.take() {
                out.push(Checkpoint {
                    partition: t.info.partition,
                    position: Stored::new(&cursor, &t.info.range).to_text(),
                });
            }
        }
        out[start..].sort_by_key(|c| c.partition);
    }
}

#[async_trait]
impl Source for CosmosSource {
    async fn open(&mut self, ctx: SourceContext) -> Result<(), SourceError> {
        self.stop_readers();
        let client = Client::new(
            &self.cfg.endpoint,
            self.key.clone(),
            &self.cfg.database,
            &self.cfg.container,
        )
        .map_err(SourceError::Fatal)?;
        let list = match ranges::list(&client).await {
            Ok(l) => l,
            Err(f) => {
                ctx.health.set_unhealthy(f.message());
                return Err(f.into_source_error());
            }
        };
        if list.is_empty() {
            return Err(SourceError::Unavailable(format!(
                "container {} lists no partition key ranges",
                client.link()
            )));
        }
        let mut saved = HashMap::new();
        for (&partition, text) in &ctx.checkpoints {
            let s = Stored::parse(text).map_err(|e| {
                SourceError::Fatal(format!("checkpoint for partition {partition}: {e}"))
            })?;
            saved.insert(partition, s);
        }
        self.shared = Some(Arc::new(Shared {
            client,
            max_items: self.cfg.max_items_per_page,
            poll_interval: self.cfg.poll_interval,
            mode: self.cfg.mode,
            health: ctx.health.clone(),
            notify: Notify::new(),
        }));
        tracing::info!(
            pipeline = %ctx.pipeline,
            ranges = list.len(),
            resumed = saved.len(),
            "reading the Cosmos DB change feed of {}/{}",
            self.cfg.database,
            self.cfg.container
        );
        for range in list {
            let cursor = self.resume_from(&range, &saved)?;
            self.spawn(range, cursor, Vec::new());
        }
        ctx.health.set_healthy();
        Ok(())
    }

    async fn poll(&mut self, max: usize) -> Result<Polled, SourceError> {
        if !self.ready.is_empty() {
            return Ok(self.take_ready(max));
        }
        let Some(shared) = self.shared.clone() else {
            return Err(SourceError::Fatal("poll before open".into()));
        };
        let deadline = tokio::time::Instant::now() + POLL_WAIT;
        loop {
            let mut ended = None;
            for i in 0..self.live.len() {
                let idx = (self.next + i) % self.live.len();
                let partition = self.live[idx].partition;
                match self.live[idx].rx.try_recv() {
                    Ok(ev) => {
                        self.next = idx + 1;
                        self.handle(partition, ev)?;
                        if !self.ready.is_empty() {
                            return Ok(self.take_ready(max));
                        }
                    }
                    Err(mpsc::error::TryRecvError::Empty) => {}
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        ended = Some(idx);
                        break;
                    }
                }
            }
            if let Some(idx) = ended {
                // The reader ended: its range split, or a fatal error was already reported.
                self.live.remove(idx);
                continue;
            }
            if self.live.is_empty() {
                return Err(SourceError::Fatal(
                    "every change-feed reader stopped; see the errors before".into(),
                ));
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero()
                || tokio::time::timeout(left, shared.notify.notified())
                    .await
                    .is_err()
            {
                return Ok(Polled::Idle);
            }
        }
    }

    async fn commit(&mut self, through: &[Origin]) -> Result<Vec<Checkpoint>, SourceError> {
        for o in through {
            let Some(track) = self.tracks.get_mut(&o.partition) else {
                continue;
            };
            if *track.info.stream != *o.stream {
                continue;
            }
            track.done = Some(track.done.map_or(o.offset, |d| d.max(o.offset)));
            if let Some(pos) = Self::advance(track, o.offset) {
                track.unsaved = Some(pos);
            }
        }
        // A parent's last position goes out before its children's first.
        let mut out = Vec::new();
        loop {
            self.take_unsaved(&mut out);
            if !self.retire_drained() {
                break;
            }
        }
        Ok(out)
    }

    async fn close(&mut self) -> Result<(), SourceError> {
        self.stop_readers();
        Ok(())
    }

    /// Changes not delivered yet, summed over the ranges; `None` until every range's is known.
    fn lag(&self) -> Option<u64> {
        let mut total = 0u64;
        for (partition, track) in &self.tracks {
            let queued = self
                .live
                .iter()
                .any(|l| l.partition == *partition && !l.rx.is_empty());
            total = total.saturating_add(track.lag(queued)?);
        }
        Some(total)
    }
}

impl Drop for CosmosSource {
    fn drop(&mut self) {
        for l in &self.live {
            l.task.abort();
        }
    }
}
