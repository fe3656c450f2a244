//! The plugin side of the ABI, instantiated by [`export_plugin!`](crate::export_plugin).
//!
//! The connectors and transforms of the plugin live in a [`Registry`] built once from the
//! plugin's `register` function. Instances are addressed by handles; slow calls (`open`,
//! `send`, `poll`, `commit`, `close`) run as operations on a tokio runtime owned by the
//! plugin, so the host's threads never block on plugin work and the plugin never touches the
//! host's runtime (each side has its own copy of tokio). A transform's `apply` does no I/O and
//! runs within its call, a batch at a time. Every export runs under `catch_unwind`: a panic becomes a `PANIC`
//! status carrying its message and location.

mod instances;
mod log;
mod ops;
mod sink;
mod source;
mod transform;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

use crate::plugin::abi::{
    code, AbiVersion, Buffer, HostApi, PluginApi, Status, ABI_MAJOR, HOST_API_MIN_SIZE,
    PLUGIN_API_MIN_SIZE,
};
use crate::plugin::wire::{Manifest, ManifestConnector, ManifestKind};
use crate::{ConnectorKind, Registry, SDK_VERSION};

use ops::{guard, Failure};

/// What [`export_plugin!`](crate::export_plugin) records about a plugin crate.
#[derive(Debug)]
pub struct PluginDef {
    pub name: &'static str,
    pub version: &'static str,
    /// The ABI the plugin reports (the SDK's own, except in host tests).
    pub abi: AbiVersion,
    /// Adds the plugin's connectors, like a built-in connector crate's `register`.
    pub register: fn(&mut Registry),
    /// JSON Schemas of configurations, by type name or `sink:NAME` / `source:NAME` /
    /// `transform:NAME`.
    pub schemas: &'static [(&'static str, &'static str)],
}

struct Guest {
    registry: Registry,
    manifest: Vec<u8>,
}

static GUEST: OnceLock<Result<Guest, String>> = OnceLock::new();

fn build_guest(def: &PluginDef) -> Result<Guest, String> {
    let registry = catch_unwind(AssertUnwindSafe(|| {
        let mut r = Registry::new();
        (def.register)(&mut r);
        r
    }))
    .map_err(|p| format!("registering the connectors {}", ops::panic_message(p)))?;
    let manifest = build_manifest(def, &registry)?;
    let manifest = serde_json::to_vec(&manifest).map_err(|e| e.to_string())?;
    Ok(Guest { registry, manifest })
}

fn build_manifest(def: &PluginDef, registry: &Registry) -> Result<Manifest, String> {
    let mut connectors = Vec::new();
    let mut used = vec![false; def.schemas.len()];
    for info in registry.connectors() {
        let (kind, prefix) = match info.kind {
            ConnectorKind::Source => (ManifestKind::Source, "source:"),
            ConnectorKind::Sink => (ManifestKind::Sink, "sink:"),
            ConnectorKind::Transform if def.abi.minor == 0 => {
                return Err(format!(
                    "transform `{}`: plugin ABI {} has no transforms (3.1 added them)",
                    info.type_name, def.abi
                ))
            }
            ConnectorKind::Transform => (ManifestKind::Transform, "transform:"),
            // Dead-letter queues are not part of the ABI.
            ConnectorKind::DeadLetter => continue,
        };
        let qualified = format!("{prefix}{}", info.type_name);
        let found = def
            .schemas
            .iter()
            .position(|(k, _)| *k == qualified)
            .or_else(|| def.schemas.iter().position(|(k, _)| *k == info.type_name));
        let config_schema = match found {
            None => serde_json::Value::Null,
            Some(i) => {
                used[i] = true;
                serde_json::from_str(def.schemas[i].1).map_err(|e| {
                    format!(
                        "the config schema of `{}` is not JSON: {e}",
                        def.schemas[i].0
                    )
                })?
            }
        };
        connectors.push(ManifestConnector {
            type_name: info.type_name.clone(),
            kind,
            version: info.version.clone(),
            config_schema,
        });
    }
    if let Some(i) = used.iter().position(|u| !u) {
        return Err(format!(
            "a config schema is given for `{}`, which the plugin does not register",
            def.schemas[i].0
        ));
    }
    Ok(Manifest {
        name: def.name.to_string(),
        version: def.version.to_string(),
        sdk_version: SDK_VERSION.to_string(),
        abi: [def.abi.major, def.abi.minor],
        connectors,
    })
}

fn guest(def: &PluginDef) -> Result<&'static Guest, Failure> {
    GUEST
        .get_or_init(|| build_guest(def))
        .as_ref()
        .map_err(|e| Failure::new(code::FATAL, e.clone()))
}

/// The registry of an initialised plugin.
fn registry() -> Result<&'static Registry, Failure> {
    match GUEST.get() {
        Some(Ok(g)) => Ok(&g.registry),
        _ => Err(Failure::invalid(
            "plugin not initialised: call sluice_plugin_init first",
        )),
    }
}

