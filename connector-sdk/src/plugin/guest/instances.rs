//! What every source, sink and transform export shares: instances behind `u64` handles,
//! building one from the host's JSON arguments, starting an operation on one, writing
//! out-parameters.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, LazyLock};

use parking_lot::Mutex;

use super::ops::{guard, next_handle, runtime, submit, Failure, Payload, WakerGuard};
use super::{json_arg, registry, str_arg, write_health};
use crate::plugin::abi::{Buffer, HostWaker, Slice, Status};
use crate::plugin::wire::BuildContextWire;
use crate::{BuildContext, Health, Registry, RegistryError};

/// An instance's health, as the `*_health` exports report it.
pub(super) trait HasHealth {
    fn health(&self) -> &Health;
}

/// The live instances of one connector kind.
pub(super) struct Instances<T> {
    kind: &'static str,
    map: LazyLock<Mutex<HashMap<u64, Arc<T>>>>,
}

impl<T> Instances<T> {
    pub const fn new(kind: &'static str) -> Self {
        Instances {
            kind,
            map: LazyLock::new(Default::default),
        }
    }

    pub fn get(&self, handle: u64) -> Result<Arc<T>, Failure> {
        self.map
            .lock()
            .get(&handle)
            .cloned()
            .ok_or_else(|| Failure::invalid(format!("unknown {} {handle}", self.kind)))
    }

    /// Body of `*_create`: builds an instance from the type name, the configuration and the
    /// build context (JSON) and writes its handle to `out`.
    ///
    /// # Safety
    /// The slices must be valid for the call and `out` valid for a write or null.
    pub unsafe fn create(
        &self,
        type_name: Slice,
        config: Slice,
        context: Slice,
        out: *mut u64,
        build: impl FnOnce(&Registry, &str, serde_json::Value, &BuildContext) -> Result<T, Failure>,
    ) -> Status {
        guard(|| {
            if out.is_null() {
                return Err(Failure::invalid(format!("null out_{}", self.kind)));
            }
            let type_name = str_arg(type_name, "type name")?;
            let config: serde_json::Value =
                json_arg(config, &format!("{} configuration", self.kind))?;
            let ctx: BuildContextWire = json_arg(context, "build context")?;
            let ctx = BuildContext {
                pipeline: ctx.pipeline.into(),
                data_dir: ctx.data_dir,
            };
            // Connectors may create runtime resources (timers, clients) as they are built.
            let _rt = runtime()?.enter();
            let instance = build(registry()?, type_name, config, &ctx)?;
            let handle = next_handle();
            self.map.lock().insert(handle, Arc::new(instance));
            // SAFETY: checked non-null.
            unsafe { out.write(handle) };
            Ok(Status::OK)
        })
    }

    /// Body of an export that starts an operation on instance `handle`: `start` checks the
    /// arguments and returns the operation's future.
    ///
    /// # Safety
    /// `waker` must be handed over by the current call and `out_op` be valid for a write.
    pub unsafe fn operation<F, P>(
        &self,
        handle: u64,
        waker: HostWaker,
        out_op: *mut u64,
        start: impl FnOnce(Arc<T>) -> Result<F, Failure>,
    ) -> Status
    where
        F: Future<Output = Result<P, Failure>> + Send + 'static,
        P: Into<Payload>,
    {
        // SAFETY: handed over by this call; released on every path by the guard.
        let waker = unsafe { WakerGuard::new(waker) };
        guard(move || {
            let fut = start(self.get(handle)?)?;
            // SAFETY: the caller guarantees `out_op`.
            unsafe { submit(waker, out_op, fut) }
        })
    }

    /// Body of `*_destroy`.
    pub fn destroy(&self, handle: u64) -> Status {
        guard(|| {
            let instance = self
                .map
                .lock()
                .remove(&handle)
                .ok_or_else(|| Failure::invalid(format!("unknown {} {handle}", self.kind)))?;
            // Connector resources (sockets, timers) belong to the plugin runtime: drop them
            // in it.
            let _rt = runtime()?.enter();
            drop(instance);
            Ok(Status::OK)
        })
    }
}

impl<T: HasHealth> Instances<T> {
    /// Body of `*_health`.
    ///
    /// # Safety
    /// `out` must be valid for a write or null.
    pub unsafe fn health(&self, handle: u64, out: *mut Buffer) -> Status {
        // SAFETY: the caller guarantees `out`.
        guard(|| unsafe { write_health(self.get(handle)?.health(), out) })
    }
}

/// Body of an export that reads one number off an instance (`sink_concurrency`,
/// `source_lag`).
///
/// # Safety
/// `out` must be valid for a write or null.
pub(super) unsafe fn write_out<V>(
    out: *mut V,
    value: impl FnOnce() -> Result<V, Failure>,
) -> Status {
    guard(|| {
        if out.is_null() {
            return Err(Failure::invalid("null out"));
        }
        let v = value()?;
        // SAFETY: checked non-null; the caller guarantees validity.
        unsafe { out.write(v) };
        Ok(Status::OK)
    })
}

pub(super) fn registry_failure(e: RegistryError) -> Failure {
    match e {
        RegistryError::Config(c) => c.into(),
        other => Failure::invalid(other.to_string()),
    }
}
