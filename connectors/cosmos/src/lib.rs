//! # sluice-cosmos
//!
//! `cosmos_change_feed`: a source reading an Azure Cosmos DB (NoSQL API) container's change
//! feed over REST with master-key authorization. Every partition key range is read by its own
//! task; positions are saved per range so that a restart, even across a split, neither skips
//! nor repeats a committed change.

mod auth;
mod client;
pub mod config;
mod feed;
mod position;
mod ranges;
mod reader;
mod response;
mod source;

pub use config::{CosmosConfig, Mode, StartFrom};
pub use source::CosmosSource;

/// Type name of the source in pipeline YAML.
pub const SOURCE_TYPE: &str = "cosmos_change_feed";

/// Registers `cosmos_change_feed`.
pub fn register(registry: &mut sluice_sdk::Registry) {
    registry.register_source(
        SOURCE_TYPE,
        env!("CARGO_PKG_VERSION"),
        |cfg: CosmosConfig, _ctx| Ok(Box::new(CosmosSource::new(cfg)?)),
    );
}
