//! The built-in connectors of `connectors/builtin` (`file` source and sink, `generator`,
//! `stdout`, `blackhole`) exported as a plugin library, each under its name prefixed with
//! `plugin_` (`plugin_file`, ...) so that a host, which has the built-ins, can load it too.
//!
//! It shows how an existing connector crate becomes a plugin, and it lets the conformance
//! suite and the throughput bench run the very same code built in and across the plugin
//! boundary.

use std::sync::Arc;

use sluice_sdk::{ConfigError, ConnectorInfo, ConnectorKind, Registry, RegistryError};

/// Prefix of the exported type names.
pub const PREFIX: &str = "plugin_";

fn config_error(e: RegistryError) -> ConfigError {
    match e {
        RegistryError::Config(c) => c,
        other => ConfigError::new(other.to_string()),
    }
}

/// Registers every source and sink of `sluice_builtin` under `plugin_<name>`.
pub fn register(registry: &mut Registry) {
    let mut builtin = Registry::new();
    sluice_builtin::register(&mut builtin);
    let infos: Vec<ConnectorInfo> = builtin.connectors().into_iter().cloned().collect();
    let builtin = Arc::new(builtin);
    for info in infos {
        let name = info.type_name.clone();
        let renamed = ConnectorInfo {
            type_name: format!("{PREFIX}{name}"),
            ..info.clone()
        };
        let inner = builtin.clone();
        let added = match info.kind {
            ConnectorKind::Sink => registry.add_sink(
                renamed,
                Arc::new(move |cfg, ctx| inner.build_sink(&name, cfg, ctx).map_err(config_error)),
            ),
            ConnectorKind::Source => registry.add_source(
                renamed,
                Arc::new(move |cfg, ctx| inner.build_source(&name, cfg, ctx).map_err(config_error)),
            ),
            ConnectorKind::DeadLetter => continue,
        };
        if let Err(e) = added {
            // Caught by the export wrapper and reported by the host as a manifest error.
            panic!("{e}");
        }
    }
}

sluice_sdk::export_plugin!(
    register,
    schemas: [
        ("sink:plugin_file", include_str!("../file-sink.schema.json")),
        ("source:plugin_file", include_str!("../file-source.schema.json")),
    ],
);
