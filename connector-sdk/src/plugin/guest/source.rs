//! Source exports: instances behind handles, poll results written into one plugin buffer
//! as the source produces them.

use std::sync::atomic::{AtomicU64, Ordering};

use super::instances::{registry_failure, write_out, HasHealth, Instances};
use super::json_arg;
use super::ops::{batch_buffer, Payload};
use crate::plugin::abi::{Buffer, HostWaker, Slice, Status};
use crate::plugin::codec;
use crate::plugin::wire::SourceOpenWire;
use crate::plugin::ForeignBuffer;
use crate::{Health, Source, SourceContext};

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

impl HasHealth for SourceCell {
    fn health(&self) -> &Health {
        &self.health
    }
}

static SOURCES: Instances<SourceCell> = Instances::new("source");

pub(super) unsafe extern "C" fn create(
    type_name: Slice,
    config: Slice,
    context: Slice,
    out_source: *mut u64,
) -> Status {
    // SAFETY: the host passes valid slices and a writable `out_source`.
    unsafe {
        SOURCES.create(
            type_name,
            config,
            context,
            out_source,
            |registry, ty, cfg, ctx| {
                let source = registry
                    .build_source(ty, cfg, ctx)
                    .map_err(registry_failure)?;
                Ok(SourceCell {
                    source: tokio::sync::Mutex::new(source),
                    health: Health::new(),
                    lag: AtomicU64::new(LAG_UNKNOWN),
                })
            },
        )
    }
}

pub(super) unsafe extern "C" fn open(
    handle: u64,
    context: Slice,
    waker: HostWaker,
    out_op: *mut u64,
) -> Status {
    // SAFETY: the waker is handed over by this call; `out_op` is writable.
    unsafe {
        SOURCES.operation(handle, waker, out_op, |cell| {
            let ctx: SourceOpenWire = json_arg(context, "open context")?;
            let ctx = SourceContext {
                pipeline: ctx.pipeline.into(),
                checkpoints: ctx.checkpoints,
                health: cell.health.clone(),
            };
            Ok(async move {
                let mut source = cell.source.lock().await;
                source.open(ctx).await?;
                cell.note_lag(source.as_ref());
                Ok(Vec::new())
            })
        })
    }
}

pub(super) unsafe extern "C" fn poll(
    handle: u64,
    max: u64,
    waker: HostWaker,
    out_op: *mut u64,
) -> Status {
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    // SAFETY: the waker is handed over by this call; `out_op` is writable.
    unsafe {
        SOURCES.operation(handle, waker, out_op, |cell| {
            Ok(async move {
                let mut source = cell.source.lock().await;
                let mut out = batch_buffer();
                let mut writer = codec::poll_writer(&mut out);
                let end = source.poll_into(max, &mut writer).await?;
                codec::finish_poll(writer, end)?;
                cell.note_lag(source.as_ref());
                Ok(Payload::Batch(out))
            })
        })
    }
}

pub(super) unsafe extern "C" fn commit(
    handle: u64,
    through: Buffer,
    waker: HostWaker,
    out_op: *mut u64,
) -> Status {
    // SAFETY: handed over by this call; released on every path when dropped.
    let through = unsafe { ForeignBuffer::new(through) };
    // SAFETY: the waker is handed over by this call; `out_op` is writable.
    unsafe {
        SOURCES.operation(handle, waker, out_op, |cell| {
            let origins = codec::decode_origins(through.as_slice())?;
            drop(through);
            Ok(async move {
                let mut source = cell.source.lock().await;
                let checkpoints = source.commit(&origins).await?;
                cell.note_lag(source.as_ref());
                Ok(codec::encode_checkpoints(&checkpoints))
            })
        })
    }
}

pub(super) unsafe extern "C" fn close(handle: u64, waker: HostWaker, out_op: *mut u64) -> Status {
    // SAFETY: the waker is handed over by this call; `out_op` is writable.
    unsafe {
        SOURCES.operation(handle, waker, out_op, |cell| {
            Ok(async move {
                cell.source.lock().await.close().await?;
                Ok(Vec::new())
            })
        })
    }
}

pub(super) unsafe extern "C" fn lag(handle: u64, out: *mut u64) -> Status {
    // SAFETY: the host passes a writable `out`.
    unsafe { write_out(out, || Ok(SOURCES.get(handle)?.lag.load(Ordering::Relaxed))) }
}

pub(super) unsafe extern "C" fn health(handle: u64, out: *mut Buffer) -> Status {
    // SAFETY: the host passes a writable `out`.
    unsafe { SOURCES.health(handle, out) }
}

pub(super) unsafe extern "C" fn destroy(handle: u64) -> Status {
    SOURCES.destroy(handle)
}
