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
}

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

/// Checkpoint key: the file has one partition.
const PARTITION: &str = "0";
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
        }
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
        Ok(())
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
        let start = match ctx.checkpoints.get(PARTITION) {
            None => 0,
            Some(p) => p.parse::<u64>().map_err(|_| {
                SourceError::Fatal(format!("stored file offset `{p}` is not a number"))
            })?,
        };
        self.open_at(start).await
    }

    async fn poll(&mut self, max: usize) -> Result<Polled, SourceError> {
        let mut out = Vec::new();
        loop {
            while out.len() < max {
                let Some(nl) = self.buf.iter().position(|&b| b == b'\n') else {
                    break;
                };
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
                let mut rec = Record::new(value, Origin::new(self.stream.clone(), 0, offset));
                if self.cfg.format == LineFormat::Json {
                    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&rec.value) {
                        rec.decode_error = Some(format!("line is not JSON: {e}").into());
                    }
                }
                out.push(rec);
            }
            if out.len() >= max || (!out.is_empty() && self.eof) {
                return Ok(Polled::Records(out));
            }
            let n = self.fill().await?;
            if n == 0 {
                self.eof = true;
                if !out.is_empty() {
                    return Ok(Polled::Records(out));
                }
                if self.cfg.at_end == AtEnd::Stop {
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
            .filter(|o| o.partition == 0)
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
                partition: PARTITION.to_string(),
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
            checkpoints.insert(PARTITION.to_string(), c.to_string());
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
        let cfg = FileSourceConfig {
            path: path.clone(),
            format: LineFormat::Json,
            at_end: AtEnd::Stop,
        };
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
}
