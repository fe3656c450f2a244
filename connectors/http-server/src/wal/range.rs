//! A span of the log read without opening it for writing (`sluice replay`): the segments as
//! listed when it is opened, read between two log offsets with the checks of [`Reader`]. It
//! may run beside the pipeline: a segment the pipeline deletes once it is open stays readable
//! through the open file; one deleted before it is opened is an error ([`WalError::Gone`]).
//!
//! [`Reader`]: super::Reader

use std::fs::File;
use std::path::{Path, PathBuf};

use super::reader::{read_segment, Entry};
use super::segment::{self, Walked};
use super::{io, WalError};

/// The segments of a log as listed at one moment.
#[derive(Debug, Clone)]
pub struct Log {
    dir: PathBuf,
    bases: Vec<u64>,
    /// End of the last whole entry of the last segment.
    end: u64,
}

impl Log {
    /// Lists the segments in `dir` and finds where the entries of the last one end (an entry
    /// being written then is left out).
    pub fn open(dir: &Path) -> Result<Log, WalError> {
        let missing = || WalError::Missing {
            dir: dir.to_path_buf(),
        };
        let bases = match segment::list(dir) {
            Ok(b) if !b.is_empty() => b,
            Ok(_) => return Err(missing()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(missing()),
            Err(e) => return Err(io(dir)(e)),
        };
        let mut log = Log {
            dir: dir.to_path_buf(),
            bases,
            end: 0,
        };
        let last = *log.bases.last().unwrap_or(&0);
        let (file, len) = log.open_segment(last)?;
        log.end = last
            + match segment::walk(&file, 0, len, |_, _| false).map_err(io(dir))? {
                Walked::End(at) | Walked::Found(at) => at,
                // Left for the reader to report when a range reaches it.
                Walked::Bad(..) => len,
            };
        Ok(log)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Log offset of the first entry kept.
    pub fn first(&self) -> u64 {
        self.bases[0]
    }

    /// Log offset after the last whole entry.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Receive time (ms) of the first entry kept, if there is one.
    pub fn first_time(&self) -> Result<Option<i64>, WalError> {
        self.time_at(self.first())
    }

    /// Receive time (ms) of the entry at `offset` (an entry boundary), if there is one.
    pub fn time_at(&self, offset: u64) -> Result<Option<i64>, WalError> {
        if offset >= self.end {
            return Ok(None);
        }
        let (base, limit) = self.segment_of(offset);
        let (file, len) = self.open_segment(base)?;
        let mut ts = None;
        segment::walk(&file, offset - base, len.min(limit - base), |_, t| {
            ts = Some(t);
            true
        })
        .map_err(io(&self.dir))?;
        Ok(ts)
    }

    /// The first entry boundary at or after `offset` (the end when there is none).
    pub fn boundary(&self, offset: u64) -> Result<u64, WalError> {
        if offset >= self.end {
            return Ok(self.end);
        }
        let offset = offset.max(self.first());
        let (base, _) = self.segment_of(offset);
        self.find(base, |at, _| at >= offset)
    }

    /// Log offset of the first entry at or after `from` (a boundary) whose receive time is at
    /// or after `ms`; the end when there is none. Segments whose successor starts before `ms`
    /// are passed over without reading their entries.
    pub fn offset_of_time(&self, from: u64, ms: i64) -> Result<u64, WalError> {
        let mut from = from.max(self.first());
        for &next in &self.bases[self.index_of(from) + 1..] {
            if next >= self.end || self.time_at(next)?.is_none_or(|t| t >= ms) {
                break;
            }
            from = next;
        }
        self.find(from, |_, t| t >= ms)
    }

    /// Walks the headers from the boundary `from` until `stop(offset, ms)` accepts one; the
    /// end when none does.
    fn find(&self, from: u64, mut stop: impl FnMut(u64, i64) -> bool) -> Result<u64, WalError> {
        let i = self.index_of(from);
        for &base in &self.bases[i..] {
            let limit = self.limit_of(base);
            let start = from.max(base);
            if start >= limit {
                continue;
            }
            let (file, len) = self.open_segment(base)?;
            let limit = len.min(limit - base);
            match segment::walk(&file, start - base, limit, |at, t| stop(base + at, t))
                .map_err(io(&self.dir))?
            {
                Walked::Found(at) => return Ok(base + at),
                Walked::End(_) => {}
                Walked::Bad(at, why) => {
                    return Err(WalError::Corrupt {
                        path: segment::path(&self.dir, base),
                        byte: at,
                        offset: base + at,
                        why,
                    })
                }
            }
        }
        Ok(self.end)
    }

    fn index_of(&self, offset: u64) -> usize {
        self.bases
            .partition_point(|&b| b <= offset)
            .saturating_sub(1)
    }

    /// The segment holding `offset` and where its entries end.
    fn segment_of(&self, offset: u64) -> (u64, u64) {
        let base = self.bases[self.index_of(offset)];
        (base, self.limit_of(base))
    }

    fn limit_of(&self, base: u64) -> u64 {
        let i = self.index_of(base);
        self.bases
            .get(i + 1)
            .copied()
            .unwrap_or(self.end)
            .min(self.end)
    }

    /// Opens a segment and returns it with its length.
    fn open_segment(&self, base: u64) -> Result<(File, u64), WalError> {
        let path = segment::path(&self.dir, base);
        let file = File::open(&path).map_err(|e| gone_or(e, &path))?;
        let len = file.metadata().map_err(io(&path))?.len();
        Ok((file, len))
    }

    /// Reads the entries starting at or after `from` (an entry boundary) and before `to`.
    pub fn reader(&self, from: u64, to: u64) -> RangeReader {
        RangeReader {
            log: self.clone(),
            pos: from,
            to: to.min(self.end),
            file: None,
        }
    }
}

fn gone_or(e: std::io::Error, path: &Path) -> WalError {
    if e.kind() == std::io::ErrorKind::NotFound {
        WalError::Gone {
            path: path.to_path_buf(),
        }
    } else {
        io(path)(e)
    }
}

/// Reads a [`Log`] between two offsets, checking every entry's checksum.
pub struct RangeReader {
    log: Log,
    pos: u64,
    to: u64,
    file: Option<(u64, File)>,
}

impl RangeReader {
    /// Where the next read starts.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Whether every entry of the range was read.
    pub fn finished(&self) -> bool {
        self.pos >= self.to
    }

    /// Up to `max` entries (fewer at a segment's end); none once [`finished`](Self::finished).
    pub fn read(&mut self, max: usize) -> Result<Vec<Entry>, WalError> {
        loop {
            if self.finished() || max == 0 {
                return Ok(Vec::new());
            }
            let (base, limit) = self.log.segment_of(self.pos);
            if self.pos >= limit {
                // The end of a segment: the next starts here.
                match self.log.bases.get(self.log.index_of(self.pos) + 1) {
                    Some(&next) if next > self.pos => {
                        self.pos = next;
                        continue;
                    }
                    _ => {
                        self.pos = self.to;
                        return Ok(Vec::new());
                    }
                }
            }
            let path = segment::path(&self.log.dir, base);
            if self.file.as_ref().map(|(b, _)| *b) != Some(base) {
                let f = File::open(&path).map_err(|e| gone_or(e, &path))?;
                self.file = Some((base, f));
            }
            let Some((_, file)) = self.file.as_ref() else {
                return Ok(Vec::new());
            };
            let mut out = read_segment(file, &path, base, self.pos, limit, max)?;
            out.retain(|e| e.offset < self.to);
            match out.last() {
                Some(last) => self.pos = last.end,
                None => self.pos = self.to,
            }
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Segments of `per` entries each; entry `i` received at `1000 + 10 * i` with payload `i`.
    fn log(dir: &Path, segments: usize, per: usize) -> Vec<u64> {
        let mut offsets = Vec::new();
        let mut at = 0u64;
        for s in 0..segments {
            let mut buf = Vec::new();
            let base = at;
            for j in 0..per {
                let i = s * per + j;
                offsets.push(at);
                let before = buf.len();
                segment::encode(&mut buf, 1000 + 10 * i as i64, i.to_string().as_bytes());
                at += (buf.len() - before) as u64;
            }
            std::fs::write(segment::path(dir, base), &buf).unwrap();
        }
        offsets.push(at);
        offsets
    }

    fn read_all(r: &mut RangeReader) -> Vec<String> {
        let mut out = Vec::new();
        while !r.finished() {
            for e in r.read(3).unwrap() {
                out.push(String::from_utf8(e.payload.to_vec()).unwrap());
            }
        }
        out
    }

    fn names(range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|i| i.to_string()).collect()
    }

    #[test]
    fn a_range_reads_the_entries_starting_between_its_offsets_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let off = log(dir.path(), 3, 4);
        let l = Log::open(dir.path()).unwrap();
        assert_eq!((l.first(), l.end()), (0, off[12]));
        assert_eq!(read_all(&mut l.reader(off[2], off[9])), names(2..9));
        assert_eq!(read_all(&mut l.reader(0, l.end())), names(0..12));
        // Not a boundary: the first entry at or after it.
        assert_eq!(l.boundary(off[5] + 1).unwrap(), off[6]);
        assert_eq!(l.boundary(off[4]).unwrap(), off[4]);
        assert_eq!(l.boundary(off[12] + 100).unwrap(), off[12]);
        // Times: the first entry received at or after.
        assert_eq!(l.offset_of_time(0, 1035).unwrap(), off[4]);
        assert_eq!(l.offset_of_time(0, 1040).unwrap(), off[4]);
        assert_eq!(l.offset_of_time(0, 0).unwrap(), 0);
        assert_eq!(l.offset_of_time(0, 1075).unwrap(), off[8]);
        assert_eq!(l.offset_of_time(0, 9999).unwrap(), off[12]);
        assert_eq!(l.first_time().unwrap(), Some(1000));
    }

    #[test]
    fn a_corrupt_entry_in_the_range_is_reported_and_not_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let off = log(dir.path(), 2, 4);
        let p = segment::path(dir.path(), 0);
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[off[2] as usize + segment::HEADER_BYTES] ^= 0x20;
        std::fs::write(&p, &bytes).unwrap();
        let l = Log::open(dir.path()).unwrap();
        let mut r = l.reader(0, l.end());
        let mut got = Vec::new();
        let err = loop {
            match r.read(10) {
                Ok(es) => got.extend(es.into_iter().map(|e| e.offset)),
                Err(e) => break e.to_string(),
            }
        };
        assert_eq!(got, vec![off[0], off[1]]);
        assert!(err.contains(&p.display().to_string()), "{err}");
        assert!(
            err.contains(&format!("at byte {} (log offset {})", off[2], off[2])),
            "{err}"
        );
        assert!(err.contains("checksum mismatch"), "{err}");
        // Again: the same error, never the entries after it.
        assert!(r.read(10).is_err());
    }

    #[test]
    fn a_segment_deleted_before_it_is_opened_is_an_error_one_open_stays_readable() {
        let dir = tempfile::tempdir().unwrap();
        let off = log(dir.path(), 3, 2);
        let l = Log::open(dir.path()).unwrap();
        let mut r = l.reader(0, l.end());
        assert_eq!(r.read(1).unwrap()[0].offset, 0);
        std::fs::remove_file(segment::path(dir.path(), 0)).unwrap();
        std::fs::remove_file(segment::path(dir.path(), off[2])).unwrap();
        assert_eq!(r.read(5).unwrap()[0].offset, off[1]);
        let err = r.read(5).unwrap_err();
        assert!(matches!(err, WalError::Gone { .. }), "{err}");
        assert!(matches!(
            Log::open(&dir.path().join("none")),
            Err(WalError::Missing { .. })
        ));
    }

    #[test]
    fn an_entry_being_written_is_left_out_of_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let off = log(dir.path(), 1, 3);
        let p = segment::path(dir.path(), 0);
        let mut more = Vec::new();
        segment::encode(&mut more, 5, b"partial");
        more.truncate(10);
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        std::io::Write::write_all(&mut f, &more).unwrap();
        let l = Log::open(dir.path()).unwrap();
        assert_eq!(l.end(), off[3]);
        assert_eq!(read_all(&mut l.reader(0, u64::MAX)), names(0..3));
    }
}
