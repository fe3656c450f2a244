//! Sink exports: instances behind handles, `send` decoded from the host's batch buffer.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use parking_lot::Mutex;

use super::ops::{guard, next_handle, runtime, submit, Failure, WakerGuard};
use super::{json_arg, registry, str_arg, write_health};
use crate::plugin::abi::{code, Buffer, HostWaker, Slice, Status};
use crate::plugin::codec::{self, StreamInterner};
use crate::plugin::wire::{BuildContextWire, SinkOpenWire};
use crate::plugin::ForeignBuffer;
use crate::{BuildContext, Health, Record, RegistryError, Sink, SinkContext};

struct SinkCell {
    /// `open` needs `&mut`; `send` (possibly several at once) and `close` share.
    sink: tokio::sync::RwLock<Box<dyn Sink>>,
    health: Health,
    concurrency: u32,
    /// Stream names of earlier batches, so decoding one allocates none.
    streams: Mutex<StreamInterner>,
    /// The record vector of the last batch, reused by the next one.
    records: Mutex<Vec<Record>>,
}

static SINKS: LazyLock<Mutex<HashMap<u64, Arc<SinkCell>>>> = LazyLock::new(Default::default);

fn cell(handle: u64) -> Result<Arc<SinkCell>, Failure> {
    SINKS
        .lock()
        .get(&handle)
        .cloned()
        .ok_or_else(|| Failure::invalid(format!("unknown sink {handle}")))
}

pub(super) fn registry_failure(e: RegistryError) -> Failure {
    match e {
        RegistryError::Config(c) => c.into(),
        other => Failure::invalid(other.to_string()),
    }
}

pub(super) unsafe extern "C" fn create(
    type_name: Slice,
    config: Slice,
    context: Slice,
    out_sink: *mut u64,
) -> Status {
    guard(|| {
        if out_sink.is_null() {
            return Err(Failure::invalid("null out_sink"));
        }
        let type_name = str_arg(type_name, "type name")?;
        let config: serde_json::Value = json_arg(config, "sink configuration")?;
        let ctx: BuildContextWire = json_arg(context, "build context")?;
        let ctx = BuildContext {
            pipeline: ctx.pipeline.into(),
            data_dir: ctx.data_dir,
        };
        let _rt = runtime()?.enter();
        let sink = registry()?
            .build_sink(type_name, config, &ctx)
            .map_err(registry_failure)?;
        let concurrency = u32::try_from(sink.default_concurrency().max(1)).unwrap_or(u32::MAX);
        let handle = next_handle();
        SINKS.lock().insert(
            handle,
            Arc::new(SinkCell {
                sink: tokio::sync::RwLock::new(sink),
                health: Health::new(),
                concurrency,
                streams: Mutex::new(StreamInterner::default()),
                records: Mutex::new(Vec::new()),
            }),
        );
        // SAFETY: checked non-null.
        unsafe { out_sink.write(handle) };
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
        let ctx: SinkOpenWire = json_arg(context, "open context")?;
        let ctx = SinkContext {
            pipeline: ctx.pipeline.into(),
            health: cell.health.clone(),
        };
        // SAFETY: the host passes a writable `out_op`.
        unsafe {
            submit(waker, out_op, async move {
                cell.sink.write().await.open(ctx).await?;
                Ok(Vec::new())
            })
        }
    })
}

pub(super) unsafe extern "C" fn send(
    handle: u64,
    batch: Buffer,
    waker: HostWaker,
    out_op: *mut u64,
) -> Status {
    // SAFETY: both handed over by this call; released on every path by their guards.
    let (batch, waker) = unsafe { (ForeignBuffer::new(batch), WakerGuard::new(waker)) };
    guard(move || {
        let cell = cell(handle)?;
        // SAFETY: the host passes a writable `out_op`.
        unsafe {
            submit(waker, out_op, async move {
                // Concurrent sends each get a vector; only one is kept.
                let mut records = std::mem::take(&mut *cell.records.lock());
                codec::decode_records_into(
                    &batch.into_bytes(),
                    &mut cell.streams.lock(),
                    &mut records,
                )?;
                let sink = cell.sink.read().await;
                let outcomes = sink.send(&records).await?;
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
                // Drop the records (and with them the host's batch buffer) now, not when the
                // vector is next reused.
                records.clear();
                *cell.records.lock() = records;
                Ok(codec::encode_outcomes(&outcomes))
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
                cell.sink.read().await.close().await?;
                Ok(Vec::new())
            })
        }
    })
}

pub(super) unsafe extern "C" fn concurrency(handle: u64, out: *mut u32) -> Status {
    guard(|| {
        if out.is_null() {
            return Err(Failure::invalid("null out"));
        }
        let n = cell(handle)?.concurrency;
        // SAFETY: checked non-null.
        unsafe { out.write(n) };
        Ok(Status::OK)
    })
}

pub(super) unsafe extern "C" fn health(handle: u64, out: *mut Buffer) -> Status {
    // SAFETY: the host passes a writable `out`.
    guard(|| unsafe { write_health(&cell(handle)?.health, out) })
}

pub(super) unsafe extern "C" fn destroy(handle: u64) -> Status {
    guard(|| {
        let cell = SINKS
            .lock()
            .remove(&handle)
            .ok_or_else(|| Failure::invalid(format!("unknown sink {handle}")))?;
        // Connector resources (sockets, timers) belong to the plugin runtime: drop them in it.
        let _rt = runtime()?.enter();
        drop(cell);
        Ok(Status::OK)
    })
}
