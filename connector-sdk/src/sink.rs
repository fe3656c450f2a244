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

    /// How many batches the host may have in flight at once unless the pipeline says
    /// otherwise. More than one lets a sink with slow acknowledgements keep throughput, at the
    /// cost of ordering between batches.
    fn default_concurrency(&self) -> usize {
        1
    }

    /// Whether the host must keep batches that share a source partition from being in
    /// flight at the same time, so that a sink sending each partition's records in order
    /// keeps that order at any `concurrency`. Batches of other partitions still overlap; a
    /// batch waits (and the ones behind it) while one of its partitions is in flight.
    fn orders_partitions(&self) -> bool {
        false
    }

    /// Flush and release resources; called once after the last `send` on shutdown.
    async fn close(&self) -> Result<(), SinkError> {
        Ok(())
    }
}
