//! The background pull loop of one partition key range.
//!
//! Each range has its own task so that a slow, throttled or splitting range never holds up
//! the others, and so that `Source::poll` only ever waits on a channel. A task hands pages to
//! the source over a small bounded channel (backpressure: a task waits when the host is slow)
//! and ends when its range split, after telling which children continue from where.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sluice_sdk::{Health, SourceError};
use tokio::sync::{mpsc, Notify};

use crate::client::Client;
use crate::config::Mode;
use crate::feed::{self, Doc, Fetched};
use crate::position::{Cursor, Resume};
use crate::ranges::{self, PkRange};
use sluice_sdk::retry::Backoff;

use crate::response::Verdict;

/// Pages a range may have read ahead of the source.
pub const CHANNEL_PAGES: usize = 2;

/// What a reader tells the source, in order.
#[derive(Debug)]
pub enum Event {
    /// A page with at least one document; `from` is the cursor it was fetched with, `next`
    /// the cursor after it.
    Page {
        from: Cursor,
        next: Cursor,
        docs: Vec<Doc>,
    },
    /// The position moved without documents (the first etag of a start from now); worth
    /// saving at once so that changes made before the next poll are not skipped.
    Position(Cursor),
    /// The range is gone; these ranges continue from `cursor`. The reader has ended.
    Split {
        children: Vec<PkRange>,
        cursor: Cursor,
    },
    /// An error to surface from `poll`. The reader goes on retrying unless it is fatal.
    Failed(SourceError),
}

/// What every reader shares.
pub struct Shared {
    pub client: Client,
    pub max_items: u32,
    pub poll_interval: Duration,
    pub mode: Mode,
    pub health: Health,
    /// Woken after every event, so `poll` can wait on all readers at once.
    pub notify: Notify,
}

/// What a range's reader last learned from the server, read by the source for `lag`.
#[derive(Debug)]
pub struct ServerPosition {
    /// The range's latest LSN (`lsn` header of the last answer); -1 until one is known.
    latest_lsn: AtomicI64,
    /// The last answer was `304`: the reader has handed over every change there is.
    caught_up: AtomicBool,
}

impl Default for ServerPosition {
    fn default() -> Self {
        ServerPosition {
            latest_lsn: AtomicI64::new(-1),
            caught_up: AtomicBool::new(false),
        }
    }
}

impl ServerPosition {
    fn note(&self, latest_lsn: Option<i64>, caught_up: bool) {
        if let Some(l) = latest_lsn {
            self.latest_lsn.store(l, Ordering::Relaxed);
        }
        self.caught_up.store(caught_up, Ordering::Relaxed);
    }

    pub fn latest_lsn(&self) -> Option<i64> {
        Some(self.latest_lsn.load(Ordering::Relaxed)).filter(|l| *l >= 0)
    }

    pub fn caught_up(&self) -> bool {
        self.caught_up.load(Ordering::Relaxed)
    }
}

/// One range's pull loop.
pub struct Reader {
    pub shared: Arc<Shared>,
    pub range: PkRange,
    pub cursor: Cursor,
    pub tx: mpsc::Sender<Event>,
    pub server: Arc<ServerPosition>,
}

const BACKOFF_INITIAL: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
const AUTH_BACKOFF_INITIAL: Duration = Duration::from_secs(2);
const AUTH_BACKOFF_MAX: Duration = Duration::from_secs(60);

impl Reader {
    /// Runs until the range splits, a fatal error, or the source goes away.
    pub async fn run(mut self) {
        let mut backoff = Backoff::new(BACKOFF_INITIAL, BACKOFF_MAX);
        let mut auth_backoff = Backoff::new(AUTH_BACKOFF_INITIAL, AUTH_BACKOFF_MAX);
        // A point-in-time start may answer an empty page with a new etag: ask once more
        // at once before concluding there is nothing.
        let mut empty_retried = false;
        loop {
            let sh = &self.shared;
            let answer = feed::fetch(
                &sh.client,
                &self.range.id,
                &self.cursor.resume,
                sh.max_items,
                sh.mode,
            )
            .await;
            let failure = match answer {
                Ok(answer) => {
                    sh.health.set_healthy();
                    backoff.reset();
                    auth_backoff.reset();
                    match self.take(answer, &mut empty_retried).await {
                        Some(Pace::Now) => continue,
                        Some(Pace::Wait) => {
                            tokio::time::sleep(self.shared.poll_interval).await;
                            continue;
                        }
                        None => return,
                    }
                }
                Err(f) => f,
            };
            let wait = match failure {
                Verdict::Split => match self.split().await {
                    Ok(children) => {
                        let cursor = self.cursor.clone();
                        self.send(Event::Split { children, cursor }).await;
                        return;
                    }
                    Err(f) => self.note(f, &mut backoff, &mut auth_backoff).await,
                },
                Verdict::Refresh(m) => {
                    // The topology is moving: if our range is already gone, it is a split.
                    match ranges::list(&self.shared.client).await {
                        Ok(list) if !list.iter().any(|r| r.id == self.range.id) => {
                            Some(Duration::ZERO)
                        }
                        Ok(_) => {
                            self.note(Verdict::Transient(m), &mut backoff, &mut auth_backoff)
                                .await
                        }
                        Err(f) => self.note(f, &mut backoff, &mut auth_backoff).await,
                    }
                }
                f => self.note(f, &mut backoff, &mut auth_backoff).await,
            };
            match wait {
                Some(d) => tokio::time::sleep(d).await,
                None => return,
            }
        }
    }

