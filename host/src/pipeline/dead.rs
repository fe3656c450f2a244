//! Writing dead letters for one part of a pipeline (its transforms, or one of its sinks): the
//! context each letter carries, the counting, and the rule that a record is done only once
//! its letter is written.

use std::sync::Arc;

use prometheus::IntCounter;
use sluice_sdk::{
    DeadLetter, DeadLetterWriter, ErrorContext, Origin, Record, ReplayContext, Stage,
};
use tokio_util::sync::CancellationToken;

use super::PipelineError;

/// For a replay run: the letter a record came from (keyed by the record's origin, its
/// position in the DLQ), so a record that fails again keeps its first failure.
pub type ReplayLookup = dyn Fn(&Origin) -> Option<Arc<ReplayContext>> + Send + Sync;

/// A dead-letter queue as one part of a pipeline uses it.
pub struct DeadLetters {
    pub pipeline: Arc<str>,
    /// The named sink whose letters these are (`sluice.errors.sink`); `None` for the
    /// pipeline's own stages and for a single `sink:`.
    pub sink: Option<Arc<str>>,
    pub dlq: Arc<dyn DeadLetterWriter>,
    pub counter: IntCounter,
    /// Cancelled when a shutdown ran out of time.
    pub abort: CancellationToken,
    /// The chains of a sink with `integrity:`, told which stamped records were dead-lettered.
    pub integrity: Option<(
        Arc<parking_lot::Mutex<crate::integrity::chain::Book>>,
        Arc<str>,
    )>,
    /// Set for a replay run (`sluice dlq replay`).
    pub replayed: Option<Arc<ReplayLookup>>,
}

impl DeadLetters {
    pub fn context(
        &self,
        stage: Stage,
        kind: impl Into<String>,
        message: impl Into<String>,
        attempts: u32,
    ) -> ErrorContext {
        ErrorContext {
            pipeline: self.pipeline.clone(),
            stage,
            kind: kind.into(),
            message: message.into(),
            attempts,
            sink: self.sink.clone(),
            replay: None,
        }
    }

    /// Writes to the DLQ; on failure the pipeline stops and nothing is acknowledged past
    /// these records.
    pub async fn write(&self, dead: &[(Record, ErrorContext)]) -> Result<(), PipelineError> {
        // A replayed letter that fails again carries what it was.
        let replayed: Option<Vec<ErrorContext>> = self.replayed.as_ref().map(|lookup| {
            dead.iter()
                .map(|(r, e)| ErrorContext {
                    replay: lookup(&r.origin),
                    ..e.clone()
                })
                .collect()
        });
        let letters: Vec<DeadLetter<'_>> = match &replayed {
            Some(contexts) => dead
                .iter()
                .zip(contexts)
                .map(|((record, _), error)| DeadLetter { record, error })
                .collect(),
            None => dead
                .iter()
                .map(|(record, error)| DeadLetter { record, error })
                .collect(),
        };
        let written = tokio::select! {
            r = self.dlq.write(&letters) => r,
            _ = self.abort.cancelled() => return Err(PipelineError::Aborted),
        };
        match written {
            Ok(()) => {
                self.counter.inc_by(dead.len() as u64);
                if let Some((book, sink)) = &self.integrity {
                    let mut b = book.lock();
                    for (r, _) in dead {
                        b.dead_lettered(sink, &r.origin);
                    }
                }
                for (r, e) in dead.iter().take(3) {
                    tracing::warn!(pipeline = %self.pipeline, sink = self.sink.as_deref().unwrap_or(""), stage = %e.stage, kind = %e.kind, topic = %r.origin.stream, partition = r.origin.partition, offset = r.origin.offset, "record dead-lettered: {}", e.summary());
                }
                Ok(())
            }
            Err(e) => {
                let first = &dead[0].0.origin;
                Err(PipelineError::DeadLetter(format!(
                    "{} record(s) could go neither to the sink nor to the dead-letter queue (first: {} partition {} offset {}; reason: {}): {e}",
                    dead.len(),
                    first.stream,
                    first.partition,
                    first.offset,
                    dead[0].1.summary()
                )))
            }
        }
    }
}
