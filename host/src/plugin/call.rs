//! Calling into a plugin: statuses to errors, and operations as futures.
//!
//! An operation is submitted with a waker whose context is an `Arc<WakeSlot>`; the plugin
//! calls it from its own runtime thread when the operation ends, and the future then collects
//! the result with `op_poll`. No host thread ever waits on the plugin, and a dropped future
//! cancels its operation.

use std::ffi::c_void;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::task::AtomicWaker;
use sluice_sdk::plugin::abi::{code, Buffer, HostWaker, PluginApi, Slice, Status, NO_RETRY_AFTER};
use sluice_sdk::plugin::wire::BuildContextWire;
use sluice_sdk::plugin::ForeignBuffer;
use sluice_sdk::{BuildContext, ConfigError, SinkError, SourceError};

use super::LoadedPlugin;

/// A non-OK status, read out of the plugin's buffers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub code: i32,
    pub message: String,
    pub retry_after: Option<Duration>,
    pub path: Option<String>,
}

/// Takes ownership of a status: `Ok` for `OK`, else its contents (buffers are released).
pub(crate) fn take_status(status: Status) -> Result<(), Failure> {
    // SAFETY: a status returned by the plugin is owned by the host, buffers included.
    let (message, path) = unsafe {
        (
            ForeignBuffer::new(status.message),
            ForeignBuffer::new(status.path),
        )
    };
    if status.code == code::OK {
        return Ok(());
    }
    Err(Failure {
        code: status.code,
        message: message.to_string_lossy(),
        retry_after: (status.retry_after_ms != NO_RETRY_AFTER)
            .then(|| Duration::from_millis(status.retry_after_ms)),
        path: (!path.is_empty()).then(|| path.to_string_lossy()),
    })
}

impl Failure {
    /// A failure of the ABI itself (never a connector's answer).
    pub fn protocol(message: impl Into<String>) -> Self {
        Failure {
            code: code::INVALID,
            message: message.into(),
            retry_after: None,
            path: None,
        }
    }

    /// Text for failures that have no counterpart in the connector error types.
    fn describe(&self, plugin: &LoadedPlugin) -> String {
        let name = &plugin.manifest.name;
        match self.code {
            code::PANIC => format!("plugin {name} {}", self.message),
            code::CONFIG => match &self.path {
                Some(p) => format!("plugin {name}: {p}: {}", self.message),
                None => format!("plugin {name}: {}", self.message),
            },
            code::INVALID => format!("plugin {name}: invalid call: {}", self.message),
            other => format!("plugin {name}: status {other}: {}", self.message),
        }
    }

    /// The sink error the same answer from a built-in sink would be. A panic is `Fatal`: the
    /// pipeline restarts the instance.
    pub fn into_sink_error(self, plugin: &LoadedPlugin) -> SinkError {
        match self.code {
            code::UNAVAILABLE => SinkError::Unavailable {
                message: self.message,
                retry_after: self.retry_after,
            },
            code::UNAUTHORIZED => SinkError::Unauthorized(self.message),
            code::TOO_LARGE => SinkError::TooLarge(self.message),
            code::FATAL => SinkError::Fatal(self.message),
            _ => SinkError::Fatal(self.describe(plugin)),
        }
    }

    /// The source error the same answer from a built-in source would be.
    pub fn into_source_error(self, plugin: &LoadedPlugin) -> SourceError {
        match self.code {
            code::UNAVAILABLE => SourceError::Unavailable(self.message),
            code::UNAUTHORIZED => SourceError::Unauthorized(self.message),
            code::FATAL => SourceError::Fatal(self.message),
            _ => SourceError::Fatal(self.describe(plugin)),
        }
    }

    /// A factory's error: configuration errors keep their key path.
    pub fn into_config_error(self, plugin: &LoadedPlugin) -> ConfigError {
        match (self.code, self.path) {
            (code::CONFIG, Some(path)) => ConfigError::at(path, self.message),
            (code::CONFIG, None) => ConfigError::new(self.message),
            (c, path) => ConfigError::new(
                Failure {
                    code: c,
                    path,
                    ..self
                }
                .describe(plugin),
            ),
        }
    }
}

