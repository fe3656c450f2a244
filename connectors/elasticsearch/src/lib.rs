//! Elasticsearch sink (`type: elasticsearch`): records become `_bulk` actions; the answer is
//! read per item, so a refused document goes to the dead-letter queue while its neighbours
//! are delivered, and only items Elasticsearch asked to resend (429, 5xx) are retried.

pub mod client;
pub mod config;
mod encoder;
mod index;
mod request;
mod response;
mod sink;

pub use config::EsConfig;
/// The client library, for readers outside the sink (`sluice verify`).
pub use elasticsearch;
pub use sink::EsSink;

use sluice_sdk::Registry;

/// Registers the `elasticsearch` sink.
pub fn register(registry: &mut Registry) {
    registry.register_sink(
        "elasticsearch",
        env!("CARGO_PKG_VERSION"),
        |cfg: EsConfig, _ctx| Ok(Box::new(EsSink::new(cfg)?)),
    );
}
