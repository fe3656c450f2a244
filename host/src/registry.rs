//! The connector registry of this binary: built-ins, the connector crates compiled in, and
//! plugins named in the configuration.

use std::path::PathBuf;

use sluice_sdk::Registry;

use crate::plugin::{load_plugins, PluginError};

/// Built-in and compiled-in connectors.
pub fn compiled_in() -> Registry {
    let mut r = Registry::new();
    sluice_builtin::register(&mut r);
    #[cfg(feature = "kafka")]
    sluice_kafka::register(&mut r);
    #[cfg(feature = "splunk-hec")]
    sluice_splunk_hec::register(&mut r);
    #[cfg(feature = "elasticsearch")]
    sluice_elasticsearch::register(&mut r);
    #[cfg(feature = "datadog")]
    sluice_datadog::register(&mut r);
    #[cfg(feature = "postgres")]
    sluice_postgres::register(&mut r);
    #[cfg(feature = "redis")]
    sluice_redis::register(&mut r);
    #[cfg(feature = "cosmos")]
    sluice_cosmos::register(&mut r);
    r
}

/// Compiled-in connectors plus the given plugins.
pub fn with_plugins(plugins: &[PathBuf]) -> Result<Registry, PluginError> {
    let mut r = compiled_in();
    load_plugins(plugins, &mut r)?;
    Ok(r)
}
