//! Opens a plugin library and checks it, in an order that calls nothing unchecked: the ABI
//! version symbol (a pure function) first, then the manifest, then the init function.

use std::collections::HashMap;
use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use libloading::Library;
use parking_lot::Mutex;
use sluice_sdk::plugin::abi::{
    level, AbiVersion, AbiVersionFn, Buffer, HostApi, InitFn, ManifestFn, PluginApi, ABI_VERSION,
    PLUGIN_API_MIN_SIZE, PLUGIN_API_SLOTS, PLUGIN_API_TRANSFORM_MIN_SIZE,
    PLUGIN_API_TRANSFORM_SLOTS, SYMBOL_ABI_VERSION, SYMBOL_INIT, SYMBOL_MANIFEST,
};
use sluice_sdk::plugin::wire::{Manifest, ManifestKind};
use sluice_sdk::plugin::ForeignBuffer;
use tracing::level_filters::LevelFilter;

use super::call::take_status;
use super::log::{host_log, LogContext};
use super::{PluginError, TableError};

/// A plugin library, loaded for the life of the process.
#[derive(Debug)]
pub struct LoadedPlugin {
    /// Canonical path of the library.
    pub path: PathBuf,
    pub manifest: Manifest,
    pub(crate) api: &'static PluginApi,
}

static LOADED: LazyLock<Mutex<HashMap<PathBuf, &'static LoadedPlugin>>> =
    LazyLock::new(Default::default);

/// Whether a plugin built for `plugin` can run on a host speaking `host`.
pub(crate) fn check_abi(
    host: AbiVersion,
    plugin: AbiVersion,
    path: &Path,
) -> Result<(), PluginError> {
    let advice = if plugin.major != host.major {
        "major versions must match; rebuild the plugin against the sluice-sdk of this sluice"
    } else if plugin.minor > host.minor {
        "the plugin needs a newer minor version; upgrade sluice or rebuild the plugin against \
         the sluice-sdk of this sluice"
    } else {
        return Ok(());
    };
    Err(PluginError::AbiMismatch {
        path: path.to_path_buf(),
        plugin,
        host,
        advice,
    })
}

/// Copies a function pointer out of the library.
///
/// # Safety
/// `T` must be the symbol's real type.
unsafe fn symbol<T: Copy>(
    lib: &Library,
    name: &'static str,
    path: &Path,
) -> Result<T, PluginError> {
    // SAFETY: per the caller.
    match unsafe { lib.get::<T>(name.as_bytes()) } {
        Ok(s) => Ok(*s),
        Err(e) => Err(PluginError::MissingSymbol {
            path: path.to_path_buf(),
            symbol: name,
            reason: e.to_string(),
        }),
    }
}

fn host_log_level() -> u32 {
    let max = LevelFilter::current();
    if max >= LevelFilter::TRACE {
        level::TRACE
    } else if max >= LevelFilter::DEBUG {
        level::DEBUG
    } else if max >= LevelFilter::INFO {
        level::INFO
    } else if max >= LevelFilter::WARN {
        level::WARN
    } else if max >= LevelFilter::ERROR {
        level::ERROR
    } else {
        level::OFF
    }
}

/// Checks, without loading it, that a plugin file exists and is a shared library for some
/// platform: an ELF shared object (`ET_DYN` without a program interpreter, which a
/// position-independent executable has), a Mach-O dylib or bundle, or a PE image.
/// Opening a library runs its initialisers, so `validate` of an untrusted configuration
/// checks this much and no more.
pub(crate) fn check_library(path: &Path) -> Result<(), PluginError> {
    use std::io::Read;
    let unreadable = |source| PluginError::Unreadable {
        path: path.to_path_buf(),
        source,
    };
    // The ELF header and, in any library a linker writes, the program headers after it.
    let mut head = vec![0u8; 64 * 1024];
    let mut f = std::fs::File::open(path).map_err(unreadable)?;
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(unreadable(e)),
        }
    }
    let not = |reason: &str| {
        Err(PluginError::NotALibrary {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        })
    };
    let head = &head[..n];
    if let Some(ident) = head.strip_prefix(b"\x7fELF") {
        // e_type (offset 16) in the byte order given by EI_DATA (offset 5).
        let e_type = match (ident.get(1), head.get(16..18)) {
            (Some(1), Some(t)) => u16::from_le_bytes([t[0], t[1]]),
            (Some(2), Some(t)) => u16::from_be_bytes([t[0], t[1]]),
            _ => return not("a truncated ELF file"),
        };
        return match e_type {
            3 if elf_has_interpreter(head) => {
                not("an executable (it has a program interpreter), not a shared library")
            }
            3 => Ok(()),
            2 => not("an ELF executable, not a shared library"),
            1 => not("an ELF object file, not a shared library"),
            _ => not("an ELF file that is not a shared library"),
        };
    }
    let macho = [
        [0xfe, 0xed, 0xfa, 0xce],
        [0xfe, 0xed, 0xfa, 0xcf],
        [0xce, 0xfa, 0xed, 0xfe],
        [0xcf, 0xfa, 0xed, 0xfe],
    ];
    if let Some(magic) = head.get(..4) {
        if let Some(i) = macho.iter().position(|m| m == magic) {
            // filetype (offset 12): MH_DYLIB 6 or MH_BUNDLE 8.
            let Some(t) = head.get(12..16) else {
                return not("a truncated Mach-O file");
            };
            let filetype = if i < 2 {
                u32::from_be_bytes([t[0], t[1], t[2], t[3]])
            } else {
                u32::from_le_bytes([t[0], t[1], t[2], t[3]])
            };
            return if matches!(filetype, 6 | 8) {
                Ok(())
            } else {
                not("a Mach-O file that is not a dynamic library")
            };
        }
        if magic == [0xca, 0xfe, 0xba, 0xbe] {
            return Ok(()); // a universal Mach-O binary
        }
    }
    if head.starts_with(b"MZ") {
        return Ok(());
    }
    not("not a shared library (no ELF, Mach-O or PE header)")
}

