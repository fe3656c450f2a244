//! The C ABI between the host and a plugin library. Only `#[repr(C)]` types and `extern "C"`
//! functions appear here: no Rust type (no `Vec`, `String`, trait object) crosses the boundary,
//! because the two sides are built by different compilers, with different allocators and their
//! own copies of `std`, `tokio` and `tracing`.
//!
//! # Ownership rules
//!
//! * A [`Buffer`] is owned by whoever receives it; the receiver calls [`Buffer::release`]
//!   exactly once when done, which frees the memory on the side that allocated it. This holds
//!   for buffers passed *by value* into a call whatever status the call returns, and for
//!   buffers written to an out-parameter.
//! * A [`Slice`] is borrowed for the duration of the call only.
//! * A [`LentBatch`] passed to a sink operation is borrowed for the whole operation: the host
//!   keeps the records it points into alive and unchanged until the operation's result has
//!   been collected by `op_poll` or `op_cancel` has returned, and the plugin touches them at
//!   no other time. This is what lets a batch reach a plugin sink without being copied.
//! * A [`HostWaker`] passed into a call belongs to the plugin from then on: it calls `wake`
//!   any number of times (from any thread) and `release` exactly once when it will not call
//!   `wake` again, whatever status the call returns.
//! * `release` and `wake` callbacks may be called from any thread.
//!
//! # Versioning
//!
//! The host first calls [`SYMBOL_ABI_VERSION`] and refuses a plugin with another major version
//! or a newer minor version. Within a major version, tables ([`HostApi`], [`PluginApi`]) only
//! grow at their end: each starts with its size in bytes, and a reader never touches a field
//! that lies beyond the size the other side declared. Every field of the 3.0 tables is
//! required and must be set (a host checks each function pointer of the plugin's table); a
//! field a later minor version appends has to be optional (an `Option` of a function pointer)
//! and is read only when the other side's size covers it. A host copies the plugin's table
//! into its own, as far as the plugin's size goes, so the fields a shorter table lacks read
//! as `None`.
//!
//! 3.1 appended the transform slots of [`PluginApi`] (`transform_create`, `transform_apply`,
//! `transform_destroy`) and the manifest kind `transform`: a 3.0 plugin (144-byte table) still
//! loads on a 3.1 host, and a plugin whose manifest lists a transform must fill all three.

use std::ffi::c_void;
use std::fmt;

/// Major version of the ABI: a plugin built for another major is refused.
pub const ABI_MAJOR: u32 = 3;
/// Minor version of the ABI: a plugin built for a newer minor than the host's is refused.
pub const ABI_MINOR: u32 = 1;
/// The ABI this SDK speaks.
pub const ABI_VERSION: AbiVersion = AbiVersion {
    major: ABI_MAJOR,
    minor: ABI_MINOR,
};

/// `extern "C" fn sluice_abi_version() -> AbiVersion`: pure, called first.
pub const SYMBOL_ABI_VERSION: &str = "sluice_abi_version";
/// `extern "C" fn sluice_plugin_manifest(out: *mut Buffer) -> Status`: the manifest as JSON.
pub const SYMBOL_MANIFEST: &str = "sluice_plugin_manifest";
/// `unsafe extern "C" fn sluice_plugin_init(host: *const HostApi, out: *mut *const PluginApi)
/// -> Status`: exchanges the function tables; called once per process.
pub const SYMBOL_INIT: &str = "sluice_plugin_init";

/// An ABI version, `major.minor`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbiVersion {
    pub major: u32,
    pub minor: u32,
}

impl fmt::Display for AbiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

pub type AbiVersionFn = unsafe extern "C" fn() -> AbiVersion;
pub type ManifestFn = unsafe extern "C" fn(out: *mut Buffer) -> Status;
pub type InitFn = unsafe extern "C" fn(host: *const HostApi, out: *mut *const PluginApi) -> Status;

/// Bytes borrowed for the duration of one call.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Slice {
    pub ptr: *const u8,
    pub len: usize,
}

impl Slice {
    pub fn new(bytes: &[u8]) -> Self {
        Slice {
            ptr: bytes.as_ptr(),
            len: bytes.len(),
        }
    }

