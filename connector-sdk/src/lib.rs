//! # sluice-sdk
//!
//! Everything a connector for [Sluice](https://example.invalid/sluice) needs, and nothing else.
//!
//! A connector is a [`Source`] (reads records from a system) or a [`Sink`] (writes them to one).
//! The host owns everything around them: batching, rate limiting, retries with backoff,
//! per-partition offset tracking, the dead-letter queue, metrics and shutdown. A connector only
//! has to answer three questions honestly:
//!
//! * **Source**: what are the next records, and what must be saved once the host says that
//!   everything up to a record is done ([`Source::commit`])?
//! * **Sink**: for each record of a batch, was it delivered, may it be retried, or is it
//!   rejected for good ([`Outcome`])? A whole-batch failure (the service is down, the token is
//!   wrong) is a [`SinkError`] instead.
//!
//! Connectors are made from their YAML configuration by a factory registered in a [`Registry`]
//! under a type name; built-in connectors and dynamically loaded plugins go through the same
//! registry.
//!
//! Between the two, a pipeline's [`Transform`]s edit or filter records one by one; they are
//! registered by type name in the same registry (see [`transform`]).
//!
//! ## Delivery contract
//!
//! The host delivers at least once. A record's position is committed upstream only when the
//! record and every record before it in the same partition were delivered or dead-lettered. A
//! sink must therefore answer [`Outcome::Delivered`] only once the destination has durably
//! taken the record (flushed, acknowledged), never when it was merely buffered.
//!
//! ## A minimal sink
//!
//! ```
//! use sluice_sdk::{async_trait, Outcome, RecordRef, Registry, Sink, SinkError};
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct CountConfig {
//!     #[serde(default)]
//!     verbose: bool,
//! }
//!
//! struct CountSink { verbose: bool }
//!
//! #[async_trait]
//! impl Sink for CountSink {
//!     async fn send(&self, records: &[RecordRef<'_>]) -> Result<Vec<Outcome>, SinkError> {
//!         if self.verbose {
//!             eprintln!("{} records", records.len());
//!         }
//!         Ok(vec![Outcome::Delivered; records.len()])
//!     }
//! }
//!
//! let mut registry = Registry::new();
//! registry.register_sink("count", "0.1.0", |cfg: CountConfig, _ctx| {
//!     Ok(Box::new(CountSink { verbose: cfg.verbose }))
//! });
//! assert!(registry.sink("count").is_some());
//! ```

mod batch_writer;
pub mod config;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod dead_letter;
mod error;
pub mod fs;
pub mod gzip;
mod health;
pub mod http;
pub mod json;
mod outcomes;
pub mod plugin;
mod record;
mod registry;
pub mod retry;
mod sink;
mod source;
pub mod template;
pub mod time;
pub mod transform;

pub use async_trait::async_trait;
pub use batch_writer::{BatchWriter, PollEnd, RecordHead};
pub use bytes::Bytes;
pub use dead_letter::{DeadLetter, DeadLetterWriter, ErrorContext, ReplayContext, Stage};
pub use error::{ConfigError, DeadLetterError, SinkError, SourceError};
pub use health::Health;
pub use outcomes::{Outcomes, Verdict};
pub use record::{
    views, Header, HeaderRef, Headers, HeadersIter, Origin, OriginRef, Record, RecordRef,
};
pub use registry::{
    BuildContext, ConnectorInfo, ConnectorKind, DeadLetterFactory, Provider, Registry,
    RegistryError, SinkFactory, SourceFactory, TransformFactory,
};
pub use sink::{Outcome, Rejection, Sink, SinkContext};
pub use source::{Checkpoint, PartitionPosition, Polled, Resumed, Source, SourceContext};
pub use transform::{Transform, TransformError};

/// Version of this SDK; plugins report it in their manifest.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");
