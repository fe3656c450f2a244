//! Dynamic connector plugins: libraries named in `host.plugins`, loaded with `libloading`.
//!
//! Loading a plugin checks its ABI version and manifest before calling anything else in it,
//! then exchanges function tables and registers each connector and transform of the manifest
//! in the [`Registry`] with [`Provider::Plugin`]. A plugin connector is an adapter
//! implementing the same `Source` / `Sink` / `Transform` trait as a built-in one, so it goes
//! through the same batching, retries, dead-letter queue, offsets and metrics, and a plugin
//! transform is named by `type:` in `transforms:` like a built-in one. Libraries are never
//! unloaded.
//!
//! See `docs/plugin-guide.md` and `sluice_sdk::plugin` for the ABI.

mod call;
mod loader;
mod log;
mod sink;
mod source;
#[cfg(test)]
mod tests;
mod transform;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use sluice_sdk::plugin::wire::ManifestKind;
use sluice_sdk::plugin::AbiVersion;
use sluice_sdk::{ConnectorInfo, Provider, Registry, RegistryError};

pub(crate) use loader::check_library as check_plugin_file;
pub use loader::LoadedPlugin;

/// A plugin library could not be loaded or registered. Every message names the library.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("plugin {}: cannot open the file: {source}", .path.display())]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("plugin {} is not a loadable library: {reason}", .path.display())]
    NotALibrary { path: PathBuf, reason: String },
    #[error(
        "plugin {} is not a Sluice plugin: it does not export `{symbol}` ({reason}); build it as \
         a cdylib that calls sluice_sdk::export_plugin!",
        .path.display()
    )]
    MissingSymbol {
        path: PathBuf,
        symbol: &'static str,
        reason: String,
    },
    #[error(
        "plugin {} was built for plugin ABI {plugin}, but this sluice speaks plugin ABI {host}: \
         {advice}",
        .path.display()
    )]
    AbiMismatch {
        path: PathBuf,
        plugin: AbiVersion,
        host: AbiVersion,
        advice: &'static str,
    },
    #[error("plugin {}: bad manifest: {reason}", .path.display())]
    Manifest { path: PathBuf, reason: String },
    #[error("plugin {}: initialisation failed: {reason}", .path.display())]
    Init { path: PathBuf, reason: String },
    #[error(
        "plugin {}: unusable function table: {source}; rebuild it against the sluice-sdk of \
         this sluice",
        .path.display()
    )]
    Table { path: PathBuf, source: TableError },
    #[error("plugin {}: {source}", .path.display())]
    Register {
        path: PathBuf,
        source: RegistryError,
    },
}

/// What is wrong with the function table a plugin's init returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    #[error("{size} bytes, smaller than the {min} of plugin ABI 3.0")]
    TooSmall { size: usize, min: usize },
    #[error(
        "its manifest lists transform `{transform}`, but the table of {size} bytes has no \
         transform functions (plugin ABI 3.1 added them at {min} bytes)"
    )]
    NoTransforms {
        transform: String,
        size: usize,
        min: usize,
    },
    #[error("the function `{0}` is missing (a null pointer)")]
    NullSlot(&'static str),
}

/// Loads every plugin library and registers its connectors.
///
/// A library listed twice (or loaded by an earlier call) is loaded once; its connectors are
/// registered once per registry. A connector type that is already registered (a built-in of
/// the same name) is an error naming both.
pub fn load_plugins(paths: &[PathBuf], registry: &mut Registry) -> Result<(), PluginError> {
    let mut seen = HashSet::new();
    for path in paths {
        let plugin = loader::load(path)?;
        if seen.insert(plugin.path.clone()) {
            register(plugin, registry)?;
        }
    }
    Ok(())
}

/// Adds the connectors of a loaded plugin to a registry.
pub fn register(plugin: &'static LoadedPlugin, registry: &mut Registry) -> Result<(), PluginError> {
    for c in &plugin.manifest.connectors {
        let info = ConnectorInfo {
            type_name: c.type_name.clone(),
            kind: c.kind.into(),
            version: c.version.clone(),
            provider: Provider::Plugin {
                path: plugin.path.clone(),
                plugin_name: plugin.manifest.name.clone(),
                plugin_version: plugin.manifest.version.clone(),
                sdk_version: plugin.manifest.sdk_version.clone(),
            },
        };
        let type_name: Arc<str> = Arc::from(c.type_name.as_str());
        let added = match c.kind {
            ManifestKind::Sink => registry.add_sink(
                info,
                Arc::new(move |config, ctx| {
                    sink::PluginSink::create(plugin, &type_name, &config, ctx)
                }),
            ),
            ManifestKind::Source => registry.add_source(
                info,
                Arc::new(move |config, ctx| {
                    source::PluginSource::create(plugin, &type_name, &config, ctx)
                }),
            ),
            ManifestKind::Transform => registry.add_transform(
                info,
                Arc::new(move |config, ctx| {
                    transform::PluginTransform::create(plugin, &type_name, &config, ctx)
                }),
            ),
        };
        added.map_err(|source| PluginError::Register {
            path: plugin.path.clone(),
            source,
        })?;
    }
    Ok(())
}
