//! The `elasticsearch` and `datadog_logs` sinks exported as a plugin under the names
//! `plugin_elasticsearch` and `plugin_datadog_logs`, so the throughput bench can run network
//! connectors built in and across the plugin boundary (`sluice-bench generator-http-plugin`).

use sluice_sdk::Registry;

pub fn register(registry: &mut Registry) {
    let mut builtin = Registry::new();
    sluice_elasticsearch::register(&mut builtin);
    sluice_datadog::register(&mut builtin);
    if let Err(e) = registry.add_prefixed("plugin_", builtin) {
        // Caught by the export wrapper and reported by the host as a manifest error.
        panic!("{e}");
    }
}

sluice_sdk::export_plugin!(register);

/// The allocator the host uses. With glibc's, a plugin hands each batch-sized block back to
/// the kernel when it is freed and faults it in again for the next batch: 24,000-38,000 page
/// faults per million records through the elasticsearch sink against about 1,600
/// (`docs/BENCHMARKS.md`). Buffers never change allocator: each is freed by its own side.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