    /// # Safety
    /// `ptr` must point to `len` readable bytes that stay valid for `'a` (or be null with
    /// `len == 0`).
    pub unsafe fn as_bytes<'a>(self) -> &'a [u8] {
        if self.ptr.is_null() || self.len == 0 {
            &[]
        } else {
            std::slice::from_raw_parts(self.ptr, self.len)
        }
    }
}

/// One record of a [`LentBatch`]: pointers into the host's own record, valid for as long as
/// the batch is lent. `flags` holds only [`LentRecord::KEY`] and [`LentRecord::TIMESTAMP`];
/// a plugin refuses a batch with any other bit.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct LentRecord {
    pub value: Slice,
    /// Meaningful when `flags` has [`LentRecord::KEY`].
    pub key: Slice,
    /// The origin's stream name, UTF-8.
    pub stream: Slice,
    pub headers: *const LentHeader,
    pub header_count: usize,
    /// Meaningful when `flags` has [`LentRecord::TIMESTAMP`].
    pub timestamp: i64,
    pub offset: i64,
    pub partition: i32,
    pub flags: u32,
}

impl LentRecord {
    /// The record has a key.
    pub const KEY: u32 = 1;
    /// The record has a timestamp.
    pub const TIMESTAMP: u32 = 2;
}

/// A record header of a [`LentRecord`].
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct LentHeader {
    /// The header name, UTF-8.
    pub key: Slice,
    /// Meaningful when `has_value` is not 0 (Kafka headers may have no value at all).
    pub value: Slice,
    pub has_value: u32,
}

/// A sink batch lent to the plugin for one call or operation (see the ownership rules).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct LentBatch {
    pub records: *const LentRecord,
    pub len: usize,
}

// SAFETY: plain descriptors of immutable bytes; the ownership rules say when they may be read,
// from whichever thread runs the operation.
unsafe impl Send for LentRecord {}
unsafe impl Sync for LentRecord {}
unsafe impl Send for LentHeader {}
unsafe impl Sync for LentHeader {}
unsafe impl Send for LentBatch {}
unsafe impl Sync for LentBatch {}

/// Frees a buffer on the side that allocated it.
pub type ReleaseFn = unsafe extern "C" fn(owner: *mut c_void);

/// Bytes owned by the receiver, who frees them by calling `release(owner)` once.
///
/// An empty buffer has a null `ptr`, `len == 0` and no `release`.
#[repr(C)]
#[derive(Debug)]
pub struct Buffer {
    pub ptr: *const u8,
    pub len: usize,
    pub release: Option<ReleaseFn>,
    pub owner: *mut c_void,
}

impl Buffer {
    pub const EMPTY: Buffer = Buffer {
        ptr: std::ptr::null(),
        len: 0,
        release: None,
        owner: std::ptr::null_mut(),
    };

    /// Hands a vector over; the receiver's `release` gives it back to this side's allocator.
    pub fn from_vec(bytes: Vec<u8>) -> Buffer {
        if bytes.is_empty() {
            return Buffer::EMPTY;
        }
        let boxed = Box::new(bytes);
        Buffer {
            ptr: boxed.as_ptr(),
            len: boxed.len(),
            release: Some(release_vec),
            owner: Box::into_raw(boxed).cast(),
        }
    }

    /// Bytes that live as long as the library (the manifest): nothing to free.
    pub fn from_static(bytes: &'static [u8]) -> Buffer {
        Buffer {
            ptr: bytes.as_ptr(),
            len: bytes.len(),
            release: None,
            owner: std::ptr::null_mut(),
        }
    }

    /// Frees the buffer now. Also what [`ForeignBuffer`](super::ForeignBuffer) does on drop.
    ///
    /// # Safety
    /// Call at most once per buffer, and only on a buffer this side received.
    pub unsafe fn release(self) {
        if let Some(release) = self.release {
            release(self.owner);
        }
    }
}

unsafe extern "C" fn release_vec(owner: *mut c_void) {
    // SAFETY: `owner` came from `Box::into_raw` in `Buffer::from_vec` on this side.
    drop(unsafe { Box::from_raw(owner.cast::<Vec<u8>>()) });
}