/// `sink_create` or `source_create`: both take the type name, the configuration and the
/// build context as JSON and write the new instance's handle.
pub(crate) type CreateFn = unsafe extern "C" fn(Slice, Slice, Slice, *mut u64) -> Status;

/// Builds a connector instance inside the plugin (no I/O) and returns its handle.
pub(crate) fn create_instance(
    plugin: &LoadedPlugin,
    create: CreateFn,
    type_name: &str,
    config: &serde_json::Value,
    ctx: &BuildContext,
) -> Result<u64, ConfigError> {
    let config = serde_json::to_vec(config).map_err(|e| ConfigError::new(e.to_string()))?;
    let context = serde_json::to_vec(&BuildContextWire {
        pipeline: ctx.pipeline.to_string(),
        data_dir: ctx.data_dir.clone(),
    })
    .map_err(|e| ConfigError::new(e.to_string()))?;
    let mut handle = 0;
    // SAFETY: the slices outlive the call and `handle` is writable.
    let status = unsafe {
        create(
            Slice::new(type_name.as_bytes()),
            Slice::new(&config),
            Slice::new(&context),
            &mut handle,
        )
    };
    take_status(status).map_err(|f| f.into_config_error(plugin))?;
    Ok(handle)
}

struct WakeSlot(AtomicWaker);

unsafe extern "C" fn wake_slot(ctx: *const c_void) {
    // SAFETY: `ctx` is an `Arc<WakeSlot>` kept alive until `release_slot`.
    let slot = unsafe { &*ctx.cast::<WakeSlot>() };
    let _ = catch_unwind(AssertUnwindSafe(|| slot.0.wake()));
}

unsafe extern "C" fn release_slot(ctx: *const c_void) {
    // SAFETY: the reference taken by `Arc::into_raw` in `start`, released once.
    drop(unsafe { Arc::from_raw(ctx.cast::<WakeSlot>()) });
}

/// A running plugin operation; resolves to its payload.
pub(crate) struct Op {
    api: &'static PluginApi,
    id: u64,
    slot: Arc<WakeSlot>,
    done: bool,
}

impl Op {
    /// Submits an operation. `submit` gets the waker to hand over and the out-parameter for
    /// the operation handle.
    pub fn start(
        api: &'static PluginApi,
        submit: impl FnOnce(HostWaker, *mut u64) -> Status,
    ) -> Result<Op, Failure> {
        let slot = Arc::new(WakeSlot(AtomicWaker::new()));
        let waker = HostWaker {
            ctx: Arc::into_raw(slot.clone()).cast(),
            wake: wake_slot,
            release: release_slot,
        };
        let mut id = 0;
        take_status(submit(waker, &mut id))?;
        Ok(Op {
            api,
            id,
            slot,
            done: false,
        })
    }
}

impl Future for Op {
    type Output = Result<ForeignBuffer, Failure>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(Err(Failure::protocol("operation polled after completion")));
        }
        // Register before asking, so a completion in between is not missed.
        this.slot.0.register(cx.waker());
        let mut out = Buffer::EMPTY;
        // SAFETY: `out` is writable; `id` names a live operation.
        let status = unsafe { (this.api.op_poll)(this.id, &mut out) };
        if status.code == code::PENDING {
            let _ = take_status(status);
            return Poll::Pending;
        }
        this.done = true;
        // SAFETY: written by the plugin, owned by us now.
        let payload = unsafe { ForeignBuffer::new(out) };
        Poll::Ready(take_status(status).map(|()| payload))
    }
}

impl Drop for Op {
    fn drop(&mut self) {
        if !self.done {
            // SAFETY: `id` names an operation the plugin has not forgotten yet.
            unsafe { (self.api.op_cancel)(self.id) };
        }
    }
}
