//! Splunk HTTP Event Collector sink (`splunk_hec`).
//!
//! Records become HEC envelopes (or raw lines), concatenated into one body per request, gzip
//! compressed by default and split under `max_request_bytes`. Answers are classified per record: a
//! request refused at `invalid-event-number: N` delivers the events before N, rejects event N
//! and resends the rest. With `acknowledgements: true` a record counts as delivered only
//! once HEC reports its ackId true.

pub mod acknowledgements;
pub mod config;
pub mod encoder;
mod pick;
pub mod request;
pub mod response;
pub mod sink;
mod time;

pub use config::HecConfig;
pub use sink::HecSink;

use sluice_sdk::Registry;

/// Registers the `splunk_hec` sink.
pub fn register(registry: &mut Registry) {
    registry.register_sink(
        "splunk_hec",
        env!("CARGO_PKG_VERSION"),
        |cfg: HecConfig, _ctx| Ok(Box::new(HecSink::new(cfg)?)),
    );
}