/// Result codes of every call.
pub mod code {
    /// Done; an out-parameter holds the result.
    pub const OK: i32 = 0;
    /// `op_poll` only: the operation is still running; the waker will be called.
    pub const PENDING: i32 = 1;
    /// The system behind the connector is unreachable or overloaded; retry with backoff.
    pub const UNAVAILABLE: i32 = 2;
    /// Credentials missing or refused.
    pub const UNAUTHORIZED: i32 = 3;
    /// The batch was too large for the destination; the host splits it.
    pub const TOO_LARGE: i32 = 4;
    /// A failure retrying cannot fix.
    pub const FATAL: i32 = 5;
    /// The configuration cannot be used; `path` names the key.
    pub const CONFIG: i32 = 6;
    /// The connector panicked; `message` holds the panic message and location.
    pub const PANIC: i32 = 7;
    /// The call was invalid: unknown handle or type, malformed buffer, wrong state.
    pub const INVALID: i32 = 8;
}

/// `retry_after_ms` when the plugin has no advice.
pub const NO_RETRY_AFTER: u64 = u64::MAX;

/// What a call returns: a [`code`], plus an owned message (UTF-8) for anything but `OK`.
#[repr(C)]
#[derive(Debug)]
pub struct Status {
    pub code: i32,
    /// For `UNAVAILABLE`: how long the destination asked to wait, or [`NO_RETRY_AFTER`].
    pub retry_after_ms: u64,
    pub message: Buffer,
    /// For `CONFIG`: the dotted path of the offending key, or empty.
    pub path: Buffer,
}

impl Status {
    pub const OK: Status = Status {
        code: code::OK,
        retry_after_ms: NO_RETRY_AFTER,
        message: Buffer::EMPTY,
        path: Buffer::EMPTY,
    };
    pub const PENDING: Status = Status {
        code: code::PENDING,
        retry_after_ms: NO_RETRY_AFTER,
        message: Buffer::EMPTY,
        path: Buffer::EMPTY,
    };

    /// A status with a message allocated on this side.
    pub fn error(code: i32, message: impl Into<String>) -> Status {
        Status {
            code,
            retry_after_ms: NO_RETRY_AFTER,
            message: Buffer::from_vec(message.into().into_bytes()),
            path: Buffer::EMPTY,
        }
    }
}

/// Wakes the host task waiting for an operation.
#[repr(C)]
#[derive(Debug)]
pub struct HostWaker {
    pub ctx: *const c_void,
    pub wake: unsafe extern "C" fn(ctx: *const c_void),
    pub release: unsafe extern "C" fn(ctx: *const c_void),
}

/// Log levels of [`HostApi::log`] and [`HostApi::max_log_level`].
pub mod level {
    pub const OFF: u32 = 0;
    pub const ERROR: u32 = 1;
    pub const WARN: u32 = 2;
    pub const INFO: u32 = 3;
    pub const DEBUG: u32 = 4;
    pub const TRACE: u32 = 5;
}

/// What the host offers the plugin; passed to [`SYMBOL_INIT`].
#[repr(C)]
#[derive(Debug)]
pub struct HostApi {
    /// `size_of::<HostApi>()` as the host compiled it.
    pub size: usize,
    /// The host's ABI version.
    pub abi: AbiVersion,
    /// Passed back with every callback.
    pub ctx: *const c_void,
    /// Routes one log event to the host's logger. `target` is the module path of the event.
    pub log: unsafe extern "C" fn(ctx: *const c_void, level: u32, target: Slice, message: Slice),
    /// Most verbose [`level`] the host will print; the plugin drops anything below it.
    pub max_log_level: u32,
    /// Worker threads for the plugin's runtime; 0 lets the plugin choose (1).
    pub worker_threads: u32,
}

/// What the plugin offers the host; returned by [`SYMBOL_INIT`].
///
/// Handles (`u64`) name sink and source instances and operations inside the plugin; an
/// unknown handle is answered with [`code::INVALID`], never a crash. Every call returns at
/// once: slow work (I/O) runs as an *operation* on the plugin's own runtime.
#[repr(C)]
#[derive(Debug)]
pub struct PluginApi {
    /// `size_of::<PluginApi>()` as the plugin compiled it.
    pub size: usize,

