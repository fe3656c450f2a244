//! Dynamic connector plugins: the versioned C ABI, how record batches cross it,
//! and the export macro that turns ordinary [`Source`](crate::Source),
//! [`Sink`](crate::Sink) and [`Transform`](crate::Transform) implementations into a plugin
//! library.
//!
//! A plugin is a `cdylib` crate that depends on `sluice-sdk`, registers its connectors and
//! transforms in a [`Registry`](crate::Registry) exactly like a built-in connector crate does,
//! and calls [`export_plugin!`](crate::export_plugin) once:
//!
//! ```ignore
//! pub fn register(registry: &mut sluice_sdk::Registry) {
//!     registry.register_sink("webhook", env!("CARGO_PKG_VERSION"), |cfg: WebhookConfig, _ctx| {
//!         Ok(Box::new(WebhookSink::new(cfg)?))
//!     });
//! }
//!
//! sluice_sdk::export_plugin!(register, schemas: [("webhook", include_str!("../webhook.schema.json"))]);
//! ```
//!
//! The host loads the library with `host.plugins`, checks [`abi::SYMBOL_ABI_VERSION`] and the
//! manifest before calling anything else, and registers every connector and transform of the
//! manifest in its own registry; from then on a plugin connector goes through the same
//! batching, retries, dead-letter queue, offsets and metrics as a built-in one, and a plugin
//! transform is named in `transforms:` like a built-in one.
//!
//! How the pieces fit:
//! * [`abi`]: the `#[repr(C)]` tables, buffers with release callbacks, status codes.
//! * [`lend`]: sink and transform batches, described and lent by the host, read into
//!   [`RecordRef`](crate::RecordRef)s by the plugin.
//! * [`codec`]: the compact binary encoding of source batches, sink outcomes, transform
//!   results, origins and checkpoints.
//! * [`wire`]: the JSON documents of the control plane (manifest, contexts).
//! * [`guest`]: the plugin side, used by the macro: a tokio runtime owned by the plugin,
//!   non-blocking operations, panic containment and log forwarding.
//! * [`ForeignBuffer`]: holds a buffer received from the other side and gives it back on drop.

pub mod abi;
mod buffer;
pub mod codec;
pub mod guest;
pub mod lend;
pub mod wire;

pub use abi::{AbiVersion, ABI_VERSION};
pub use buffer::{BufferPool, ForeignBuffer};
pub use guest::PluginDef;

/// Turns the connectors and transforms a `register` function adds to a
/// [`Registry`](crate::Registry) into a plugin: exports `sluice_abi_version`,
/// `sluice_plugin_manifest` and `sluice_plugin_init`.
///
/// Call it once, at the root of a `cdylib` crate. The plugin's name and version are the
/// crate's (`CARGO_PKG_NAME`, `CARGO_PKG_VERSION`). `schemas` optionally gives each type a
/// JSON Schema of its configuration for the manifest, keyed by type name (`"webhook"`), or by
/// `"sink:NAME"` / `"source:NAME"` / `"transform:NAME"` when types of different kinds share a
/// name.
///
/// ```ignore
/// sluice_sdk::export_plugin!(my_crate::register);
/// sluice_sdk::export_plugin!(register, schemas: [("webhook", include_str!("../schema.json"))]);
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($register:path $(,)?) => {
        $crate::__export_plugin_with_abi!($crate::plugin::abi::ABI_VERSION, $register, []);
    };
    ($register:path, schemas: [$(($type_name:expr, $schema:expr)),* $(,)?] $(,)?) => {
        $crate::__export_plugin_with_abi!(
            $crate::plugin::abi::ABI_VERSION,
            $register,
            [$(($type_name, $schema)),*]
        );
    };
}

/// [`export_plugin!`] with an explicit ABI version. Only for testing how a host treats a
/// plugin built for another ABI; a real plugin always reports the SDK's own version.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_plugin_with_abi {
    ($abi:expr, $register:path, [$(($type_name:expr, $schema:expr)),*]) => {
        #[doc(hidden)]
        static __SLUICE_PLUGIN_DEF: $crate::plugin::PluginDef = $crate::plugin::PluginDef {
            name: env!("CARGO_PKG_NAME"),
            version: env!("CARGO_PKG_VERSION"),
            abi: $abi,
            register: $register,
            schemas: &[$(($type_name, $schema)),*],
        };

        /// The plugin ABI version this library was built for.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn sluice_abi_version() -> $crate::plugin::abi::AbiVersion {
            $abi
        }

        /// The plugin manifest (JSON): name, version, SDK version, connectors.
        ///
        /// # Safety
        /// `out` must be valid for a write.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn sluice_plugin_manifest(
            out: *mut $crate::plugin::abi::Buffer,
        ) -> $crate::plugin::abi::Status {
            $crate::plugin::guest::manifest(&__SLUICE_PLUGIN_DEF, out)
        }

        /// Exchanges the host's and the plugin's function tables.
        ///
        /// # Safety
        /// `host` must point to a valid host table and `out` be valid for a write.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn sluice_plugin_init(
            host: *const $crate::plugin::abi::HostApi,
            out: *mut *const $crate::plugin::abi::PluginApi,
        ) -> $crate::plugin::abi::Status {
            $crate::plugin::guest::init(&__SLUICE_PLUGIN_DEF, host, out)
        }
    };
}
