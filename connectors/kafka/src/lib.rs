//! Kafka connectors for Sluice: the `kafka` source (consumer group, at-least-once, JSON / raw /
//! Schema Registry Avro), the `kafka` sink (idempotent producer, per-record outcomes) and the
//! `kafka` dead-letter queue (Kafka Connect context headers).

mod config;
mod context;
mod dead_letter;
mod decode;
mod dlq_reader;
mod fetch_queue;
mod positions;
mod produce;
pub mod range;
pub mod reset;
mod response;
mod schema_registry;
mod sink;
mod source;

pub use config::{
    producer_config, reader_config, DeadLetterConfig, Format, Options, SchemaRegistryConfig,
    SinkConfig, SourceConfig, StartFrom,
};
pub use dead_letter::KafkaDeadLetter;
pub use dlq_reader::{DlqMessage, DlqReader};

/// The client library, for readers and writers outside the connectors (`sluice verify`).
pub use rdkafka;
pub use sink::KafkaSink;
pub use source::KafkaSource;

use std::sync::Arc;

use sluice_sdk::Registry;

/// Registers the `kafka` source, sink and dead-letter queue.
pub fn register(registry: &mut Registry) {
    let version = env!("CARGO_PKG_VERSION");
    registry.register_source("kafka", version, |cfg: SourceConfig, ctx| {
        Ok(Box::new(KafkaSource::new(cfg, &ctx.pipeline)?))
    });
    registry.keeps_positions_upstream("kafka", "kafka sources commit to their consumer group");
    registry.register_sink("kafka", version, |cfg: SinkConfig, ctx| {
        Ok(Box::new(KafkaSink::new(cfg, &ctx.pipeline)?))
    });
    registry.register_dead_letter("kafka", version, |cfg: DeadLetterConfig, ctx| {
        Ok(Arc::new(KafkaDeadLetter::new(cfg, &ctx.pipeline)?))
    });
}
