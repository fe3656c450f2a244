use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::{config, ConfigError, DeadLetterWriter, Sink, Source, Transform};

/// What a factory may know about the pipeline it builds for. Factories must not do I/O:
/// `sluice validate` builds every connector to check its configuration.
#[derive(Clone, Debug)]
pub struct BuildContext {
    pub pipeline: Arc<str>,
    /// The host's data directory (offset store, file DLQ).
    pub data_dir: PathBuf,
}

/// Makes a source from its configuration (JSON, without the `type` key).
pub type SourceFactory = Arc<
    dyn Fn(serde_json::Value, &BuildContext) -> Result<Box<dyn Source>, ConfigError> + Send + Sync,
>;
/// Makes a sink from its configuration.
pub type SinkFactory = Arc<
    dyn Fn(serde_json::Value, &BuildContext) -> Result<Box<dyn Sink>, ConfigError> + Send + Sync,
>;
/// Makes a transform from its configuration (one entry of `transforms:`, without `type`).
pub type TransformFactory = Arc<
    dyn Fn(serde_json::Value, &BuildContext) -> Result<Box<dyn Transform>, ConfigError>
        + Send
        + Sync,
>;
/// Makes a dead-letter queue from its configuration.
pub type DeadLetterFactory = Arc<
    dyn Fn(serde_json::Value, &BuildContext) -> Result<Arc<dyn DeadLetterWriter>, ConfigError>
        + Send
        + Sync,
>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConnectorKind {
    Source,
    Sink,
    DeadLetter,
    Transform,
}

impl fmt::Display for ConnectorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConnectorKind::Source => "source",
            ConnectorKind::Sink => "sink",
            ConnectorKind::DeadLetter => "dead_letter",
            ConnectorKind::Transform => "transform",
        })
    }
}

/// Where a connector comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Provider {
    BuiltIn,
    Plugin {
        path: PathBuf,
        plugin_name: String,
        plugin_version: String,
        /// The `sluice-sdk` version the plugin was built with.
        sdk_version: String,
    },
}