/// Body of `sluice_plugin_manifest`.
///
/// # Safety
/// `out` must be valid for a write.
pub unsafe fn manifest(def: &'static PluginDef, out: *mut Buffer) -> Status {
    guard(|| {
        if out.is_null() {
            return Err(Failure::invalid("null out"));
        }
        let g = guest(def)?;
        // SAFETY: checked non-null; the manifest lives as long as the library.
        unsafe { out.write(Buffer::from_static(&g.manifest)) };
        Ok(Status::OK)
    })
}

/// Body of `sluice_plugin_init`: checks the host's table, starts the plugin runtime, routes
/// logs and panics to the host and hands out the plugin's table. Calling it again returns the
/// same table.
///
/// # Safety
/// `host` must point to a valid host table and `out` be valid for a write.
pub unsafe fn init(
    def: &'static PluginDef,
    host: *const HostApi,
    out: *mut *const PluginApi,
) -> Status {
    guard(|| {
        if host.is_null() || out.is_null() {
            return Err(Failure::invalid("null argument to sluice_plugin_init"));
        }
        // SAFETY: the host passes a table at least `size` bytes long; `size` comes first.
        let size = unsafe { (*host).size };
        if size < HOST_API_MIN_SIZE {
            return Err(Failure::invalid(format!(
                "host table of {size} bytes is smaller than the {HOST_API_MIN_SIZE} of plugin \
                 ABI {ABI_MAJOR}.0"
            )));
        }
        // SAFETY: within the `size` bytes checked above.
        let log = unsafe {
            host.cast::<u8>()
                .add(std::mem::offset_of!(HostApi, log))
                .cast::<*const std::ffi::c_void>()
                .read()
        };
        if log.is_null() {
            return Err(Failure::invalid("the host table's `log` is null"));
        }
        // SAFETY: at least as large as the fields read below, every function pointer set.
        let host = unsafe { &*host };
        if host.abi.major != ABI_MAJOR {
            return Err(Failure::invalid(format!(
                "host speaks plugin ABI {}, this plugin was built for {}",
                host.abi, def.abi
            )));
        }
        guest(def)?;
        log::connect(host);
        let threads = if host.worker_threads == 0 {
            1
        } else {
            host.worker_threads as usize
        };
        ops::start_runtime(&format!("plugin-{}", def.name), threads)?;
        // A plugin hands out the table of the ABI it reports.
        let table: &'static PluginApi = if def.abi.minor == 0 {
            &PLUGIN_API_3_0
        } else {
            &PLUGIN_API
        };
        // SAFETY: checked non-null.
        unsafe { out.write(table) };
        Ok(Status::OK)
    })
}

static PLUGIN_API: PluginApi = PluginApi {
    size: std::mem::size_of::<PluginApi>(),
    transform_create: Some(transform::create),
    transform_apply: Some(transform::apply),
    transform_destroy: Some(transform::destroy),
    ..TABLE_3_0
};

/// The table of a plugin that reports ABI 3.0 (only the host's tests build one).
static PLUGIN_API_3_0: PluginApi = TABLE_3_0;

/// The table as ABI 3.0 defined it: its size ends before the transform slots, which a host
/// therefore never reads (they are `None` here too).
const TABLE_3_0: PluginApi = PluginApi {
    size: PLUGIN_API_MIN_SIZE,
    op_poll: ops::op_poll,
    op_cancel: ops::op_cancel,
    sink_create: sink::create,
    sink_open: sink::open,
    sink_send: sink::send,
    sink_close: sink::close,
    sink_concurrency: sink::concurrency,
    sink_health: sink::health,
    sink_destroy: sink::destroy,
    source_create: source::create,
    source_open: source::open,
    source_poll: source::poll,
    source_commit: source::commit,
    source_close: source::close,
    source_lag: source::lag,
    source_health: source::health,
    source_destroy: source::destroy,
    transform_create: None,
    transform_apply: None,
    transform_destroy: None,
};

/// Reads a borrowed JSON argument.
fn json_arg<T: serde::de::DeserializeOwned>(
    slice: crate::plugin::abi::Slice,
    what: &str,
) -> Result<T, Failure> {
    // SAFETY: the ABI guarantees the slice for the duration of the call.
    let bytes = unsafe { slice.as_bytes() };
    serde_json::from_slice(bytes).map_err(|e| Failure::invalid(format!("{what}: {e}")))
}

/// Reads a borrowed UTF-8 argument.
fn str_arg<'a>(slice: crate::plugin::abi::Slice, what: &str) -> Result<&'a str, Failure> {
    // SAFETY: as above.
    let bytes = unsafe { slice.as_bytes() };
    std::str::from_utf8(bytes).map_err(|_| Failure::invalid(format!("{what} is not UTF-8")))
}

/// Writes a health state: empty when healthy, else the reason.
///
/// # Safety
/// `out` must be valid for a write or null.
unsafe fn write_health(health: &crate::Health, out: *mut Buffer) -> Result<Status, Failure> {
    if out.is_null() {
        return Err(Failure::invalid("null out"));
    }
    let buf = health
        .problem()
        .map_or(Buffer::EMPTY, |p| Buffer::from_vec(p.into_bytes()));
    // SAFETY: checked non-null.
    unsafe { out.write(buf) };
    Ok(Status::OK)
}
