//! Source exports: instances behind handles, poll results encoded into one plugin buffer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

use parking_lot::Mutex;

use super::ops::{batch_buffer, guard, next_handle, runtime, submit, Failure, Payload, WakerGuard};
use super::sink::registry_failure;
use super::{json_arg, registry, str_arg, write_health};
use crate::plugin::abi::{Buffer, HostWaker, Slice, Status};
use crate::plugin::codec;
use crate::plugin::wire::{BuildContextWire, SourceOpenWire};
use crate::plugin::ForeignBuffer;
use crate::{BuildContext, Health, Source, SourceContext};

/// `lag` when the source cannot tell.
const LAG_UNKNOWN: u64 = u64::MAX;

struct SourceCell {
    source: tokio::sync::Mutex<Box<dyn Source>>,
    health: Health,
    /// `Source::lag` as of the end of the last operation: `lag` is synchronous and must not
    /// wait for a running poll.
    lag: AtomicU64,
}

impl SourceCell {
    fn note_lag(&self, source: &dyn Source) {
        self.lag
            .store(source.lag().unwrap_or(LAG_UNKNOWN), Ordering::Relaxed);
    }
}

static SOURCES: LazyLock<Mutex<HashMap<u64, Arc<SourceCell>>>> = LazyLock::new(Default::default);

fn cell(handle: u64) -> Result<Arc<SourceCell>, Failure> {
    SOURCES
        .lock()
        .get(&handle)
        .cloned()
        .ok_or_else(|| Failure::invalid(format!("unknown source {handle}")))
}

pub(super) unsafe extern "C" fn create(
    type_name: Slice,
    config: Slice,
    context: Slice,
    out_source: *mut u64,
) -> Status {
    guard(|| {
        if out_source.is_null() {
            return Err(Failure::invalid("null out_source"));
        }
        let type_name = str_arg(type_name, "type name")?;
        let config: serde_json::Value = json_arg(config, "source configuration")?;
        let ctx: BuildContextWire = json_arg(context, "build context")?;
        let ctx = BuildContext {
            pipeline: ctx.pipeline.into(),
            data_dir: ctx.data_dir,
        };
        let _rt = runtime()?.enter();
        let source = registry()?
            .build_source(type_name, config, &ctx)
            .map_err(registry_failure)?;
        let handle = next_handle();
        SOURCES.lock().insert(
            handle,
            Arc::new(SourceCell {
                source: tokio::sync::Mutex::new(source),
                health: Health::new(),
                lag: AtomicU64::new(LAG_UNKNOWN),
            }),
        );
        // SAFETY: checked non-null.
        unsafe { out_source.write(handle) };
        Ok(Status::OK)
    })
}

pub(super) unsafe extern "C" fn open(
    handle: u64,
    context: Slice,
    waker: HostWaker,
    out_op: *mut u64,
) -> Status {
    // SAFETY: handed over by this call.
    let waker = unsafe { WakerGuard::new(waker) };
    guard(move || {
        let cell = cell(handle)?;
        let ctx: SourceOpenWire = json_arg(context, "open context")?;
        let ctx = SourceContext {
            pipeline: ctx.pipeline.into(),
            checkpoints: ctx.checkpoints,
            health: cell.health.clone(),
        };
        // SAFETY: the host passes a writable `out_op`.
        unsafe {
            submit(waker, out_op, async move {
                let mut source = cell.source.lock().await;
                source.open(ctx).await?;
                cell.note_lag(source.as_ref());
                Ok(Vec::new())
            })
        }
    })
}

pub(super) unsafe extern "C" fn poll(
    handle: u64,
    max: u64,
    waker: HostWaker,
    out_op: *mut u64,
) -> Status {
    // SAFETY: handed over by this call.
    let waker = unsafe { WakerGuard::new(waker) };
    guard(move || {
        let cell = cell(handle)?;
        let max = usize::try_from(max).unwrap_or(usize::MAX);
        // SAFETY: the host passes a writable `out_op`.
        unsafe {
            submit(waker, out_op, async move {
                let mut source = cell.source.lock().await;
                let polled = source.poll(max).await?;
                cell.note_lag(source.as_ref());
                let mut out = batch_buffer();
                codec::encode_polled_into(&mut out, &polled);
                Ok(Payload::Batch(out))
            })
        }
    })
}

pub(super) unsafe extern "C" fn commit(
    handle: u64,
    through: Buffer,
    waker: HostWaker,
    out_op: *mut u64,
) -> Status {
    // SAFETY: both handed over by this call; released on every path by their guards.
    let (through, waker) = unsafe { (ForeignBuffer::new(through), WakerGuard::new(waker)) };
    guard(move || {
        let cell = cell(handle)?;
        let origins = codec::decode_origins(through.as_slice())?;
        drop(through);
        // SAFETY: the host passes a writable `out_op`.
        unsafe {
            submit(waker, out_op, async move {
                let mut source = cell.source.lock().await;
                let checkpoints = source.commit(&origins).await?;
                cell.note_lag(source.as_ref());
                Ok(codec::encode_checkpoints(&checkpoints))
            })
        }
    })
}

pub(super) unsafe extern "C" fn close(handle: u64, waker: HostWaker, out_op: *mut u64) -> Status {
    // SAFETY: handed over by this call.
    let waker = unsafe { WakerGuard::new(waker) };
    guard(move || {
        let cell = cell(handle)?;
        // SAFETY: the host passes a writable `out_op`.
        unsafe {
            submit(waker, out_op, async move {
                cell.source.lock().await.close().await?;
                Ok(Vec::new())
            })
        }
    })
}

pub(super) unsafe extern "C" fn lag(handle: u64, out: *mut u64) -> Status {
    guard(|| {
        if out.is_null() {
            return Err(Failure::invalid("null out"));
        }
        let lag = cell(handle)?.lag.load(Ordering::Relaxed);
        // SAFETY: checked non-null.
        unsafe { out.write(lag) };
        Ok(Status::OK)
    })
}

pub(super) unsafe extern "C" fn health(handle: u64, out: *mut Buffer) -> Status {
    // SAFETY: the host passes a writable `out`.
    guard(|| unsafe { write_health(&cell(handle)?.health, out) })
}

pub(super) unsafe extern "C" fn destroy(handle: u64) -> Status {
    guard(|| {
        let cell = SOURCES
            .lock()
            .remove(&handle)
            .ok_or_else(|| Failure::invalid(format!("unknown source {handle}")))?;
        let _rt = runtime()?.enter();
        drop(cell);
        Ok(Status::OK)
    })
}