/// A registered connector or transform type, as `sluice connectors` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectorInfo {
    pub type_name: String,
    pub kind: ConnectorKind,
    pub version: String,
    pub provider: Provider,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistryError {
    #[error("unknown {kind} type `{type_name}` (known: {})", known.join(", "))]
    UnknownType {
        kind: ConnectorKind,
        type_name: String,
        known: Vec<String>,
    },
    #[error("{kind} type `{type_name}` is already registered ({existing})")]
    Duplicate {
        kind: ConnectorKind,
        type_name: String,
        existing: String,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
}

struct Entry<F> {
    info: ConnectorInfo,
    factory: F,
}

/// Type name to factory, for sources, sinks, dead-letter queues and transforms. Built-in
/// connectors and dynamically loaded plugins register here alike.
#[derive(Default)]
pub struct Registry {
    sources: BTreeMap<String, Entry<SourceFactory>>,
    sinks: BTreeMap<String, Entry<SinkFactory>>,
    dead_letters: BTreeMap<String, Entry<DeadLetterFactory>>,
    transforms: BTreeMap<String, Entry<TransformFactory>>,
    upstream_positions: BTreeMap<String, String>,
}

fn typed<C, T>(
    f: impl Fn(C, &BuildContext) -> Result<T, ConfigError> + Send + Sync + 'static,
) -> impl Fn(serde_json::Value, &BuildContext) -> Result<T, ConfigError> + Send + Sync + 'static
where
    C: DeserializeOwned,
{
    move |value, ctx| f(config::from_value::<C>(value)?, ctx)
}

fn builtin(type_name: &str, kind: ConnectorKind, version: &str) -> ConnectorInfo {
    ConnectorInfo {
        type_name: type_name.to_string(),
        kind,
        version: version.to_string(),
        provider: Provider::BuiltIn,
    }
}

fn insert<F>(
    map: &mut BTreeMap<String, Entry<F>>,
    info: ConnectorInfo,
    factory: F,
) -> Result<(), RegistryError> {
    if let Some(e) = map.get(&info.type_name) {
        let existing = match &e.info.provider {
            Provider::BuiltIn => "built in".to_string(),
            Provider::Plugin { path, .. } => format!("plugin {}", path.display()),
        };
        return Err(RegistryError::Duplicate {
            kind: info.kind,
            type_name: info.type_name,
            existing,
        });
    }
    map.insert(info.type_name.clone(), Entry { info, factory });
    Ok(())
}

fn lookup<'a, F>(
    map: &'a BTreeMap<String, Entry<F>>,
    kind: ConnectorKind,
    type_name: &str,
) -> Result<&'a F, RegistryError> {
    map.get(type_name)
        .map(|e| &e.factory)
        .ok_or_else(|| RegistryError::UnknownType {
            kind,
            type_name: type_name.to_string(),
            known: map.keys().cloned().collect(),
        })
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a built-in source whose configuration deserializes into `C`.
    ///
    /// # Panics
    /// If the type name is taken: built-in names are fixed at compile time.
    pub fn register_source<C: DeserializeOwned + 'static>(
        &mut self,
        type_name: &str,
        version: &str,
        factory: impl Fn(C, &BuildContext) -> Result<Box<dyn Source>, ConfigError>
            + Send
            + Sync
            + 'static,
    ) {
        let info = builtin(type_name, ConnectorKind::Source, version);
        if let Err(e) = insert(&mut self.sources, info, Arc::new(typed(factory))) {
            panic!("{e}");
        }
    }

    /// Registers a built-in sink whose configuration deserializes into `C`.
    ///
    /// # Panics
    /// If the type name is taken.
    pub fn register_sink<C: DeserializeOwned + 'static>(
        &mut self,
        type_name: &str,
        version: &str,
        factory: impl Fn(C, &BuildContext) -> Result<Box<dyn Sink>, ConfigError> + Send + Sync + 'static,
    ) {
        let info = builtin(type_name, ConnectorKind::Sink, version);
        if let Err(e) = insert(&mut self.sinks, info, Arc::new(typed(factory))) {
            panic!("{e}");
        }
    }

    /// Registers a built-in dead-letter queue type.
    ///
    /// # Panics
    /// If the type name is taken.
    pub fn register_dead_letter<C: DeserializeOwned + 'static>(
        &mut self,
        type_name: &str,
        version: &str,
        factory: impl Fn(C, &BuildContext) -> Result<Arc<dyn DeadLetterWriter>, ConfigError>
            + Send
            + Sync
            + 'static,
    ) {
        let info = builtin(type_name, ConnectorKind::DeadLetter, version);
        if let Err(e) = insert(&mut self.dead_letters, info, Arc::new(typed(factory))) {
            panic!("{e}");
        }
    }

    /// Registers a built-in transform whose configuration deserializes into `C`; use
    /// `#[serde(deny_unknown_fields)]` on `C` so a typo is an error.
    ///
    /// # Panics
    /// If the type name is taken.
    pub fn register_transform<C: DeserializeOwned + 'static>(
        &mut self,
        type_name: &str,
        version: &str,
        factory: impl Fn(C, &BuildContext) -> Result<Box<dyn Transform>, ConfigError>
            + Send
            + Sync
            + 'static,
    ) {
        let info = builtin(type_name, ConnectorKind::Transform, version);
        if let Err(e) = insert(&mut self.transforms, info, Arc::new(typed(factory))) {
            panic!("{e}");
        }
    }

    /// Says that a registered source type keeps its positions upstream, not in the host's
    /// offset store (a Kafka source commits to its consumer group). `note` tells an operator
    /// where, and `sluice offsets` shows it when the store has nothing for the pipeline.
    pub fn keeps_positions_upstream(&mut self, source_type: &str, note: &str) {
        self.upstream_positions
            .insert(source_type.to_string(), note.to_string());
    }

    /// Where a source type keeps its positions upstream, if it does (see
    /// [`keeps_positions_upstream`](Self::keeps_positions_upstream)).
    pub fn upstream_positions(&self, source_type: &str) -> Option<&str> {
        self.upstream_positions.get(source_type).map(String::as_str)
    }

    /// Registers a source with an untyped factory and explicit provenance (plugins).
    pub fn add_source(
        &mut self,
        info: ConnectorInfo,
        factory: SourceFactory,
    ) -> Result<(), RegistryError> {
        insert(&mut self.sources, info, factory)
    }

    /// Registers a sink with an untyped factory and explicit provenance (plugins).
    pub fn add_sink(
        &mut self,
        info: ConnectorInfo,
        factory: SinkFactory,
    ) -> Result<(), RegistryError> {
        insert(&mut self.sinks, info, factory)
    }

    /// Registers a transform with an untyped factory and explicit provenance (plugins).
    pub fn add_transform(
        &mut self,
        info: ConnectorInfo,
        factory: TransformFactory,
    ) -> Result<(), RegistryError> {
        insert(&mut self.transforms, info, factory)
    }

    /// Moves the sources and sinks of `from` here under `prefix` + their name, keeping their
    /// factories and versions: how a plugin exports connectors a host also has built in
    /// (`file` as `plugin_file`) without a name clash. Dead-letter queues and transforms are
    /// not moved.
    pub fn add_prefixed(&mut self, prefix: &str, from: Registry) -> Result<(), RegistryError> {
        let rename = |info: ConnectorInfo| ConnectorInfo {
            type_name: format!("{prefix}{}", info.type_name),
            ..info
        };
        for (_, e) in from.sources {
            insert(&mut self.sources, rename(e.info), e.factory)?;
        }
        for (_, e) in from.sinks {
            insert(&mut self.sinks, rename(e.info), e.factory)?;
        }
        Ok(())
    }

    pub fn source(&self, type_name: &str) -> Option<&ConnectorInfo> {
        self.sources.get(type_name).map(|e| &e.info)
    }

    pub fn sink(&self, type_name: &str) -> Option<&ConnectorInfo> {
        self.sinks.get(type_name).map(|e| &e.info)
    }

    pub fn transform(&self, type_name: &str) -> Option<&ConnectorInfo> {
        self.transforms.get(type_name).map(|e| &e.info)
    }

    /// Every registered type: sources, sinks, dead-letter queues, then transforms, each kind
    /// sorted by name.
    pub fn connectors(&self) -> Vec<&ConnectorInfo> {
        self.sources
            .values()
            .map(|e| &e.info)
            .chain(self.sinks.values().map(|e| &e.info))
            .chain(self.dead_letters.values().map(|e| &e.info))
            .chain(self.transforms.values().map(|e| &e.info))
            .collect()
    }

    pub fn build_source(
        &self,
        type_name: &str,
        config: serde_json::Value,
        ctx: &BuildContext,
    ) -> Result<Box<dyn Source>, RegistryError> {
        let f = lookup(&self.sources, ConnectorKind::Source, type_name)?;
        Ok(f(config, ctx)?)
    }

    pub fn build_sink(
        &self,
        type_name: &str,
        config: serde_json::Value,
        ctx: &BuildContext,
    ) -> Result<Box<dyn Sink>, RegistryError> {
        let f = lookup(&self.sinks, ConnectorKind::Sink, type_name)?;
        Ok(f(config, ctx)?)
    }

    pub fn build_transform(
        &self,
        type_name: &str,
        config: serde_json::Value,
        ctx: &BuildContext,
    ) -> Result<Box<dyn Transform>, RegistryError> {
        let f = lookup(&self.transforms, ConnectorKind::Transform, type_name)?;
        Ok(f(config, ctx)?)
    }

    pub fn build_dead_letter(
        &self,
        type_name: &str,
        config: serde_json::Value,
        ctx: &BuildContext,
    ) -> Result<Arc<dyn DeadLetterWriter>, RegistryError> {
        let f = lookup(&self.dead_letters, ConnectorKind::DeadLetter, type_name)?;
        Ok(f(config, ctx)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixed_connectors_keep_their_factories_and_versions() {
        let mut inner = Registry::new();
        inner.register_sink("file", "1.2.3", |_: serde_json::Value, _| {
            Err(ConfigError::new("the file sink's own factory"))
        });
        inner.register_source("generator", "1.2.3", |_: serde_json::Value, _| {
            Err(ConfigError::new("the generator's own factory"))
        });
        let mut outer = Registry::new();
        outer.add_prefixed("plugin_", inner).unwrap();

        let names: Vec<(&str, &str)> = outer
            .connectors()
            .into_iter()
            .map(|c| (c.type_name.as_str(), c.version.as_str()))
            .collect();
        assert_eq!(
            names,
            [("plugin_generator", "1.2.3"), ("plugin_file", "1.2.3")]
        );
        let ctx = BuildContext {
            pipeline: "p".into(),
            data_dir: std::env::temp_dir(),
        };
        let err = outer
            .build_sink("plugin_file", serde_json::Value::Null, &ctx)
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("the file sink's own factory"),
            "{err}"
        );
        assert!(outer
            .build_sink("file", serde_json::Value::Null, &ctx)
            .is_err());
    }

    #[test]
    fn a_source_says_where_it_keeps_positions() {
        let mut r = Registry::new();
        r.keeps_positions_upstream("queue", "queue sources commit to their broker");
        assert_eq!(
            r.upstream_positions("queue"),
            Some("queue sources commit to their broker")
        );
        assert_eq!(r.upstream_positions("file"), None);
    }

    #[test]
    fn a_prefixed_name_that_is_taken_is_refused() {
        let mut inner = Registry::new();
        inner.register_sink("file", "1", |_: serde_json::Value, _| {
            Err(ConfigError::new("x"))
        });
        let mut outer = Registry::new();
        outer.register_sink("plugin_file", "1", |_: serde_json::Value, _| {
            Err(ConfigError::new("y"))
        });
        assert!(matches!(
            outer.add_prefixed("plugin_", inner),
            Err(RegistryError::Duplicate { .. })
        ));
    }
}
