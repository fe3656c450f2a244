//! The writer thread: group commit.
//!
//! Appends queue up while a write or fsync runs; the writer takes everything queued, writes it
//! with one `write` into the current segment, and answers each append only after an fsync that
//! covers it (`Fsync::Always`: right away, shared by the whole group; `Fsync::Interval`: at the
//! next tick). After a failed write or fsync the writer stops taking appends: what reached the
//! disk is unknown, so the log is reopened (and checked) when the pipeline restarts.

use std::fs::File;
use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::{segment, AppendError, Fsync, Shared, WalError};

pub(crate) enum Request {
    Append {
        buf: Vec<u8>,
        reply: oneshot::Sender<Result<u64, AppendError>>,
    },
    Stop,
}

type Reply = (oneshot::Sender<Result<u64, AppendError>>, u64);

pub(crate) fn start(
    shared: Arc<Shared>,
    base: u64,
    end: u64,
    fsync: Fsync,
) -> Result<(Sender<Request>, std::thread::JoinHandle<()>), WalError> {
    let path = segment::path(&shared.dir, base);
    let file = sluice_sdk::fs::open_private_append(&path).map_err(super::io(&path))?;
    let (tx, rx) = std::sync::mpsc::channel();
    let mut w = Writer {
        shared,
        file,
        base,
        end,
        fsync,
        group: Vec::new(),
        unsynced: Vec::new(),
        last_sync: Instant::now(),
    };
    let thread = std::thread::Builder::new()
        .name("http-wal".into())
        .spawn(move || w.run(rx))
        .map_err(super::io(&path))?;
    Ok((tx, thread))
}

struct Writer {
    shared: Arc<Shared>,
    file: File,
    /// Base of the segment being written.
    base: u64,
    end: u64,
    fsync: Fsync,
    group: Vec<u8>,
    /// Appends written and waiting for an fsync.
    unsynced: Vec<Reply>,
    last_sync: Instant,
}

impl Writer {
    fn run(&mut self, rx: Receiver<Request>) {
        let mut stopping = false;
        while !stopping {
            let wait = match self.fsync {
                Fsync::Interval(every) if !self.unsynced.is_empty() => {
                    every.saturating_sub(self.last_sync.elapsed())
                }
                _ => Duration::from_secs(3600),
            };
            let mut replies = Vec::new();
            match rx.recv_timeout(wait) {
                Ok(Request::Append { buf, reply }) => self.take(buf, reply, &mut replies),
                Ok(Request::Stop) | Err(RecvTimeoutError::Disconnected) => stopping = true,
                Err(RecvTimeoutError::Timeout) => {}
            }
            while let Ok(req) = rx.try_recv() {
                match req {
                    Request::Append { buf, reply } => self.take(buf, reply, &mut replies),
                    Request::Stop => stopping = true,
                }
            }
            if let Err(e) = self.write_group(replies) {
                self.fail(e, &rx);
                return;
            }
            let due = match self.fsync {
                Fsync::Always => true,
                Fsync::Interval(every) => self.last_sync.elapsed() >= every,
            };
            if !self.unsynced.is_empty() && (due || stopping) {
                if let Err(e) = self.sync() {
                    self.fail(e, &rx);
                    return;
                }
            }
        }
    }

    /// Adds one append to the group being formed.
    fn take(
        &mut self,
        buf: Vec<u8>,
        reply: oneshot::Sender<Result<u64, AppendError>>,
        replies: &mut Vec<Reply>,
    ) {
        let at = self.end + self.group.len() as u64;
        if self.group.is_empty() {
            self.group = buf;
        } else {
            self.group.extend_from_slice(&buf);
        }
        replies.push((reply, at));
        self.shared
            .queued
            .fetch_sub(self.group.len() as u64 - (at - self.end), Ordering::AcqRel);
    }

    /// Writes the group with one `write` call, after starting a new segment if the current
    /// one is full.
    fn write_group(&mut self, replies: Vec<Reply>) -> std::io::Result<()> {
        if self.group.is_empty() {
            return Ok(());
        }
        if self.end - self.base >= self.shared.limits.segment_bytes {
            self.roll()?;
        }
        let result = self.file.write_all(&self.group);
        let n = self.group.len() as u64;
        self.group.clear();
        if self.group.capacity() > 16 * 1024 * 1024 {
            self.group = Vec::new();
        }
        self.unsynced.extend(replies);
        result?;
        self.end += n;
        self.shared.end.store(self.end, Ordering::Release);
        Ok(())
    }

    /// Closes the current segment (fsynced, so a closed segment is always whole) and starts
    /// the next at the current end.
    fn roll(&mut self) -> std::io::Result<()> {
        self.sync()?;
        let path = segment::path(&self.shared.dir, self.end);
        self.file = sluice_sdk::fs::open_private_append(&path)?;
        self.base = self.end;
        self.shared.segments.lock().push(self.end);
        Ok(())
    }

    /// Fsyncs the segment, then answers the appends it covers and wakes the reader.
    fn sync(&mut self) -> std::io::Result<()> {
        self.file.sync_data()?;
        self.last_sync = Instant::now();
        self.shared.durable.store(self.end, Ordering::Release);
        for (reply, at) in self.unsynced.drain(..) {
            let _ = reply.send(Ok(at));
        }
        self.shared.grown.notify_one();
        Ok(())
    }

    /// Refuses every append from now on: after a failed write or fsync, what the disk holds
    /// is unknown.
    fn fail(&mut self, e: std::io::Error, rx: &Receiver<Request>) {
        let path = segment::path(&self.shared.dir, self.base);
        let why = format!("{}: {e}", path.display());
        tracing::error!(error = %why, "write-ahead log: write or fsync failed; refusing events until the pipeline restarts");
        *self.shared.failed.lock() = Some(why.clone());
        for (reply, _) in self.unsynced.drain(..) {
            let _ = reply.send(Err(AppendError::Failed(why.clone())));
        }
        self.shared.grown.notify_one();
        while let Ok(req) = rx.recv() {
            match req {
                Request::Append { reply, buf } => {
                    self.shared
                        .queued
                        .fetch_sub(buf.len() as u64, Ordering::AcqRel);
                    let _ = reply.send(Err(AppendError::Failed(why.clone())));
                }
                Request::Stop => return,
            }
        }
    }
}
