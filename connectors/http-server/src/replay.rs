//! The write-ahead log of an `http_server` pipeline read between two log offsets, for
//! `sluice replay`: no listener, no writes to the log, so it may run beside the pipeline.

use std::path::PathBuf;
use std::sync::Arc;

use sluice_sdk::{
    async_trait, Checkpoint, Origin, PartitionPosition, Polled, Source, SourceContext, SourceError,
};

use crate::source::{Pending, PARTITION};
use crate::wal::range::{Log, RangeReader};

/// Reads the entries of `data_dir/wal/<pipeline>` starting at or after log offset `from` (an
/// entry boundary) and before `to`, then answers `Finished`. Records are those the pipeline
/// read (offsets are log offsets, timestamps receive times); saved positions are ignored.
pub struct WalRange {
    dir: PathBuf,
    stream: Arc<str>,
    from: u64,
    to: u64,
    reader: Option<RangeReader>,
    pending: Pending,
    committed: Option<u64>,
}

impl WalRange {
    pub fn new(data_dir: &std::path::Path, pipeline: &str, from: u64, to: u64) -> Self {
        WalRange {
            dir: crate::wal::dir(data_dir, pipeline),
            stream: pipeline.into(),
            from,
            to,
            reader: None,
            pending: Pending::default(),
            committed: None,
        }
    }
}

fn fatal(e: impl std::fmt::Display) -> SourceError {
    SourceError::Fatal(e.to_string())
}

#[async_trait]
impl Source for WalRange {
    async fn open(&mut self, ctx: SourceContext) -> Result<(), SourceError> {
        let dir = self.dir.clone();
        let log = tokio::task::spawn_blocking(move || Log::open(&dir))
            .await
            .map_err(fatal)?
            .map_err(fatal)?;
        if self.from < log.first() {
            return Err(fatal(format!(
                "the write-ahead log in {} now starts at offset {}, after the range's start {} \
                 (delivered segments were deleted since the range was resolved)",
                self.dir.display(),
                log.first(),
                self.from
            )));
        }
        tracing::info!(pipeline = %ctx.pipeline, wal = %self.dir.display(), from = self.from, to = self.to, "write-ahead log range read");
        self.reader = Some(log.reader(self.from, self.to));
        Ok(())
    }

    async fn poll(&mut self, max: usize) -> Result<Polled, SourceError> {
        let Some(mut reader) = self.reader.take() else {
            return Err(fatal("write-ahead log range polled before open"));
        };
        let (reader, read) = tokio::task::spawn_blocking(move || {
            let r = reader.read(max);
            (reader, r)
        })
        .await
        .map_err(fatal)?;
        let finished = reader.finished();
        self.reader = Some(reader);
        let entries = read.map_err(fatal)?;
        if entries.is_empty() {
            return Ok(if finished {
                Polled::Finished
            } else {
                Polled::Idle
            });
        }
        Ok(Polled::Records(
            self.pending.hand_out(&self.stream, entries),
        ))
    }

    async fn commit(&mut self, through: &[Origin]) -> Result<Vec<Checkpoint>, SourceError> {
        let Some(end) = self.pending.commit(through) else {
            return Ok(Vec::new());
        };
        self.committed = Some(end);
        Ok(vec![Checkpoint {
            partition: PARTITION,
            position: end.to_string(),
        }])
    }

    fn positions(&self) -> Option<Vec<PartitionPosition>> {
        Some(vec![PartitionPosition {
            stream: self.stream.to_string(),
            partition: PARTITION,
            committed: self.committed.map(|c| c as i64),
            end: Some(self.to as i64),
            lag: None,
        }])
    }

    async fn close(&mut self) -> Result<(), SourceError> {
        self.reader = None;
        Ok(())
    }
}
