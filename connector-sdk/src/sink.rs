use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;

use crate::{Health, RecordRef, SinkError};

/// What happened to one record of a batch handed to [`Sink::send`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The destination has durably taken the record.
    Delivered,
    /// Not taken this time, may succeed later (an Elasticsearch item answered 429). The host
    /// retries it with backoff up to `retry.max_attempts`, then dead-letters it.
    Retry(String),
    /// The destination refused the record for good (a mapping error, an invalid event). The
    /// host dead-letters it at once.
    Reject(Rejection),
    /// Not attempted, or lost with the request, because the destination as a whole could not
    /// take it (a later request of a batch met a 503, a timeout, a closed connection): the
    /// record-level counterpart of [`SinkError::Unavailable`]. The host resends it for as long
    /// as it takes without counting an attempt, so an outage never dead-letters a record.
    Unavailable(String),
}

impl Outcome {
    pub fn reject(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Outcome::Reject(Rejection {
            kind: kind.into(),
            message: message.into(),
        })
    }
}

/// Why a record was refused. Written into the dead-letter queue as
/// `__connect.errors.exception.class.name` (`kind`) and `__connect.errors.exception.message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// A stable identifier of the error, e.g. `splunk.hec.code=6`,
    /// `es.bulk.item.mapper_parsing_exception`, `postgres.sqlstate=23505`.
    pub kind: String,
    /// The destination's own words. Its first line is what logs show; later lines may quote
    /// the record and go only to the dead-letter queue (see [`crate::dead_letter::with_detail`]).
    pub message: String,
}

/// What the host hands a sink when it opens.
#[derive(Clone, Debug)]
pub struct SinkContext {
    /// Name of the pipeline, for logs.
    pub pipeline: Arc<str>,
    /// Report reachability of the destination here.
    pub health: Health,
}

/// What [`Sink::prepare`] made of a batch ahead of its send: opaque to the host, read back by
/// the same sink in [`Sink::send_prepared`].
pub struct Prepared(Box<dyn Any + Send>);

impl Prepared {
    pub fn new<T: Any + Send>(work: T) -> Self {
        Prepared(Box::new(work))
    }

    /// The work as the sink made it, or the `Prepared` back if it is of another type.
    pub fn downcast<T: Any>(self) -> Result<T, Prepared> {
        self.0.downcast::<T>().map(|b| *b).map_err(Prepared)
    }
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Prepared")
    }
}

/// Writes records to a destination.
///
/// `send` takes `&self` so the host may keep several batches in flight (the pipeline's
/// `concurrency`); a sink that holds a single connection serialises internally.
///
/// A batch is borrowed ([`RecordRef`]) for the length of the call: a sink writes the records
/// into its request and keeps nothing of them. That is what lets the host lend a plugin sink
/// its own memory instead of copying every batch across.
#[async_trait]
pub trait Sink: Send + Sync {
    /// Connect and check the destination. Called once before the first `send`. An error here
    /// is retried like a failed `send`.
    async fn open(&mut self, _ctx: SinkContext) -> Result<(), SinkError> {
        Ok(())
    }

    /// Deliver a batch. Return exactly one [`Outcome`] per record, in order, or an error when
    /// none of the batch was delivered.
    async fn send(&self, records: &[RecordRef<'_>]) -> Result<Vec<Outcome>, SinkError>;

    /// Whether [`prepare`](Sink::prepare) does anything; the host adds a pipeline stage for
    /// it only when it does.
    fn prepares(&self) -> bool {
        false
    }

    /// Work on a batch that does not have to wait for the batches before it to be sent
    /// (encoding it into a request body). The host runs it in a stage of its own, so with
    /// one batch in flight it overlaps the sending of the previous one instead of adding to
    /// it. `None` when there is nothing to do ahead. Called only when `prepares` is true.
    fn prepare(&self, _records: &[RecordRef<'_>]) -> Option<Prepared> {
        None
    }

    /// [`send`](Sink::send) of the records `prepare` saw, with what it made of them. Only a
    /// batch's first attempt comes here; retries and halves of a split go to `send`, and a
    /// `Prepared` that is never sent is dropped.
    async fn send_prepared(
        &self,
        records: &[RecordRef<'_>],
        _prepared: Prepared,
    ) -> Result<Vec<Outcome>, SinkError> {
        self.send(records).await
    }

    /// How many batches the host may have in flight at once unless the pipeline says
    /// otherwise. More than one lets a sink with slow acknowledgements keep throughput, at the
    /// cost of ordering between batches.
    fn default_concurrency(&self) -> usize {
        1
    }

    /// Flush and release resources; called once after the last `send` on shutdown.
    async fn close(&self) -> Result<(), SinkError> {
        Ok(())
    }
}
