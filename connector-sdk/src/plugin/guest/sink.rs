//! Sink exports: instances behind handles, `send` of a batch the host lends, or staged
//! (prepared ahead) and sent later.

use std::collections::HashMap;

use parking_lot::Mutex;

use super::instances::{registry_failure, write_out, HasHealth, Instances};
use super::json_arg;
use super::ops::{guard, next_handle, runtime, Failure};
use crate::plugin::abi::{code, Buffer, HostWaker, LentBatch, Slice, Status};
use crate::plugin::codec;
use crate::plugin::lend::{self, LendError};
use crate::plugin::wire::SinkOpenWire;
use crate::{Health, Prepared, RecordRef, Sink, SinkContext};

struct SinkCell {
    /// `open` needs `&mut`; `send` (possibly several at once) and `close` share.
    sink: tokio::sync::RwLock<Box<dyn Sink>>,
    health: Health,
    concurrency: u32,
    /// What the sink prepared of staged batches, waiting for `sink_send_staged`.
    staged: Mutex<HashMap<u64, Option<Prepared>>>,
}

impl From<LendError> for Failure {
    fn from(e: LendError) -> Self {
        Failure::invalid(e.to_string())
    }
}

impl SinkCell {
    /// Removes a staged batch: each is sent or dropped once.
    fn take_staged(&self, id: u64) -> Result<Option<Prepared>, Failure> {
        self.staged
            .lock()
            .remove(&id)
            .ok_or_else(|| Failure::invalid(format!("unknown staged batch {id}")))
    }

    /// The inner sink's own preparation of a batch, when it has one.
    fn prepare(&self, records: &[RecordRef<'_>]) -> Result<Option<Prepared>, Failure> {
        // The write lock is only taken by `open`, which the host never overlaps with sends.
        let Ok(sink) = self.sink.try_read() else {
            return Ok(None);
        };
        if !sink.prepares() {
            return Ok(None);
        }
        let _rt = runtime()?.enter();
        Ok(sink.prepare(records))
    }

    /// Sends a lent batch and encodes the outcomes.
    ///
    /// # Safety
    /// `batch` must stay valid until the returned future is dropped (the ABI's lending rule;
    /// the operation machinery drops the future before the host may free the batch).
    async unsafe fn send(
        &self,
        batch: LentBatch,
        prepared: Option<Prepared>,
    ) -> Result<Vec<u8>, Failure> {
        // SAFETY: the caller's contract; the records do not outlive this future.
        let records = unsafe { lend::borrow(batch) }?;
        let sink = self.sink.read().await;
        let outcomes = match prepared {
            Some(p) => sink.send_prepared(records, p).await?,
            None => sink.send(records).await?,
        };
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
                    staged: Mutex::new(HashMap::new()),
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
            Ok(async move { cell.send(batch, None).await })
        })
    }
}

pub(super) unsafe extern "C" fn stage(
    handle: u64,
    batch: LentBatch,
    out_staged: *mut u64,
) -> Status {
    guard(|| {
        if out_staged.is_null() {
            return Err(Failure::invalid("null out_staged"));
        }
        let cell = SINKS.get(handle)?;
        // SAFETY: lent for this call, which the records do not outlive.
        let records = unsafe { lend::borrow(batch) }?;
        let prepared = cell.prepare(records)?;
        let id = next_handle();
        cell.staged.lock().insert(id, prepared);
        // SAFETY: checked non-null; the host guarantees validity.
        unsafe { out_staged.write(id) };
        Ok(Status::OK)
    })
}

pub(super) unsafe extern "C" fn send_staged(
    handle: u64,
    staged: u64,
    batch: LentBatch,
    waker: HostWaker,
    out_op: *mut u64,
) -> Status {
    // SAFETY: as `send`.
    unsafe {
        SINKS.operation(handle, waker, out_op, |cell| {
            let prepared = cell.take_staged(staged)?;
            Ok(async move { cell.send(batch, prepared).await })
        })
    }
}

pub(super) unsafe extern "C" fn unstage(handle: u64, staged: u64) -> Status {
    guard(|| {
        let prepared = SINKS.get(handle)?.take_staged(staged)?;
        // What the sink prepared may hold runtime resources: drop it in the runtime.
        let _rt = runtime()?.enter();
        drop(prepared);
        Ok(Status::OK)
    })
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

pub(super) unsafe extern "C" fn prepares(handle: u64, out: *mut u32) -> Status {
    // SAFETY: the host passes a writable `out`.
    unsafe {
        write_out(out, || {
            let cell = SINKS.get(handle)?;
            // The write lock is only taken by `open`, which the host never overlaps.
            let prepares = cell.sink.try_read().map(|s| s.prepares());
            Ok(u32::from(prepares.unwrap_or(false)))
        })
    }
}

pub(super) unsafe extern "C" fn health(handle: u64, out: *mut Buffer) -> Status {
    // SAFETY: the host passes a writable `out`.
    unsafe { SINKS.health(handle, out) }
}

pub(super) unsafe extern "C" fn destroy(handle: u64) -> Status {
    SINKS.destroy(handle)
}
