//! Retention of delivered segments, so `sluice replay` has something to read.
//!
//! A segment wholly before the committed position holds only delivered entries. Without
//! [`Retain`] it is deleted at once; with it, delivered segments are kept while they are within
//! both limits and deleted oldest first once one is passed. They also give way to new events:
//! an append that would pass `max_bytes` first deletes delivered segments (oldest first), so
//! retained data never causes a refusal.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use super::{segment, Shared, WalError};

/// How long delivered segments are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retain {
    /// A delivered segment is deleted once its last write (its file's modification time) is
    /// older than this; `None`: no age limit.
    pub max_age: Option<Duration>,
    /// Delivered segments are deleted, oldest first, while together they take more than this;
    /// `None`: no limit of their own (the log's `max_bytes` still bounds them).
    pub max_bytes: Option<u64>,
}

impl Shared {
    /// Deletes the delivered segments outside the retention limits as of `now`, oldest first.
    pub(super) fn retire(&self, now: SystemTime) -> Result<(), WalError> {
        let committed = self.committed.load(Ordering::Acquire);
        let mut segs = self.segments.lock();
        while let Some(delivered) = delivered_bytes(&segs, committed) {
            let keep = match self.limits.retain {
                None => false,
                Some(r) => {
                    let over = r.max_bytes.is_some_and(|m| delivered > m);
                    !over && !expired(&segment::path(&self.dir, segs[0]), r.max_age, now)?
                }
            };
            if keep {
                break;
            }
            delete_oldest(self, &mut segs)?;
        }
        Ok(())
    }

    /// Deletes delivered segments, oldest first, until `bytes` are freed or none is left.
    /// Returns the log offset of the first byte kept.
    pub(super) fn make_room(&self, bytes: u64) -> Result<u64, WalError> {
        let committed = self.committed.load(Ordering::Acquire);
        let mut segs = self.segments.lock();
        let start = segs.first().copied().unwrap_or(0);
        while delivered_bytes(&segs, committed).is_some()
            && segs.first().is_some_and(|&f| f - start < bytes)
        {
            delete_oldest(self, &mut segs)?;
        }
        Ok(segs.first().copied().unwrap_or(0))
    }
}

/// Bytes of the segments wholly before `committed` (`None` when there is none). The last
/// segment, being written, is never one of them.
fn delivered_bytes(segs: &[u64], committed: u64) -> Option<u64> {
    if segs.len() > 1 && segs[1] <= committed {
        let holding = segs.partition_point(|&b| b <= committed) - 1;
        Some(segs[holding] - segs[0])
    } else {
        None
    }
}

/// Whether the segment at `path` was last written longer than `max_age` before `now`.
fn expired(
    path: &std::path::Path,
    max_age: Option<Duration>,
    now: SystemTime,
) -> Result<bool, WalError> {
    let Some(max_age) = max_age else {
        return Ok(false);
    };
    let written = match std::fs::metadata(path).and_then(|m| m.modified()) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(super::io(path)(e)),
    };
    Ok(now.duration_since(written).is_ok_and(|age| age > max_age))
}

fn delete_oldest(shared: &Shared, segs: &mut Vec<u64>) -> Result<(), WalError> {
    let base = segs.remove(0);
    let p = segment::path(&shared.dir, base);
    match std::fs::remove_file(&p) {
        Ok(()) => {
            tracing::debug!(segment = %p.display(), "write-ahead log: deleted a delivered segment");
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => {
            segs.insert(0, base);
            Err(WalError::Io { path: p, source: e })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivered_bytes_are_the_segments_wholly_before_the_commit() {
        assert_eq!(delivered_bytes(&[0], 500), None);
        assert_eq!(delivered_bytes(&[0, 100, 200], 99), None);
        assert_eq!(delivered_bytes(&[0, 100, 200], 100), Some(100));
        assert_eq!(delivered_bytes(&[0, 100, 200], 150), Some(100));
        assert_eq!(delivered_bytes(&[0, 100, 200], 250), Some(200));
        assert_eq!(delivered_bytes(&[50, 100, 200], 200), Some(150));
    }
}
