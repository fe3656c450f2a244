//! The built-in connectors of `connectors/builtin` (`file` source and sink, `generator`,
//! `stdout`, `blackhole`) exported as a plugin library, each under its name prefixed with
//! `plugin_` (`plugin_file`, ...) so that a host, which has the built-ins, can load it too.
//!
//! It shows how an existing connector crate becomes a plugin, and it lets the conformance
//! suite and the throughput bench run the very same code built in and across the plugin
//! boundary.

use sluice_sdk::Registry;

/// Prefix of the exported type names.
pub const PREFIX: &str = "plugin_";

/// Registers every source and sink of `sluice_builtin` under `plugin_<name>`.
pub fn register(registry: &mut Registry) {
    let mut builtin = Registry::new();
    sluice_builtin::register(&mut builtin);
    if let Err(e) = registry.add_prefixed(PREFIX, builtin) {
        // Caught by the export wrapper and reported by the host as a manifest error.
        panic!("{e}");
    }
}

sluice_sdk::export_plugin!(
    register,
    schemas: [
        ("sink:plugin_file", include_str!("../file-sink.schema.json")),
        ("source:plugin_file", include_str!("../file-source.schema.json")),
    ],
);

/// The allocator the host uses. With glibc's, a plugin hands each batch-sized block back to
/// the kernel when it is freed and faults it in again for the next batch: 24,000-38,000 page
/// faults per million records through the elasticsearch sink against about 1,600
/// (`docs/BENCHMARKS.md`). Buffers never change allocator: each is freed by its own side.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
