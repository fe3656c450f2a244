//! Dynamic connector plugins: not written yet.

use std::path::PathBuf;

use sluice_sdk::Registry;

/// A plugin library could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PluginError(pub String);

/// Loads every plugin library and registers its connectors.
pub fn load_plugins(paths: &[PathBuf], _registry: &mut Registry) -> Result<(), PluginError> {
    match paths.first() {
        None => Ok(()),
        Some(p) => Err(PluginError(format!("{}: plugins are not supported yet", p.display()))),
    }
}