    /// Result of an operation. `PENDING` while it runs; anything else ends it: the handle is
    /// forgotten and `*out` holds its payload (possibly empty).
    pub op_poll: unsafe extern "C" fn(op: u64, out: *mut Buffer) -> Status,
    /// Stops waiting for an operation: the plugin aborts it and forgets the handle. Returns
    /// only once the operation's work is dropped, so nothing it was lent is read afterwards.
    pub op_cancel: unsafe extern "C" fn(op: u64),

    /// Builds a sink from `config` (JSON) and a build context (JSON: `pipeline`, `data_dir`).
    /// Does no I/O.
    pub sink_create: unsafe extern "C" fn(
        type_name: Slice,
        config: Slice,
        context: Slice,
        out_sink: *mut u64,
    ) -> Status,
    /// Operation: `Sink::open` with a context (JSON: `pipeline`).
    pub sink_open: unsafe extern "C" fn(
        sink: u64,
        context: Slice,
        waker: HostWaker,
        out_op: *mut u64,
    ) -> Status,
    /// Operation: `Sink::send` of a lent batch; the payload is encoded outcomes.
    pub sink_send: unsafe extern "C" fn(
        sink: u64,
        batch: LentBatch,
        waker: HostWaker,
        out_op: *mut u64,
    ) -> Status,
    /// Operation: `Sink::close`.
    pub sink_close: unsafe extern "C" fn(sink: u64, waker: HostWaker, out_op: *mut u64) -> Status,
    /// `Sink::default_concurrency`.
    pub sink_concurrency: unsafe extern "C" fn(sink: u64, out: *mut u32) -> Status,
    /// The sink's health: an empty buffer when healthy, else the reason.
    pub sink_health: unsafe extern "C" fn(sink: u64, out: *mut Buffer) -> Status,
    /// Drops the sink (after any running operation on it ends).
    pub sink_destroy: unsafe extern "C" fn(sink: u64) -> Status,

    /// Builds a source; like `sink_create`.
    pub source_create: unsafe extern "C" fn(
        type_name: Slice,
        config: Slice,
        context: Slice,
        out_source: *mut u64,
    ) -> Status,
    /// Operation: `Source::open` with a context (JSON: `pipeline`, `checkpoints`).
    pub source_open: unsafe extern "C" fn(
        source: u64,
        context: Slice,
        waker: HostWaker,
        out_op: *mut u64,
    ) -> Status,
    /// Operation: `Source::poll`; the payload is an encoded poll result.
    pub source_poll:
        unsafe extern "C" fn(source: u64, max: u64, waker: HostWaker, out_op: *mut u64) -> Status,
    /// Operation: `Source::commit` of encoded origins; the payload is encoded checkpoints.
    pub source_commit: unsafe extern "C" fn(
        source: u64,
        through: Buffer,
        waker: HostWaker,
        out_op: *mut u64,
    ) -> Status,
    /// Operation: `Source::close`.
    pub source_close:
        unsafe extern "C" fn(source: u64, waker: HostWaker, out_op: *mut u64) -> Status,
    /// `Source::lag` as last seen after an operation; `u64::MAX` when unknown.
    pub source_lag: unsafe extern "C" fn(source: u64, out: *mut u64) -> Status,
    /// The source's health, like `sink_health`.
    pub source_health: unsafe extern "C" fn(source: u64, out: *mut Buffer) -> Status,
    /// Drops the source.
    pub source_destroy: unsafe extern "C" fn(source: u64) -> Status,

    // ABI 3.1: transforms. Optional, as every appended field: a 3.0 table ends before them.
    /// Builds a transform; like `sink_create`. Does no I/O.
    pub transform_create: Option<
        unsafe extern "C" fn(
            type_name: Slice,
            config: Slice,
            context: Slice,
            out_transform: *mut u64,
        ) -> Status,
    >,
    /// `Transform::apply` on each record of a lent batch, in one call that returns when done
    /// (transforms do no I/O, so this is no operation): the batch is borrowed for the call
    /// only, and `*out` holds one encoded result per record
    /// ([`codec::encode_applied`](super::codec::encode_applied)).
    pub transform_apply:
        Option<unsafe extern "C" fn(transform: u64, batch: LentBatch, out: *mut Buffer) -> Status>,
    /// Drops the transform.
    pub transform_destroy: Option<unsafe extern "C" fn(transform: u64) -> Status>,
}

