//! Sink exports: instances behind handles, `send` decoded from the host's batch buffer.

use parking_lot::Mutex;

use super::instances::{registry_failure, write_out, HasHealth, Instances};
use super::json_arg;
use super::ops::Failure;
use crate::plugin::abi::{code, Buffer, HostWaker, Slice, Status};
use crate::plugin::codec::{self, StreamInterner};
use crate::plugin::wire::SinkOpenWire;
use crate::plugin::ForeignBuffer;
use crate::{Health, Record, Sink, SinkContext};

struct SinkCell {
    /// `open` needs `&mut`; `send` (possibly several at once) and `close` share.
    sink: tokio::sync::RwLock<Box<dyn Sink>>,
    health: Health,
    concurrency: u32,
    /// Stream names of earlier batches, so decoding one allocates none.
    streams: Mutex<StreamInterner>,
    /// The records of the last batch, emptied of their payloads, overwritten by the next.
    records: Mutex<Vec<Record>>,
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
                    streams: Mutex::new(StreamInterner::default()),
                    records: Mutex::new(Vec::new()),
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
    batch: Buffer,
    waker: HostWaker,
    out_op: *mut u64,
) -> Status {
    // SAFETY: handed over by this call; released on every path when dropped.
    let batch = unsafe { ForeignBuffer::new(batch) };
    // SAFETY: the waker is handed over by this call; `out_op` is writable.
    unsafe {
        SINKS.operation(handle, waker, out_op, |cell| {
            Ok(async move {
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
                // Release the host's batch buffer now, not when the vector is next reused;
                // the records stay for the next batch to overwrite.
                codec::release_payloads(&mut records);
                *cell.records.lock() = records;
                Ok(codec::encode_outcomes(&outcomes))
            })
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
