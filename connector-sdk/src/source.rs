use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;

use crate::{BatchWriter, Health, Origin, PollEnd, Record, SourceError};

/// What the host hands a source when it opens.
#[derive(Clone, Debug)]
pub struct SourceContext {
    /// Name of the pipeline, for logs and as a default consumer identity.
    pub pipeline: Arc<str>,
    /// Checkpoints this source returned from [`Source::commit`] in earlier runs, by partition,
    /// as last saved in the host's offset store. Empty on a first start.
    pub checkpoints: HashMap<i32, String>,
    /// Report reachability of the upstream system here.
    pub health: Health,
}

/// Result of one [`Source::poll`].
#[derive(Debug)]
pub enum Polled {
    /// Records in source order. Within one (stream, partition) offsets must increase.
    Records(Vec<Record>),
    /// Nothing available right now; the host polls again.
    Idle,
    /// The source is exhausted (a bounded generator, a file source told to stop at its end).
    /// The pipeline drains and finishes.
    Finished,
}

/// Something to persist in the host's offset store: the source's own resume position for one
/// partition, opaque to the host (a byte offset, a sequence number, a Cosmos etag).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The partition, as in [`Origin::partition`](crate::Origin::partition).
    pub partition: i32,
    pub position: String,
}

/// A partition newly assigned to a source that keeps notes: where it resumes upstream and
/// the note committed with that position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resumed {
    pub stream: Arc<str>,
    pub partition: i32,
    /// The committed position: the offset of the next record to read; `None` when nothing
    /// was committed.
    pub offset: Option<i64>,
    /// The note committed with it, if any.
    pub note: Option<String>,
}

/// One partition's position upstream (a Kafka consumer group's committed offset against the
/// partition's end), shown by `/pipelines` and `sluice offsets`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PartitionPosition {
    pub stream: String,
    pub partition: i32,
    /// Where the source resumes (the committed offset), if anything was committed.
    pub committed: Option<i64>,
    /// The offset after the last record upstream (Kafka's high watermark), when known.
    pub end: Option<i64>,
    /// Records after `committed` (or after the partition start) not yet committed.
    pub lag: Option<u64>,
}

/// Reads records from a system.
///
/// The host calls `open`, then alternates `poll` and `commit` from one task, then `close`.
/// `poll` must return within about 100 ms even if nothing arrived (return [`Polled::Idle`]), so
/// that commits, lingering batches and shutdown are never held up by a quiet upstream.
#[async_trait]
pub trait Source: Send {
    /// Connect, and resume from `ctx.checkpoints` where the source keeps positions in the host.
    async fn open(&mut self, ctx: SourceContext) -> Result<(), SourceError>;

    /// Up to `max` records.
    async fn poll(&mut self, max: usize) -> Result<Polled, SourceError>;

    /// [`poll`](Self::poll), writing the records into `out` instead of returning them.
    ///
    /// A source whose values are bytes it writes itself (a generator, a line reader, a copy
    /// out of a client library's buffer) implements this with
    /// [`BatchWriter::push_with`] and its `poll` with [`BatchWriter::into_polled`]: loaded as
    /// a plugin, its values are then written once, straight into the buffer that crosses to
    /// the host. The default calls `poll` and pushes what it returns.
    ///
    /// An error discards what the same call wrote: the source must not count those records
    /// as emitted (the generator advances its position only once the batch is written).
    async fn poll_into(
        &mut self,
        max: usize,
        out: &mut BatchWriter<'_>,
    ) -> Result<PollEnd, SourceError> {
        Ok(match self.poll(max).await? {
            Polled::Records(records) => {
                for r in records {
                    out.push(r);
                }
                PollEnd::More
            }
            Polled::Idle => PollEnd::More,
            Polled::Finished => PollEnd::Finished,
        })
    }

    /// Every record up to and including each of `through` (one per partition) was delivered or
    /// dead-lettered. Commit upstream (a Kafka consumer group) and/or return checkpoints for
    /// the host to save atomically in its offset store. Never called with a position the host
    /// has not seen come out of `poll`.
    async fn commit(&mut self, through: &[Origin]) -> Result<Vec<Checkpoint>, SourceError>;

    /// Whether this source keeps a note with each position it commits upstream, atomically
    /// with it (Kafka: the offset commit's metadata). The host then keeps state that must
    /// match the position exactly (integrity chains) in those notes rather than in its own
    /// store, which a consumer group's position does not follow.
    fn keeps_notes(&self) -> bool {
        false
    }

    /// Notes for the next [`Source::commit`]: each goes with the position committed for its
    /// partition (stream, partition, text). Only called when [`Source::keeps_notes`].
    fn note(&mut self, _notes: Vec<(Arc<str>, i32, String)>) {}

    /// Partitions assigned since the last call, with the position each resumes from and
    /// the note committed with it. Called after every poll, before its records are used;
    /// only when [`Source::keeps_notes`].
    fn take_assigned_notes(&mut self) -> Vec<Resumed> {
        Vec::new()
    }

    /// Records available upstream but not yet read, when the source can tell (Kafka high
    /// watermark minus position). Exported as `sluice_source_lag_records`.
    fn lag(&self) -> Option<u64> {
        None
    }

    /// Records the source skipped upstream since the last call (a Kafka committed offset that
    /// retention passed), so they can be accounted for (`sluice_source_skipped_records_total`).
    fn take_skipped(&mut self) -> u64 {
        0
    }

    /// The partitions this source reads now, with their committed position and lag, when it
    /// knows them (a Kafka consumer: its assigned partitions). Cheap: called on every poll.
    fn positions(&self) -> Option<Vec<PartitionPosition>> {
        None
    }

    /// The positions stored upstream for this source's identity (a Kafka group's committed
    /// offsets and each partition's end), asked without opening the source or joining
    /// anything; `None` when positions live in the host's offset store only.
    async fn stored_positions(&mut self) -> Result<Option<Vec<PartitionPosition>>, SourceError> {
        Ok(None)
    }

    /// Commit what was committed last and disconnect; called once on shutdown.
    async fn close(&mut self) -> Result<(), SourceError> {
        Ok(())
    }
}