/// Whether an ELF file's program headers (within `head`) include `PT_INTERP`.
fn elf_has_interpreter(head: &[u8]) -> bool {
    let big = head.get(5) == Some(&2);
    let num = |at: usize, len: usize| -> Option<u64> {
        let b = head.get(at..at + len)?;
        let mut v = 0u64;
        for i in 0..len {
            let byte = if big { b[i] } else { b[len - 1 - i] };
            v = (v << 8) | u64::from(byte);
        }
        Some(v)
    };
    let (phoff, phentsize, phnum) = match head.get(4) {
        Some(2) => (num(0x20, 8), num(0x36, 2), num(0x38, 2)),
        _ => (num(0x1c, 4), num(0x2a, 2), num(0x2c, 2)),
    };
    let (Some(phoff), Some(size), Some(n)) = (phoff, phentsize, phnum) else {
        return false;
    };
    (0..n).any(|i| {
        usize::try_from(phoff + i * size)
            .ok()
            .and_then(|at| num(at, 4))
            == Some(3)
    })
}

/// Loads, checks and initialises a plugin library, once per process.
pub(crate) fn load(path: &Path) -> Result<&'static LoadedPlugin, PluginError> {
    let canonical = path
        .canonicalize()
        .map_err(|source| PluginError::Unreadable {
            path: path.to_path_buf(),
            source,
        })?;
    // Held for the whole load: two pipelines naming one library load it once.
    let mut loaded = LOADED.lock();
    if let Some(p) = loaded.get(&canonical) {
        return Ok(p);
    }
    let path = canonical.as_path();

    // SAFETY: loading runs the library's initialisers; plugins are trusted code, chosen by
    // the operator in the configuration.
    let lib = unsafe { Library::new(path) }.map_err(|e| PluginError::NotALibrary {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;

    // SAFETY: the ABI defines this symbol's type; it is a pure function.
    let version_fn: AbiVersionFn = unsafe { symbol(&lib, SYMBOL_ABI_VERSION, path)? };
    // SAFETY: as above.
    let version = unsafe { version_fn() };
    check_abi(ABI_VERSION, version, path)?;

    // SAFETY: the version check passed, so the manifest symbol has the ABI's type.
    let manifest_fn: ManifestFn = unsafe { symbol(&lib, SYMBOL_MANIFEST, path)? };
    let mut out = Buffer::EMPTY;
    // SAFETY: `out` is writable.
    let status = unsafe { manifest_fn(&mut out) };
    // SAFETY: written by the plugin, owned by us now.
    let manifest_buf = unsafe { ForeignBuffer::new(out) };
    take_status(status).map_err(|f| PluginError::Manifest {
        path: path.to_path_buf(),
        reason: f.message,
    })?;
    let manifest: Manifest =
        serde_json::from_slice(manifest_buf.as_slice()).map_err(|e| PluginError::Manifest {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    drop(manifest_buf);
    if manifest.abi != [version.major, version.minor] {
        return Err(PluginError::Manifest {
            path: path.to_path_buf(),
            reason: format!(
                "manifest says ABI {}.{} but sluice_abi_version says {version}",
                manifest.abi[0], manifest.abi[1]
            ),
        });
    }

    // SAFETY: as for the manifest.
    let init_fn: InitFn = unsafe { symbol(&lib, SYMBOL_INIT, path)? };
    let log_ctx: &'static LogContext = Box::leak(Box::new(LogContext {
        plugin: manifest.name.clone(),
    }));
    let host: &'static HostApi = Box::leak(Box::new(HostApi {
        size: std::mem::size_of::<HostApi>(),
        abi: ABI_VERSION,
        ctx: (log_ctx as *const LogContext).cast::<c_void>(),
        log: host_log,
        max_log_level: host_log_level(),
        worker_threads: 0,
    }));
    let mut table: *const PluginApi = std::ptr::null();
    // SAFETY: `host` lives forever and `table` is writable.
    let status = unsafe { init_fn(host, &mut table) };
    take_status(status).map_err(|f| PluginError::Init {
        path: path.to_path_buf(),
        reason: f.message,
    })?;
    if table.is_null() {
        return Err(PluginError::Init {
            path: path.to_path_buf(),
            reason: "no function table returned".into(),
        });
    }
    // SAFETY: non-null and, per the ABI, at least `size` bytes long; it lives as long as the
    // library, which is never unloaded.
    let api = unsafe { read_table(table) }
        .and_then(|api| check_transform_slots(api, &manifest))
        .map_err(|source| PluginError::Table {
            path: path.to_path_buf(),
            source,
        })?;
    std::mem::forget(lib);

    tracing::info!(
        plugin = %manifest.name,
        version = %manifest.version,
        sdk = %manifest.sdk_version,
        path = %path.display(),
        connectors = manifest.connectors.len(),
        "plugin loaded"
    );
    let plugin: &'static LoadedPlugin = Box::leak(Box::new(LoadedPlugin {
        path: canonical.clone(),
        manifest,
        api,
    }));
    loaded.insert(canonical, plugin);
    Ok(plugin)
}

