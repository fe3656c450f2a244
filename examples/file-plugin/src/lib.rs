//! The built-in connectors of `connectors/builtin` (`file` source and sink, `generator`,
//! `stdout`, `blackhole`) exported as a plugin library.
//!
//! It shows that any connector crate's `register` function becomes a plugin with one line, and
//! it lets the conformance suite run the very same `file` connectors built in and as a plugin.
//! Its type names are the built-ins' own, so a host that has the built-ins refuses to load it
//! (a plugin never shadows a connector silently): load it into a registry of its own.

sluice_sdk::export_plugin!(
    sluice_builtin::register,
    schemas: [
        ("sink:file", include_str!("../file-sink.schema.json")),
        ("source:file", include_str!("../file-source.schema.json")),
    ],
);
