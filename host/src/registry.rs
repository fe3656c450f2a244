//! The connector registry of this binary: built-in connectors and transforms, the connector
//! crates compiled in, and plugins named in the configuration.

use std::borrow::Cow;
use std::path::PathBuf;

use sluice_sdk::{ConnectorKind, Registry};

use crate::config::{ConnectorSpec, PipelineConfig};

use crate::plugin::{check_plugin_file, load_plugins, PluginError};

/// Built-in and compiled-in connectors, and the built-in transforms.
pub fn compiled_in() -> Registry {
    let mut r = Registry::new();
    crate::transform::register(&mut r);
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
    #[cfg(feature = "http")]
    sluice_http::register(&mut r);
    #[cfg(feature = "http-server")]
    sluice_http_server::register(&mut r);
    r
}

/// Compiled-in connectors plus the given plugins.
pub fn with_plugins(plugins: &[PathBuf]) -> Result<Registry, PluginError> {
    let mut r = compiled_in();
    load_plugins(plugins, &mut r)?;
    Ok(r)
}

/// Checks each plugin file without loading it (see [`check_plugin_file`]): what `validate`
/// does, since loading a library runs its code.
pub fn check_plugins(plugins: &[PathBuf]) -> Vec<PluginError> {
    plugins
        .iter()
        .filter_map(|p| check_plugin_file(p).err())
        .collect()
}

/// `p` with each source, sink, dead-letter or transform type that `registry` does not know
/// replaced by a built-in stand-in (`generator`, `blackhole`, `file`, a `drop` of no field),
/// so the rest of the pipeline (the other transforms, batching, the other connectors) can be
/// checked without loading the plugins that provide those types; a transform's stand-in keeps
/// its place, so the others keep their positions. `note` is told of each replacement
/// (section, type).
pub fn without_plugin_types<'a>(
    p: &'a PipelineConfig,
    registry: &Registry,
    mut note: impl FnMut(&str, &str),
) -> Cow<'a, PipelineConfig> {
    let stand_in = |t: &str| ConnectorSpec {
        type_name: t.to_string(),
        config: serde_json::json!({}),
    };
    let mut out = Cow::Borrowed(p);
    if registry.source(&p.source.type_name).is_none() {
        note("source", &p.source.type_name);
        out.to_mut().source = stand_in("generator");
    }
    if let Some(sink) = p
        .sink
        .as_ref()
        .filter(|s| registry.sink(&s.type_name).is_none())
    {
        note("sink", &sink.type_name);
        out.to_mut().sink = Some(stand_in("blackhole"));
    }
    for (i, s) in p.sinks.iter().enumerate() {
        if registry.sink(&s.spec.type_name).is_none() {
            note(&format!("sinks.{}", s.name), &s.spec.type_name);
            out.to_mut().sinks[i].spec = stand_in("blackhole");
        }
        if let Some(f) = s
            .fallback
            .as_ref()
            .filter(|f| registry.sink(&f.sink.type_name).is_none())
        {
            note(
                &format!("sinks.{}.fallback.sink", s.name),
                &f.sink.type_name,
            );
            if let Some(f) = out.to_mut().sinks[i].fallback.as_mut() {
                f.sink = stand_in("blackhole");
            }
        }
    }
    for (i, t) in p.transforms.iter().enumerate() {
        if registry.transform(&t.type_name).is_none() {
            note(&format!("transforms[{i}]"), &t.type_name);
            out.to_mut().transforms[i] = ConnectorSpec {
                type_name: "drop".into(),
                config: serde_json::json!({ "fields": [] }),
            };
        }
    }
    if let Some(d) = &p.dead_letter {
        let known = registry
            .connectors()
            .iter()
            .any(|c| c.kind == ConnectorKind::DeadLetter && c.type_name == d.type_name);
        if !known {
            note("dead_letter", &d.type_name);
            out.to_mut().dead_letter = Some(stand_in("file"));
        }
    }
    out
}