/// The plugin's function table as this host knows it: a copy of as much of it as the plugin's
/// `size` covers, the rest zero, so a field appended by a newer minor than the plugin's
/// (always an `Option` of a function pointer) reads as `None` and nothing beyond the plugin's
/// table is ever read.
///
/// Every field of the 3.0 table is required: a table shorter than that, or with any function
/// pointer null, is refused, naming the size or the slot. A longer table (a newer 3.x plugin
/// on an older host) is read as far as this host knows it; its further fields are never read.
///
/// # Safety
/// `table` must point to a table at least as long as its leading `size` says.
pub(crate) unsafe fn read_table(table: *const PluginApi) -> Result<&'static PluginApi, TableError> {
    // SAFETY: `size` is the first field of every version of the table.
    let size = unsafe { table.cast::<usize>().read() };
    if size < PLUGIN_API_MIN_SIZE {
        return Err(TableError::TooSmall {
            size,
            min: PLUGIN_API_MIN_SIZE,
        });
    }
    for (slot, offset) in PLUGIN_API_SLOTS {
        // SAFETY: every slot lies within the `size` bytes checked above; it is read as a raw
        // pointer, which may be null, before the table is taken for a `PluginApi`.
        let f = unsafe {
            table
                .cast::<u8>()
                .add(offset)
                .cast::<*const c_void>()
                .read()
        };
        if f.is_null() {
            return Err(TableError::NullSlot(slot));
        }
    }
    let mut copy = std::mem::MaybeUninit::<PluginApi>::zeroed();
    // SAFETY: the plugin's table has `size` readable bytes, and at most a `PluginApi`'s worth
    // are copied into one.
    unsafe {
        std::ptr::copy_nonoverlapping(
            table.cast::<u8>(),
            copy.as_mut_ptr().cast::<u8>(),
            size.min(std::mem::size_of::<PluginApi>()),
        );
    }
    // SAFETY: every required function pointer was copied and checked non-null above; every
    // other field is an `Option` of a function pointer, copied or zero (`None`).
    let api = unsafe { copy.assume_init() };
    Ok(Box::leak(Box::new(api)))
}

/// A plugin whose manifest lists a transform must fill the transform slots (ABI 3.1); each
/// one missing is refused by name.
pub(crate) fn check_transform_slots(
    api: &'static PluginApi,
    manifest: &Manifest,
) -> Result<&'static PluginApi, TableError> {
    let Some(t) = manifest
        .connectors
        .iter()
        .find(|c| c.kind == ManifestKind::Transform)
    else {
        return Ok(api);
    };
    if api.size < PLUGIN_API_TRANSFORM_MIN_SIZE {
        return Err(TableError::NoTransforms {
            transform: t.type_name.clone(),
            size: api.size,
            min: PLUGIN_API_TRANSFORM_MIN_SIZE,
        });
    }
    let set = [
        api.transform_create.is_some(),
        api.transform_apply.is_some(),
        api.transform_destroy.is_some(),
    ];
    match PLUGIN_API_TRANSFORM_SLOTS.iter().zip(set).find(|(_, s)| !s) {
        Some(((slot, _), _)) => Err(TableError::NullSlot(slot)),
        None => Ok(api),
    }
}
