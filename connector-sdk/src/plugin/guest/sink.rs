//! Sink exports: instances behind handles, and `send` of a batch the host lends.

use super::instances::{registry_failure, write_out, HasHealth, Instances};
use super::json_arg;
use super::ops::Failure;
use crate::plugin::abi::{code, Buffer, HostWaker, LentBatch, Slice, Status};
use crate::plugin::codec;
use crate::plugin::lend::{LendError, LentViews};
use crate::plugin::wire::SinkOpenWire;
use crate::{Health, Sink, SinkContext};

struct SinkCell {
    /// `open` needs `&mut`; `send` (possibly several at once) and `close` share.
    sink: tokio::sync::RwLock<Box<dyn Sink>>,
    health: Health,
    concurrency: u32,
}

impl From<LendError> for Failure {
    fn from(e: LendError) -> Self {
        Failure::invalid(e.to_string())
    }
}

impl SinkCell {
    /// Sends a lent batch and encodes the outcomes.
    ///
    /// # Safety
    /// `batch` must stay valid until the returned future is dropped (the ABI's lending rule;
    /// the operation machinery drops the future before the host may free the batch).
    async unsafe fn send(&self, batch: LentBatch) -> Result<Vec<u8>, Failure> {
        let mut views = LentViews::new();
        // SAFETY: the caller's contract; the records do not outlive this future.
        let records = unsafe { views.read(batch) }?;
        let sink = self.sink.read().await;
        let outcomes = sink.send(records).await?;
        drop(sink);
        if outcomes.len() != records.len() {
            return Err(Failure::new(
                code::FATAL,
                format!(
                    "the sink answered {} outcomes for {} records",
                    outcomes.len(),
                    records.len()
                ),
            ));
        }
        Ok(codec::encode_outcomes(&outcomes))
    }
}

impl HasHealth for SinkCell {
    fn health(&self) -> &Health {
        &self.health
    }
}

static SINKS: Instances<SinkCell> = Instances::new("sink");

pub(super) unsafe extern "C" fn create(
    type_name: Slice,
    config: Slice,
    context: Slice,
    out_sink: *mut u64,
) -> Status {
    // SAFETY: the host passes valid slices and a writable `out_sink`.
    unsafe {
        SINKS.create(
            type_name,
            config,
            context,
            out_sink,
            |registry, ty, cfg, ctx| {
                let sink = registry
                    .build_sink(ty, cfg, ctx)
                    .map_err(registry_failure)?;
                Ok(SinkCell {
                    concurrency: u32::try_from(sink.default_concurrency().max(1))
                        .unwrap_or(u32::MAX),
                    sink: tokio::sync::RwLock::new(sink),
                    health: Health::new(),
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
        SINKS.operation(handle, waker, out_op, |cell| {
            let ctx: SinkOpenWire = json_arg(context, "open context")?;
            let ctx = SinkContext {
                pipeline: ctx.pipeline.into(),
                health: cell.health.clone(),
            };
            Ok(async move {
                cell.sink.write().await.open(ctx).await?;
                Ok(Vec::new())
            })
        })
    }
}

pub(super) unsafe extern "C" fn send(
    handle: u64,
    batch: LentBatch,
    waker: HostWaker,
    out_op: *mut u64,
) -> Status {
    // SAFETY: the waker is handed over by this call; `out_op` is writable. The batch is lent
    // for the operation, whose future the operation machinery drops before the host may free
    // it.
    unsafe {
        SINKS.operation(handle, waker, out_op, |cell| {
            Ok(async move { cell.send(batch).await })
        })
    }
}

pub(super) unsafe extern "C" fn close(handle: u64, waker: HostWaker, out_op: *mut u64) -> Status {
    // SAFETY: the waker is handed over by this call; `out_op` is writable.
    unsafe {
        SINKS.operation(handle, waker, out_op, |cell| {
            Ok(async move {
                cell.sink.read().await.close().await?;
                Ok(Vec::new())
            })
        })
    }
}

pub(super) unsafe extern "C" fn concurrency(handle: u64, out: *mut u32) -> Status {
    // SAFETY: the host passes a writable `out`.
    unsafe { write_out(out, || Ok(SINKS.get(handle)?.concurrency)) }
}

pub(super) unsafe extern "C" fn health(handle: u64, out: *mut Buffer) -> Status {
    // SAFETY: the host passes a writable `out`.
    unsafe { SINKS.health(handle, out) }
}

pub(super) unsafe extern "C" fn destroy(handle: u64) -> Status {
    SINKS.destroy(handle)
}