/// Size of the smallest plugin table a host accepts, the ABI 3.0 one. A literal: a minor
/// version that appends fields makes the table larger, not this.
pub const PLUGIN_API_MIN_SIZE: usize = 144;
/// Size of the smallest host table a plugin accepts, the ABI 3.0 one; a literal too.
pub const HOST_API_MIN_SIZE: usize = 40;
/// Size of the smallest plugin table that has the transform slots, the ABI 3.1 one; a literal.
pub const PLUGIN_API_TRANSFORM_MIN_SIZE: usize = 168;

/// The transform slots of [`PluginApi`] (ABI 3.1), by name and offset: a host checks each is
/// set when the manifest lists a transform.
pub const PLUGIN_API_TRANSFORM_SLOTS: [(&str, usize); 3] = [
    (
        "transform_create",
        std::mem::offset_of!(PluginApi, transform_create),
    ),
    (
        "transform_apply",
        std::mem::offset_of!(PluginApi, transform_apply),
    ),
    (
        "transform_destroy",
        std::mem::offset_of!(PluginApi, transform_destroy),
    ),
];

/// Every function pointer of the ABI 3.0 [`PluginApi`], by name and offset: a host checks
/// each is set.
pub const PLUGIN_API_SLOTS: [(&str, usize); 17] = [
    ("op_poll", std::mem::offset_of!(PluginApi, op_poll)),
    ("op_cancel", std::mem::offset_of!(PluginApi, op_cancel)),
    ("sink_create", std::mem::offset_of!(PluginApi, sink_create)),
    ("sink_open", std::mem::offset_of!(PluginApi, sink_open)),
    ("sink_send", std::mem::offset_of!(PluginApi, sink_send)),
    ("sink_close", std::mem::offset_of!(PluginApi, sink_close)),
    (
        "sink_concurrency",
        std::mem::offset_of!(PluginApi, sink_concurrency),
    ),
    ("sink_health", std::mem::offset_of!(PluginApi, sink_health)),
    (
        "sink_destroy",
        std::mem::offset_of!(PluginApi, sink_destroy),
    ),
    (
        "source_create",
        std::mem::offset_of!(PluginApi, source_create),
    ),
    ("source_open", std::mem::offset_of!(PluginApi, source_open)),
    ("source_poll", std::mem::offset_of!(PluginApi, source_poll)),
    (
        "source_commit",
        std::mem::offset_of!(PluginApi, source_commit),
    ),
    (
        "source_close",
        std::mem::offset_of!(PluginApi, source_close),
    ),
    ("source_lag", std::mem::offset_of!(PluginApi, source_lag)),
    (
        "source_health",
        std::mem::offset_of!(PluginApi, source_health),
    ),
    (
        "source_destroy",
        std::mem::offset_of!(PluginApi, source_destroy),
    ),
];