    /// Hands an answer over and moves the cursor; `None` when the source is gone.
    async fn take(&mut self, answer: Fetched, empty_retried: &mut bool) -> Option<Pace> {
        let started = !matches!(self.cursor.resume, Resume::Etag(_));
        match answer {
            Fetched::Page {
                etag,
                mut docs,
                latest_lsn,
            } => {
                self.server.note(latest_lsn, false);
                let next = Cursor {
                    resume: Resume::Etag(etag),
                    skip: self.cursor.skip.apply(&mut docs),
                };
                let from = std::mem::replace(&mut self.cursor, next);
                let fresh = docs.iter().any(|d| !d.skipped);
                if fresh {
                    *empty_retried = false;
                    self.send(Event::Page {
                        from,
                        next: self.cursor.clone(),
                        docs,
                    })
                    .await?;
                    return Some(Pace::Now);
                }
                if started {
                    self.send(Event::Position(self.cursor.clone())).await?;
                }
                if docs.is_empty() && !std::mem::replace(empty_retried, true) {
                    return Some(Pace::Now);
                }
                // Only already-done documents: the next page may have new ones.
                Some(if docs.is_empty() {
                    Pace::Wait
                } else {
                    Pace::Now
                })
            }
            Fetched::NotModified { etag, latest_lsn } => {
                self.server.note(latest_lsn, true);
                *empty_retried = false;
                if let Some(etag) = etag {
                    // Nothing follows the old continuation, so nothing is left to skip.
                    self.cursor = Cursor::new(Resume::Etag(etag));
                    if started {
                        self.send(Event::Position(self.cursor.clone())).await?;
                    }
                }
                Some(Pace::Wait)
            }
        }
    }

    /// Reports a failure; returns how long to wait before retrying, `None` to stop.
    async fn note(
        &self,
        failure: Verdict,
        backoff: &mut Backoff,
        auth_backoff: &mut Backoff,
    ) -> Option<Duration> {
        let health = &self.shared.health;
        match failure {
            Verdict::Throttled(d) => {
                tracing::debug!(range = %self.range.id, wait = ?d, "change feed throttled (429)");
                Some(d)
            }
            Verdict::Transient(m) | Verdict::Refresh(m) => {
                tracing::warn!(range = %self.range.id, "{m}; retrying");
                health.set_unhealthy(m);
                Some(backoff.next_delay())
            }
            Verdict::Split => Some(backoff.next_delay()),
            Verdict::Unauthorized(m) => {
                health.set_unhealthy(m.clone());
                self.send(Event::Failed(SourceError::Unauthorized(m)))
                    .await?;
                Some(auth_backoff.next_delay())
            }
            Verdict::Fatal(m) => {
                health.set_unhealthy(m.clone());
                self.send(Event::Failed(SourceError::Fatal(m))).await;
                None
            }
        }
    }

    /// Finds the ranges that took over from this one.
    async fn split(&self) -> Result<Vec<PkRange>, Verdict> {
        let list = ranges::list(&self.shared.client).await?;
        let children: Vec<PkRange> = ranges::children_of(&self.range, &list)
            .into_iter()
            .cloned()
            .collect();
        if children.is_empty() {
            return Err(Verdict::Transient(format!(
                "partition key range {} is gone but no range lists it as a parent yet",
                self.range.id
            )));
        }
        if let Some(wider) = children.iter().find(|c| !self.range.contains(c)) {
            return Err(Verdict::Fatal(format!(
                "partition key range {} was merged into {}; reading a merged range from one \
                 parent's continuation would skip or repeat changes, and merges are not \
                 supported yet",
                self.range.id, wider.id
            )));
        }
        tracing::info!(
            range = %self.range.id,
            children = ?children.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
            "partition key range split; children continue from its continuation"
        );
        Ok(children)
    }

    async fn send(&self, ev: Event) -> Option<()> {
        self.tx.send(ev).await.ok()?;
        self.shared.notify.notify_one();
        Some(())
    }
}

/// When to ask again.
enum Pace {
    Now,
    Wait,
}
