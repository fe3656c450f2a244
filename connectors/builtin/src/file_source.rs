use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use sluice_sdk::{
    async_trait, Checkpoint, Origin, Polled, Record, Source, SourceContext, SourceError,
};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// `file` source: reads JSON lines (or raw lines) and resumes from its committed byte offset.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    pub path: PathBuf,
    /// `json` (default): a line that is not JSON goes to the dead-letter queue. `raw`: any line.
    #[serde(default)]
    pub format: LineFormat,
    /// What to do at the end of the file: `wait` for more lines (default, like `tail -f`) or
    /// `stop` and let the pipeline finish.
    #[serde(default)]
    pub at_end: AtEnd,
    /// Longest line taken as a record (without its newline). A longer line is dead-lettered
    /// as `too_large` with its position and its first [`TOO_LARGE_PREFIX_BYTES`] bytes; it is
    /// never held in memory whole.
    #[serde(
        default = "default_max_line_bytes",
        with = "sluice_sdk::config::byte_size"
    )]
    pub max_line_bytes: u64,
}

fn default_max_line_bytes() -> u64 {
    1024 * 1024
}

/// How much of an over-long line its dead letter keeps.
pub const TOO_LARGE_PREFIX_BYTES: usize = 1024;

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LineFormat {
    #[default]
    Json,
    Raw,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AtEnd {
    #[default]
    Wait,
    Stop,
}

/// The file is one partition.
const PARTITION: i32 = 0;
const READ_CHUNK: usize = 256 * 1024;

/// Reads a file line by line. A record's offset is the byte position where its line starts;
/// its checkpoint is the position after the line, so a restart never re-reads a committed line.
pub struct FileSource {
    cfg: FileSourceConfig,
    stream: Arc<str>,
    file: Option<tokio::fs::File>,
    buf: BytesMut,
    /// Byte position of `buf[0]` in the file.
    buf_pos: u64,
    eof: bool,
    /// End position of each line handed out but not yet committed is derived from offsets:
    /// the checkpoint needs the line's end, which we keep per emitted record's start.
    line_ends: std::collections::VecDeque<(i64, u64)>,
    /// Bytes of `buf` already searched for a newline, so a long line is scanned once.
    scanned: usize,
    /// The over-long line being skipped, if any.
    skipping: Option<Skipped>,
    /// A range read (`sluice replay`): the byte position it starts at (a line start) and the
    /// one it stops at (lines starting before it are read; `None`: the file's size at open).
    range: Option<(u64, Option<u64>)>,
    /// Where a range read stops.
    end: Option<u64>,
}

/// An over-long line passed over without being buffered.
struct Skipped {
    start: u64,
    prefix: Bytes,
    len: u64,
}

impl FileSource {
    pub fn new(cfg: FileSourceConfig) -> Self {
        let stream: Arc<str> = cfg.path.display().to_string().into();
        FileSource {
            cfg,
            stream,
            file: None,
            buf: BytesMut::new(),
            buf_pos: 0,
            eof: false,
            line_ends: Default::default(),
            scanned: 0,
            skipping: None,
            range: None,
            end: None,
        }
    }

    /// A bounded read for `sluice replay`: the lines starting at or after byte `from` (a line
    /// start, as the offset store keeps it) and before byte `to` (the file's size when it is
    /// opened, if `None`); then `poll` answers `Finished`. Saved positions are ignored.
    pub fn range(cfg: FileSourceConfig, from: u64, to: Option<u64>) -> Self {
        let mut s = FileSource::new(cfg);
        s.range = Some((from, to));
        s
    }

    /// Whether a range read has passed its end.
    fn past_end(&self) -> bool {
        self.end.is_some_and(|e| self.buf_pos >= e)
    }

    /// Refuses a range start that is not the start of a line.
    async fn check_line_start(&self, pos: u64) -> Result<(), SourceError> {
        if pos == 0 {
            return Ok(());
        }
        let mut f = tokio::fs::File::open(&self.cfg.path)
            .await
            .map_err(|e| self.io(e))?;
        f.seek(std::io::SeekFrom::Start(pos - 1))
            .await
            .map_err(|e| self.io(e))?;
        let mut b = [0u8; 1];
        let n = f.read(&mut b).await.map_err(|e| self.io(e))?;
        if n == 1 && b[0] == b'\n' {
            return Ok(());
        }
        Err(SourceError::Fatal(format!(
            "byte {pos} of {} is not the start of a line (or is past the end)",
            self.cfg.path.display()
        )))
    }

    fn io(&self, e: std::io::Error) -> SourceError {
        SourceError::Unavailable(format!("file {}: {e}", self.cfg.path.display()))
    }

    async fn open_at(&mut self, pos: u64) -> Result<(), SourceError> {
        let mut f = tokio::fs::File::open(&self.cfg.path)
            .await
            .map_err(|e| self.io(e))?;
        f.seek(std::io::SeekFrom::Start(pos))
            .await
            .map_err(|e| self.io(e))?;
        self.file = Some(f);
        self.buf_pos = pos;
        self.buf.clear();
        self.scanned = 0;
        self.skipping = None;
        Ok(())
    }

    /// Starts passing over the line at the head of `buf`, which is longer than
    /// `max_line_bytes`: keeps its first bytes and drops what is buffered of it.
    fn start_skipping(&mut self) {
        let keep = self.buf.len().min(TOO_LARGE_PREFIX_BYTES);
        self.skipping = Some(Skipped {
            start: self.buf_pos,
            prefix: Bytes::copy_from_slice(&self.buf[..keep]),
            len: 0,
        });
        self.scanned = 0;
    }

    /// While an over-long line is being skipped, drops buffered bytes up to its newline.
    /// Returns its dead-letter record once the newline is found.
    fn skip_long_line(&mut self) -> Option<Record> {
        let skip = self.skipping.as_mut()?;
        let Some(nl) = self.buf.iter().position(|&b| b == b'\n') else {
            skip.len += self.buf.len() as u64;
            self.buf_pos += self.buf.len() as u64;
            self.buf.clear();
            return None;
        };
        let _ = self.buf.split_to(nl + 1);
        self.buf_pos += nl as u64 + 1;
        let skip = self.skipping.take()?;
        let len = skip.len + nl as u64;
        let offset = skip.start as i64;
        self.line_ends.push_back((offset, self.buf_pos));
        let mut rec = Record::new(
            skip.prefix,
            Origin::new(self.stream.clone(), PARTITION, offset),
        );
        rec.decode_error = Some(
            format!(
                "{} line of {len} bytes at byte {} is over max_line_bytes ({}); the record holds its first {} bytes",
                sluice_sdk::dead_letter::TOO_LARGE_PREFIX,
                skip.start,
                self.cfg.max_line_bytes,
                rec.value.len()
            )
            .into(),
        );
        Some(rec)
    }

    /// Reads one more chunk; returns the number of bytes read.
    async fn fill(&mut self) -> Result<usize, SourceError> {
        let Some(f) = self.file.as_mut() else {
            return Ok(0);
        };
        self.buf.reserve(READ_CHUNK);
        let n = f.read_buf(&mut self.buf).await;
        n.map_err(|e| SourceError::Unavailable(format!("file {}: {e}", self.cfg.path.display())))
    }
}

#[async_trait]
impl Source for FileSource {
    async fn open(&mut self, ctx: SourceContext) -> Result<(), SourceError> {
        if let Some((from, to)) = self.range {
            self.check_line_start(from).await?;
            let end = match to {
                Some(t) => t,
                None => tokio::fs::metadata(&self.cfg.path)
                    .await
                    .map_err(|e| self.io(e))?
                    .len(),
            };
            self.end = Some(end);
            tracing::info!(pipeline = %ctx.pipeline, path = %self.cfg.path.display(), from, to = end, "file source range read");
            return self.open_at(from).await;
        }
        let start = match ctx.checkpoints.get(&PARTITION) {
            None => 0,
            Some(p) => p.parse::<u64>().map_err(|_| {
                SourceError::Fatal(format!("stored file offset `{p}` is not a number"))
            })?,
        };
        if ctx.checkpoints.contains_key(&PARTITION) {
            tracing::info!(pipeline = %ctx.pipeline, path = %self.cfg.path.display(), byte = start, "file source resumed at byte {start}");
        } else {
            tracing::info!(pipeline = %ctx.pipeline, path = %self.cfg.path.display(), "file source starting at byte 0 (no saved position)");
        }
        self.open_at(start).await
    }

    async fn poll(&mut self, max: usize) -> Result<Polled, SourceError> {
        let mut out = Vec::new();
        loop {
            while out.len() < max {
                if self.past_end() {
                    return Ok(if out.is_empty() {
                        Polled::Finished
                    } else {
                        Polled::Records(out)
                    });
                }
                if let Some(rec) = self.skip_long_line() {
                    out.push(rec);
                    continue;
                }
                if self.skipping.is_some() {
                    break;
                }
                let Some(nl) = self.buf[self.scanned..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map(|i| self.scanned + i)
                else {
                    self.scanned = self.buf.len();
                    if self.buf.len() as u64 > self.cfg.max_line_bytes {
                        self.start_skipping();
                        continue;
                    }
                    break;
                };
                self.scanned = 0;
                if nl as u64 > self.cfg.max_line_bytes {
                    self.start_skipping();
                    continue;
                }
                let line: Bytes = self.buf.split_to(nl + 1).freeze();
                let start = self.buf_pos;
                self.buf_pos += line.len() as u64;
                let mut value = line.slice(..nl);
                if value.last() == Some(&b'\r') {
                    value = value.slice(..value.len() - 1);
                }
                if value.iter().all(|b| b.is_ascii_whitespace()) {
                    // Blank lines carry nothing; the next record's checkpoint moves past them.
                    continue;
                }
                let offset = start as i64;
                self.line_ends.push_back((offset, self.buf_pos));
                let mut rec =
                    Record::new(value, Origin::new(self.stream.clone(), PARTITION, offset));
                if self.cfg.format == LineFormat::Json {
                    match sluice_sdk::json::check(&rec.value) {
                        Ok(()) => rec.mark_json_checked(),
                        Err(e) => rec.decode_error = Some(format!("line is not JSON: {e}").into()),
                    }
                }
                out.push(rec);
            }
            if out.len() >= max || (!out.is_empty() && self.eof) {
                return Ok(Polled::Records(out));
            }
            let n = match self.fill().await {
                Ok(n) => n,
                // Lines already split are handed out (their ends are registered for commit);
                // the read is tried again on the next poll, which reports the error.
                Err(_) if !out.is_empty() => return Ok(Polled::Records(out)),
                Err(e) => return Err(e),
            };
            if n == 0 {
                self.eof = true;
                if !out.is_empty() {
                    return Ok(Polled::Records(out));
                }
                if self.cfg.at_end == AtEnd::Stop || self.end.is_some() {
                    return Ok(Polled::Finished);
                }
                // Wait for the file to grow; a partial last line stays buffered.
                tokio::time::sleep(Duration::from_millis(50)).await;
                return Ok(Polled::Idle);
            }
            self.eof = false;
        }
    }

    async fn commit(&mut self, through: &[Origin]) -> Result<Vec<Checkpoint>, SourceError> {
        let Some(last) = through
            .iter()
            .filter(|o| o.partition == PARTITION)
            .map(|o| o.offset)
            .max()
        else {
            return Ok(Vec::new());
        };
        let mut end = None;
        while let Some(&(off, e)) = self.line_ends.front() {
            if off > last {
                break;
            }
            end = Some(e);
            self.line_ends.pop_front();
        }
        Ok(end
            .map(|e| Checkpoint {
                partition: PARTITION,
                position: e.to_string(),
            })
            .into_iter()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::io::Write;

    fn ctx(cp: Option<&str>) -> SourceContext {
        let mut checkpoints = HashMap::new();
        if let Some(c) = cp {
            checkpoints.insert(PARTITION, c.to_string());
        }
        SourceContext {
            pipeline: "t".into(),
            checkpoints,
            health: Default::default(),
        }
    }

    #[tokio::test]
    async fn reads_lines_flags_bad_json_and_resumes_after_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        let mut f = std::fs::File::create(&path).unwrap();
        writeln!(f, "{{\"a\":1}}\nnot json\n\n{{\"a\":3}}").unwrap();
        let cfg = cfg(path.clone(), default_max_line_bytes());
        let mut src = FileSource::new(cfg.clone());
        src.open(ctx(None)).await.unwrap();
        let Polled::Records(recs) = src.poll(10).await.unwrap() else {
            panic!("expected records")
        };
        assert_eq!(recs.len(), 3);
        assert_eq!(&recs[0].value[..], b"{\"a\":1}");
        assert!(recs[1].decode_error.is_some());
        assert!(recs[2].decode_error.is_none());
        let cps = src.commit(&[recs[1].origin.clone()]).await.unwrap();
        assert_eq!(cps[0].position, "17");

        let mut again = FileSource::new(cfg);
        again.open(ctx(Some("17"))).await.unwrap();
        let Polled::Records(rest) = again.poll(10).await.unwrap() else {
            panic!("expected records")
        };
        assert_eq!(rest.len(), 1);
        assert_eq!(&rest[0].value[..], b"{\"a\":3}");
        assert!(matches!(again.poll(10).await.unwrap(), Polled::Finished));
    }

    fn cfg(path: PathBuf, max_line_bytes: u64) -> FileSourceConfig {
        FileSourceConfig {
            path,
            format: LineFormat::Json,
            at_end: AtEnd::Stop,
            max_line_bytes,
        }
    }

    async fn drain(src: &mut FileSource) -> Vec<Record> {
        let mut all = Vec::new();
        loop {
            match src.poll(1000).await.unwrap() {
                Polled::Records(r) => all.extend(r),
                Polled::Finished => return all,
                Polled::Idle => {}
            }
        }
    }

    #[tokio::test]
    async fn a_range_reads_the_lines_starting_between_its_bounds_and_finishes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        // Lines of 8 bytes each: starts at 0, 8, 16, 24.
        std::fs::write(&path, "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n{\"a\":4}\n").unwrap();
        let mut c = cfg(path.clone(), default_max_line_bytes());
        c.at_end = AtEnd::Wait;
        let mut src = FileSource::range(c.clone(), 8, Some(24));
        // A saved position is ignored by a range read.
        src.open(ctx(Some("0"))).await.unwrap();
        let got: Vec<i64> = drain(&mut src)
            .await
            .iter()
            .map(|r| r.origin.offset)
            .collect();
        assert_eq!(got, vec![8, 16]);
        let mut src = FileSource::range(c.clone(), 16, None);
        src.open(ctx(None)).await.unwrap();
        let got: Vec<i64> = drain(&mut src)
            .await
            .iter()
            .map(|r| r.origin.offset)
            .collect();
        assert_eq!(got, vec![16, 24]);
        let mut src = FileSource::range(c, 3, None);
        assert!(matches!(
            src.open(ctx(None)).await,
            Err(SourceError::Fatal(m)) if m.contains("not the start of a line")
        ));
    }

    #[tokio::test]
    async fn a_line_over_max_line_bytes_is_dead_lettered_without_being_buffered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        let long = format!("{{\"blob\":\"{}\"}}", "x".repeat(5 * 1024 * 1024));
        let text = format!("{{\"a\":1}}\n{long}\n{{\"a\":3}}\n");
        std::fs::write(&path, &text).unwrap();
        let mut src = FileSource::new(cfg(path.clone(), 1024 * 1024));
        src.open(ctx(None)).await.unwrap();
        let mut all = Vec::new();
        loop {
            match src.poll(1000).await.unwrap() {
                Polled::Records(r) => all.extend(r),
                Polled::Finished => break,
                Polled::Idle => {}
            }
            // Memory stays bounded by the limit plus one read, whatever the line's length.
            assert!(
                src.buf.capacity() <= 1024 * 1024 + 3 * READ_CHUNK,
                "buffer grew to {}",
                src.buf.capacity()
            );
        }
        assert_eq!(all.len(), 3);
        assert_eq!(&all[0].value[..], b"{\"a\":1}");
        assert!(all[0].decode_error.is_none());
        let big = &all[1];
        assert_eq!(big.origin.offset, 8);
        assert_eq!(&big.value[..], &long.as_bytes()[..TOO_LARGE_PREFIX_BYTES]);
        let err = big.decode_error.as_deref().unwrap();
        assert_eq!(sluice_sdk::dead_letter::decode_error_kind(err), "too_large");
        assert!(
            err.contains(&format!("line of {} bytes at byte 8", long.len())),
            "{err}"
        );
        assert_eq!(&all[2].value[..], b"{\"a\":3}");
        assert!(all[2].decode_error.is_none());
        // Committing the dead-lettered line moves the position past its newline.
        let cps = src.commit(std::slice::from_ref(&big.origin)).await.unwrap();
        assert_eq!(cps[0].position, (8 + long.len() + 1).to_string());
    }

    #[tokio::test]
    async fn a_line_at_exactly_max_line_bytes_is_a_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        let line = format!("\"{}\"", "y".repeat(98));
        std::fs::write(&path, format!("{line}\n{line}y\n")).unwrap();
        let mut src = FileSource::new(cfg(path, 100));
        src.open(ctx(None)).await.unwrap();
        let all = drain(&mut src).await;
        assert_eq!(all.len(), 2);
        assert!(all[0].decode_error.is_none());
        assert_eq!(all[0].value.len(), 100);
        let err = all[1].decode_error.as_deref().unwrap();
        assert!(err.starts_with("too_large:"), "{err}");
        assert_eq!(all[1].origin.offset, 101);
    }

    /// `/proc/self/mem` is a real file whose reads fail with EIO where memory cannot be read:
    /// a two-page shared mapping of a one-page file reads its first page, then fails.
    #[tokio::test]
    async fn a_read_error_after_lines_were_split_loses_none_of_them() {
        use std::os::fd::AsRawFd;
        let page = 4096usize;
        let mut text = Vec::new();
        let mut n = 0;
        while text.len() + 16 <= page {
            text.extend_from_slice(format!("{{\"n\":{n}}}\n").as_bytes());
            n += 1;
        }
        text.resize(page, b' ');
        let dir = tempfile::tempdir().unwrap();
        let backing = dir.path().join("page");
        std::fs::write(&backing, &text).unwrap();
        let file = std::fs::File::open(&backing).unwrap();
        // SAFETY: a read-only shared mapping of an open file; it is only read (by the kernel
        // through /proc/self/mem) and unmapped at the end of the test.
        let base = unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                2 * page,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            );
            assert_ne!(p, libc::MAP_FAILED);
            p as *mut u8
        };

        let start = base as u64;
        let mut src = FileSource::new(cfg("/proc/self/mem".into(), 1024 * 1024));
        src.open(ctx(Some(&start.to_string()))).await.unwrap();
        let first = src.poll(10_000).await;
        let Ok(Polled::Records(recs)) = first else {
            panic!("the lines read before the error were lost: {first:?}")
        };
        let ns: Vec<i64> = recs
            .iter()
            .map(|r| {
                serde_json::from_slice::<serde_json::Value>(&r.value).unwrap()["n"]
                    .as_i64()
                    .unwrap()
            })
            .collect();
        assert_eq!(ns, (0..n).collect::<Vec<_>>());
        // The failing read is reported on the next poll, and the position stays at the
        // last line handed out.
        assert!(src.poll(10_000).await.is_err());
        let last = recs.last().unwrap().origin.clone();
        let cps = src.commit(&[last]).await.unwrap();
        let end_of_lines = text.iter().rposition(|&b| b == b'\n').unwrap() as u64 + 1;
        assert_eq!(cps[0].position, (start + end_of_lines).to_string());
        // SAFETY: unmaps the page mapped above; nothing refers to it any more.
        unsafe { libc::munmap(base.cast(), 2 * page) };
    }
}
