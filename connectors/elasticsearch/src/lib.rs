//! Placeholder until the connector lands.

use sluice_sdk::Registry;

/// Registers this crate's connectors.
pub fn register(_registry: &mut Registry) {}
