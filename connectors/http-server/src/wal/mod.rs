//! The write-ahead log that makes an answered event durable.
//!
//! Requests append encoded entries through [`Wal::append`], which returns only once the
//! entries are written and fsynced ([`writer`]); the pipeline reads them back in order with a
//! [`Reader`] and, once the host commits a position, segments wholly below it hold only
//! delivered entries: they are deleted at once, or kept for `sluice replay` within the
//! [`Retain`] limits (oldest deleted first, and always before an append would be refused).
//! [`range`] reads a span of the log without opening it for writing.
//! On open the log is checked from the committed position: a torn tail (an interrupted write
//! that was never answered) is cut, a damaged entry followed by valid ones is an error.

pub mod range;
pub mod reader;
pub mod retain;
pub mod segment;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use tokio::sync::{oneshot, Notify};

pub use reader::{Entry, Reader};
pub use retain::Retain;
use segment::Scan;

/// When appended entries are fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// Each append waits for an fsync that covers it; appends that arrive while one runs
    /// share the next.
    Always,
    /// Appends wait for the next fsync, run at most this often.
    Interval(Duration),
}

/// Sizes that bound the log on disk.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most bytes the segments may take; an append that would pass it is refused once no
    /// delivered segment is left to delete.
    pub max_bytes: u64,
    /// Most bytes written and not yet committed by the pipeline; past it appends are refused.
    pub high_water_bytes: u64,
    /// A segment is closed and a new one started once it holds this many bytes.
    pub segment_bytes: u64,
    /// How long delivered segments are kept; `None`: deleted as soon as they are delivered.
    pub retain: Option<Retain>,
}

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("write-ahead log {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "write-ahead log segment {path} is corrupt at byte {byte} (log offset {offset}): {why}; \
         the pipeline stops rather than skip it (move the segment away to accept the loss)"
    )]
    Corrupt {
        path: PathBuf,
        byte: u64,
        offset: u64,
        why: &'static str,
    },
    #[error("write-ahead log segment {path} was deleted (delivered and past its retention) before it could be read")]
    Gone { path: PathBuf },
    #[error("no write-ahead log in {dir} (the pipeline never received an event there)")]
    Missing { dir: PathBuf },
    #[error("the committed position {committed} is past the end of the write-ahead log in {dir} ({end})")]
    PastEnd {
        dir: PathBuf,
        committed: u64,
        end: u64,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Why an append was refused; nothing of it was kept.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AppendError {
    #[error("the write-ahead log is at its size cap")]
    Full,
    #[error("the pipeline is behind: the write-ahead log holds more undelivered bytes than its high-water mark")]
    HighWater,
    #[error("the write-ahead log failed: {0}")]
    Failed(String),
    #[error("the write-ahead log is closed")]
    Closed,
}

/// State shared by the writer thread, the request handlers and the reader.
pub(crate) struct Shared {
    dir: PathBuf,
    limits: Limits,
    /// Segment bases in order; the last one is being written.
    segments: Mutex<Vec<u64>>,
    /// End of what was written.
    end: AtomicU64,
    /// End of what was written and fsynced: the reader stops here.
    durable: AtomicU64,
    /// Bytes admitted and not yet written.
    queued: AtomicU64,
    /// The committed position: everything before it was delivered.
    committed: AtomicU64,
    failed: Mutex<Option<String>>,
    /// Wakes the reader when `durable` moves.
    grown: Notify,
}

impl Shared {
    fn first_base(&self) -> u64 {
        self.segments.lock().first().copied().unwrap_or(0)
    }

    /// Reserves room for `n` bytes or says why there is none. Retained delivered segments
    /// are deleted (oldest first) to make room before an append is refused as `Full`.
    fn admit(&self, n: u64) -> Result<(), AppendError> {
        if let Some(why) = self.failed.lock().clone() {
            return Err(AppendError::Failed(why));
        }
        let mut first = self.first_base();
        let mut queued = self.queued.load(Ordering::Acquire);
        loop {
            let end = self.end.load(Ordering::Acquire) + queued;
            if end + n - first > self.limits.max_bytes {
                let over = end + n - first - self.limits.max_bytes;
                let now = self.make_room(over).map_err(|e| {
                    tracing::warn!(error = %e, "write-ahead log: cannot delete a delivered segment to make room");
                    AppendError::Full
                })?;
                if now == first {
                    return Err(AppendError::Full);
                }
                first = now;
                continue;
            }
            if end.saturating_sub(self.committed.load(Ordering::Acquire))
                > self.limits.high_water_bytes
            {
                return Err(AppendError::HighWater);
            }
            match self.queued.compare_exchange_weak(
                queued,
                queued + n,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(()),
                Err(now) => queued = now,
            }
        }
    }
}

/// The directory of the write-ahead log of `pipeline` under the host's `data_dir`.
pub fn dir(data_dir: &Path, pipeline: &str) -> PathBuf {
    data_dir.join("wal").join(pipeline)
}

/// The log: appends from any task, read by one [`Reader`].
pub struct Wal {
    shared: Arc<Shared>,
    tx: std::sync::mpsc::Sender<writer::Request>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// What [`Wal::open`] found.
pub struct Opened {
    pub wal: Arc<Wal>,
    pub reader: Reader,
    /// Where reading starts: the committed position, or the first retained byte.
    pub start: u64,
    /// Bytes cut from a torn tail.
    pub cut: u64,
}

impl Wal {
    /// Opens (or creates) the log in `dir`, checks it from `committed` and starts the writer.
    pub fn open(
        dir: &Path,
        committed: Option<u64>,
        fsync: Fsync,
        limits: Limits,
    ) -> Result<Opened, WalError> {
        sluice_sdk::fs::create_private_dir(dir).map_err(io(dir))?;
        let mut bases = segment::list(dir).map_err(io(dir))?;
        let resume = committed.unwrap_or(0);
        if bases.is_empty() {
            bases.push(resume);
            let p = segment::path(dir, resume);
            sluice_sdk::fs::open_private_append(&p).map_err(io(&p))?;
        }
        let mut cut = 0;
        let mut end = 0;
        for (i, &base) in bases.iter().enumerate() {
            let p = segment::path(dir, base);
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&p)
                .map_err(io(&p))?;
            let from = resume.saturating_sub(base);
            let last = i + 1 == bases.len();
            let len = match segment::scan(&file, from).map_err(io(&p))? {
                Scan::Clean { len } => len,
                Scan::Corrupt { at, why } => {
                    return Err(WalError::Corrupt {
                        path: p,
                        byte: at,
                        offset: base + at,
                        why,
                    })
                }
                Scan::Torn { valid, len } if last => {
                    tracing::warn!(
                        segment = %p.display(),
                        byte = valid,
                        bytes = len - valid,
                        "write-ahead log: cutting {} bytes of a torn tail left by an interrupted write (never answered)",
                        len - valid
                    );
                    file.set_len(valid).map_err(io(&p))?;
                    file.sync_all().map_err(io(&p))?;
                    cut = len - valid;
                    valid
                }
                Scan::Torn { valid, .. } => {
                    return Err(WalError::Corrupt {
                        path: p,
                        byte: valid,
                        offset: base + valid,
                        why: "a closed segment ends inside an entry",
                    })
                }
            };
            if !last && base + len != bases[i + 1] {
                return Err(WalError::Corrupt {
                    path: p,
                    byte: len,
                    offset: base + len,
                    why: "the segment does not end where the next one starts",
                });
            }
            end = base + len;
        }
        if resume > end {
            return Err(WalError::PastEnd {
                dir: dir.to_path_buf(),
                committed: resume,
                end,
            });
        }
        let start = resume.max(bases[0]);
        let last_base = *bases.last().unwrap_or(&0);
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            limits,
            segments: Mutex::new(bases),
            end: AtomicU64::new(end),
            durable: AtomicU64::new(end),
            queued: AtomicU64::new(0),
            committed: AtomicU64::new(start),
            failed: Mutex::new(None),
            grown: Notify::new(),
        });
        // Segments wholly before the committed position hold only delivered entries.
        shared.retire(SystemTime::now())?;
        let (tx, thread) = writer::start(shared.clone(), last_base, end, fsync)?;
        Ok(Opened {
            wal: Arc::new(Wal {
                shared: shared.clone(),
                tx,
                thread: Mutex::new(Some(thread)),
            }),
            reader: Reader::new(shared, start),
            start,
            cut,
        })
    }

    /// Appends `buf` (entries made with [`segment::encode`]) and waits until they are
    /// fsynced. Returns the log offset of the first entry.
    pub async fn append(&self, buf: Vec<u8>) -> Result<u64, AppendError> {
        let n = buf.len() as u64;
        self.shared.admit(n)?;
        let (reply, rx) = oneshot::channel();
        if self
            .tx
            .send(writer::Request::Append { buf, reply })
            .is_err()
        {
            self.shared.queued.fetch_sub(n, Ordering::AcqRel);
            return Err(AppendError::Closed);
        }
        rx.await.unwrap_or(Err(AppendError::Closed))
    }

    /// Everything before `pos` was delivered: the segments wholly before it are deleted, or
    /// kept within the retention limits.
    pub fn commit(&self, pos: u64) -> Result<(), WalError> {
        self.shared.committed.fetch_max(pos, Ordering::AcqRel);
        self.shared.retire(SystemTime::now())
    }

    /// Deletes the delivered segments past their retention (`max_age` passes without a
    /// commit too: the source calls this while idle).
    pub fn retire(&self) -> Result<(), WalError> {
        self.shared.retire(SystemTime::now())
    }

    /// Log offset of the first byte the segments hold.
    pub fn first_offset(&self) -> u64 {
        self.shared.first_base()
    }

    /// Why the log stopped taking appends, if it did.
    pub fn failure(&self) -> Option<String> {
        self.shared.failed.lock().clone()
    }

    /// End of the fsynced entries.
    pub fn durable_end(&self) -> u64 {
        self.shared.durable.load(Ordering::Acquire)
    }

    /// Bytes the retained segments take.
    pub fn disk_bytes(&self) -> u64 {
        self.shared.end.load(Ordering::Acquire) - self.shared.first_base()
    }

    /// Stops the writer after it has written and fsynced what it was given.
    pub fn close(&self) {
        let _ = self.tx.send(writer::Request::Stop);
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.close();
    }
}
