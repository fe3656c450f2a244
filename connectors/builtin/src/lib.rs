//! Connectors that need no external service: the `generator` and `file` sources, the `file`,
//! `stdout` and `blackhole` sinks, and the `file` dead-letter queue.

mod blackhole;
mod file_dlq;
mod file_sink;
mod file_source;
mod generator;
mod stdout;

pub use blackhole::BlackholeSink;
pub use file_dlq::{encode as file_dlq_line, FileDeadLetter, FileDeadLetterConfig};
pub use file_sink::{FileSink, FileSinkConfig};
pub use file_source::{FileSource, FileSourceConfig};
pub use generator::{GeneratorConfig, GeneratorSource};
pub use stdout::StdoutSink;

use sluice_sdk::Registry;

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Registers every built-in connector.
pub fn register(registry: &mut Registry) {
    registry.register_source("generator", VERSION, |cfg: GeneratorConfig, _| {
        Ok(Box::new(GeneratorSource::new(cfg)?))
    });
    registry.register_source("file", VERSION, |cfg: FileSourceConfig, _| {
        Ok(Box::new(FileSource::new(cfg)))
    });
    registry.register_sink("file", VERSION, |cfg: FileSinkConfig, _| {
        Ok(Box::new(FileSink::new(cfg)?))
    });
    registry.register_sink("stdout", VERSION, |cfg: stdout::StdoutConfig, _| {
        Ok(Box::new(StdoutSink::new(cfg)))
    });
    registry.register_sink("blackhole", VERSION, |_: blackhole::BlackholeConfig, _| {
        Ok(Box::new(BlackholeSink))
    });
    registry.register_dead_letter("file", VERSION, |cfg: FileDeadLetterConfig, ctx| {
        Ok(std::sync::Arc::new(FileDeadLetter::new(cfg, ctx)))
    });
}
