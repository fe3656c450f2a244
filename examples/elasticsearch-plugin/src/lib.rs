//! The `elasticsearch` sink of `connectors/elasticsearch` exported as a plugin under the name
//! `plugin_elasticsearch`, so the throughput bench can run one network connector built in and
//! across the plugin boundary (`sluice-bench generator-elasticsearch-plugin`).

use sluice_sdk::Registry;

pub fn register(registry: &mut Registry) {
    let mut builtin = Registry::new();
    sluice_elasticsearch::register(&mut builtin);
    if let Err(e) = registry.add_prefixed("plugin_", builtin) {
        // Caught by the export wrapper and reported by the host as a manifest error.
        panic!("{e}");
    }
}

sluice_sdk::export_plugin!(register);
