//! Reads the log back in order, up to what is fsynced, checking every entry's checksum.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::segment::{self, Decoded};
use super::{Shared, WalError};

/// How much one read takes from a segment (more when a single entry is larger).
const CHUNK: usize = 1024 * 1024;

/// One entry read back.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Log offset of the entry's first byte.
    pub offset: u64,
    /// Log offset after the entry: where reading resumes once it is committed.
    pub end: u64,
    pub ts_ms: i64,
    pub payload: Bytes,
}

/// The pipeline's cursor in the log.
pub struct Reader {
    shared: Arc<Shared>,
    pos: u64,
    file: Option<(u64, File)>,
}

impl Reader {
    pub(crate) fn new(shared: Arc<Shared>, pos: u64) -> Self {
        Reader {
            shared,
            pos,
            file: None,
        }
    }

    /// Where the next read starts.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Waits up to `timeout` for entries beyond the reader's position to become durable.
    pub async fn wait(&self, timeout: Duration) {
        if self.shared.durable.load(Ordering::Acquire) > self.pos {
            return;
        }
        let _ = tokio::time::timeout(timeout, self.shared.grown.notified()).await;
    }

    /// Up to `max` durable entries from the current position (fewer at a segment's end).
    pub fn read(&mut self, max: usize) -> Result<Vec<Entry>, WalError> {
        let durable = self.shared.durable.load(Ordering::Acquire);
        if self.pos >= durable || max == 0 {
            return Ok(Vec::new());
        }
        let (base, next) = {
            let segs = self.shared.segments.lock();
            let i = segs.partition_point(|&b| b <= self.pos).saturating_sub(1);
            (segs[i], segs.get(i + 1).copied())
        };
        let limit = next.map_or(durable, |n| n.min(durable));
        if self.pos >= limit {
            return Ok(Vec::new());
        }
        let path = segment::path(&self.shared.dir, base);
        if self.file.as_ref().map(|(b, _)| *b) != Some(base) {
            let f = File::open(&path).map_err(super::io(&path))?;
            self.file = Some((base, f));
        }
        let Some((_, file)) = self.file.as_ref() else {
            return Ok(Vec::new());
        };
        let out = read_segment(file, &path, base, self.pos, limit, max)?;
        if let Some(last) = out.last() {
            self.pos = last.end;
        }
        Ok(out)
    }
}

/// Up to `max` entries of the segment `file` (at `path`, its first byte at log offset `base`)
/// from log offset `pos` (an entry boundary), none running past log offset `limit`; checks
/// every entry's checksum. Fewer when a bad entry follows good ones (the next read starts at
/// it and fails); an error when the first entry is bad or runs past `limit`.
pub(crate) fn read_segment(
    file: &File,
    path: &Path,
    base: u64,
    pos: u64,
    limit: u64,
    max: usize,
) -> Result<Vec<Entry>, WalError> {
    let corrupt = |why| WalError::Corrupt {
        path: path.to_path_buf(),
        byte: pos - base,
        offset: pos,
        why,
    };
    if pos >= limit || max == 0 {
        return Ok(Vec::new());
    }
    let mut want = CHUNK;
    loop {
        let n = want.min((limit - pos) as usize);
        let mut buf = BytesMut::zeroed(n);
        let got = segment::read_at(file, &mut buf, pos - base).map_err(super::io(path))?;
        buf.truncate(got);
        let buf = buf.freeze();
        let mut out = Vec::new();
        let mut at = 0usize;
        while out.len() < max {
            match segment::decode(&buf[at..]) {
                Decoded::Entry { payload, ts_ms } => {
                    let end = at + payload.end;
                    out.push(Entry {
                        offset: pos + at as u64,
                        end: pos + end as u64,
                        ts_ms,
                        payload: buf.slice(at + payload.start..end),
                    });
                    at = end;
                }
                Decoded::Partial if at == 0 && n < (limit - pos) as usize => break,
                Decoded::Partial if at == 0 => {
                    return Err(corrupt("an entry runs past the fsynced end"))
                }
                Decoded::Partial => break,
                Decoded::Bad(why) => {
                    if out.is_empty() {
                        return Err(corrupt(why));
                    }
                    // Hand out the good entries; the next read starts at the bad one.
                    break;
                }
            }
            if at == buf.len() {
                break;
            }
        }
        if out.is_empty() {
            want *= 2;
            continue;
        }
        return Ok(out);
    }
}