/// The layout every 64-bit build of either side agrees on, checked against literal numbers so
/// that an edit that moves a field fails to compile instead of misreading the other side.
#[cfg(target_pointer_width = "64")]
const _: () = {
    use std::mem::{offset_of, size_of};

    assert!(size_of::<AbiVersion>() == 8);
    assert!(offset_of!(AbiVersion, major) == 0);
    assert!(offset_of!(AbiVersion, minor) == 4);

    assert!(size_of::<Slice>() == 16);
    assert!(offset_of!(Slice, ptr) == 0);
    assert!(offset_of!(Slice, len) == 8);

    assert!(size_of::<LentRecord>() == 88);
    assert!(offset_of!(LentRecord, value) == 0);
    assert!(offset_of!(LentRecord, key) == 16);
    assert!(offset_of!(LentRecord, stream) == 32);
    assert!(offset_of!(LentRecord, headers) == 48);
    assert!(offset_of!(LentRecord, header_count) == 56);
    assert!(offset_of!(LentRecord, timestamp) == 64);
    assert!(offset_of!(LentRecord, offset) == 72);
    assert!(offset_of!(LentRecord, partition) == 80);
    assert!(offset_of!(LentRecord, flags) == 84);

    assert!(size_of::<LentHeader>() == 40);
    assert!(offset_of!(LentHeader, key) == 0);
    assert!(offset_of!(LentHeader, value) == 16);
    assert!(offset_of!(LentHeader, has_value) == 32);

    assert!(size_of::<LentBatch>() == 16);
    assert!(offset_of!(LentBatch, records) == 0);
    assert!(offset_of!(LentBatch, len) == 8);

    assert!(size_of::<Buffer>() == 32);
    assert!(offset_of!(Buffer, ptr) == 0);
    assert!(offset_of!(Buffer, len) == 8);
    assert!(offset_of!(Buffer, release) == 16);
    assert!(offset_of!(Buffer, owner) == 24);

    assert!(size_of::<Status>() == 80);
    assert!(offset_of!(Status, code) == 0);
    assert!(offset_of!(Status, retry_after_ms) == 8);
    assert!(offset_of!(Status, message) == 16);
    assert!(offset_of!(Status, path) == 48);

    assert!(size_of::<HostWaker>() == 24);
    assert!(offset_of!(HostWaker, ctx) == 0);
    assert!(offset_of!(HostWaker, wake) == 8);
    assert!(offset_of!(HostWaker, release) == 16);

    assert!(size_of::<HostApi>() == 40);
    assert!(offset_of!(HostApi, size) == 0);
    assert!(offset_of!(HostApi, abi) == 8);
    assert!(offset_of!(HostApi, ctx) == 16);
    assert!(offset_of!(HostApi, log) == 24);
    assert!(offset_of!(HostApi, max_log_level) == 32);
    assert!(offset_of!(HostApi, worker_threads) == 36);

    assert!(size_of::<PluginApi>() == 168);
    assert!(offset_of!(PluginApi, size) == 0);
    assert!(offset_of!(PluginApi, op_poll) == 8);
    assert!(offset_of!(PluginApi, op_cancel) == 16);
    assert!(offset_of!(PluginApi, sink_create) == 24);
    assert!(offset_of!(PluginApi, sink_open) == 32);
    assert!(offset_of!(PluginApi, sink_send) == 40);
    assert!(offset_of!(PluginApi, sink_close) == 48);
    assert!(offset_of!(PluginApi, sink_concurrency) == 56);
    assert!(offset_of!(PluginApi, sink_health) == 64);
    assert!(offset_of!(PluginApi, sink_destroy) == 72);
    assert!(offset_of!(PluginApi, source_create) == 80);
    assert!(offset_of!(PluginApi, source_open) == 88);
    assert!(offset_of!(PluginApi, source_poll) == 96);
    assert!(offset_of!(PluginApi, source_commit) == 104);
    assert!(offset_of!(PluginApi, source_close) == 112);
    assert!(offset_of!(PluginApi, source_lag) == 120);
    assert!(offset_of!(PluginApi, source_health) == 128);
    assert!(offset_of!(PluginApi, source_destroy) == 136);
    assert!(offset_of!(PluginApi, transform_create) == 144);
    assert!(offset_of!(PluginApi, transform_apply) == 152);
    assert!(offset_of!(PluginApi, transform_destroy) == 160);

    // Every function pointer of the table is listed, in order, right after `size`.
    let mut i = 0;
    while i < PLUGIN_API_SLOTS.len() {
        assert!(PLUGIN_API_SLOTS[i].1 == 8 + 8 * i);
        i += 1;
    }
    // The 3.1 slots follow the 3.0 table, in order, and end the 3.1 table.
    let mut i = 0;
    while i < PLUGIN_API_TRANSFORM_SLOTS.len() {
        assert!(PLUGIN_API_TRANSFORM_SLOTS[i].1 == PLUGIN_API_MIN_SIZE + 8 * i);
        i += 1;
    }
    assert!(PLUGIN_API_TRANSFORM_MIN_SIZE == PLUGIN_API_MIN_SIZE + 8 * 3);
    assert!(PLUGIN_API_TRANSFORM_MIN_SIZE <= size_of::<PluginApi>());
    // `None` of a function pointer is a null pointer, so zeroed slots read as `None`.
    assert!(size_of::<Option<unsafe extern "C" fn(u64) -> Status>>() == 8);
    assert!(PLUGIN_API_MIN_SIZE <= size_of::<PluginApi>());
    assert!(HOST_API_MIN_SIZE <= size_of::<HostApi>());
};
