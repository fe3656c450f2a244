//! Datadog Logs sink (`type: datadog_logs`): records become logs posted to the intake API v2.
//! One send is split into as many requests as Datadog's limits need (1000 logs, 5 MB before
//! compression); a log over 1 MB is rejected rather than silently truncated by Datadog.

pub mod config;
mod encoder;
mod request;
mod response;
mod sink;

pub use config::DdConfig;
pub use encoder::{MAX_ENTRIES, MAX_LOG_BYTES, MAX_REQUEST_BYTES};
pub use sink::DdSink;

use sluice_sdk::Registry;

/// Registers the `datadog_logs` sink.
pub fn register(registry: &mut Registry) {
    registry.register_sink(
        "datadog_logs",
        env!("CARGO_PKG_VERSION"),
        |cfg: DdConfig, _ctx| Ok(Box::new(DdSink::new(cfg)?)),
    );
}
