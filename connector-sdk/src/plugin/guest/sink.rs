//! Sink exports: instances behind handles, `send` decoded from the host's batch buffer, or
//! staged (decoded ahead) and sent later.

use std::collections::HashMap;

use parking_lot::Mutex;

use super::instances::{registry_failure, write_out, HasHealth, Instances};
use super::json_arg;
use super::ops::{guard, next_handle, runtime, Failure};
use crate::plugin::abi::{code, Buffer, HostWaker, Slice, Status};
use crate::plugin::codec::{self, StreamInterner};
use crate::plugin::wire::SinkOpenWire;
use crate::plugin::ForeignBuffer;
use crate::{Health, Prepared, Record, Sink, SinkContext};

struct SinkCell {
    /// `open` needs `&mut`; `send` (possibly several at once) and `close` share.
    sink: tokio::sync::RwLock<Box<dyn Sink>>,
    health: Health,
    concurrency: u32,
    /// Stream names of earlier batches, so decoding one allocates none.
    streams: Mutex<StreamInterner>,
    /// Record vectors of sent batches, emptied of their payloads, overwritten by the next.
    spare: Mutex<Vec<Vec<Record>>>,
    /// Batches decoded by `sink_stage`, waiting for `sink_send_staged`.
    staged: Mutex<HashMap<u64, Staged>>,
}

/// A batch decoded ahead of its send, with what the sink prepared of it.
struct Staged {
    records: Vec<Record>,
    prepared: Option<Prepared>,
}

/// Record vectors kept for reuse: one per batch that can be between decoding and the end
/// of its send at once (queued, staged, in flight).
const SPARE_VECTORS: usize = 8;

impl SinkCell {
    /// Decodes a batch into a vector of an earlier one, whose records keep their stream
    /// names where they match.
    fn decode(&self, batch: ForeignBuffer) -> Result<Vec<Record>, Failure> {
        let mut records = self.spare.lock().pop().unwrap_or_default();
        codec::decode_records_into(&batch.into_bytes(), &mut self.streams.lock(), &mut records)?;
        Ok(records)
    }

    /// Removes a staged batch: each is sent or dropped once.
    fn take_staged(&self, id: u64) -> Result<Staged, Failure> {
        self.staged
            .lock()
            .remove(&id)
            .ok_or_else(|| Failure::invalid(format!("unknown staged batch {id}")))
    }

    /// The inner sink's own preparation of a staged batch, when it has one.
    fn prepare(&self, records: &[Record]) -> Result<Option<Prepared>, Failure> {
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

    /// Sends decoded records and encodes the outcomes.
    async fn send(
        &self,
        mut records: Vec<Record>,
        prepared: Option<Prepared>,
    ) -> Result<Vec<u8>, Failure> {
        let sink = self.sink.read().await;
        let outcomes = match prepared {
            Some(p) => sink.send_prepared(&records, p).await?,
            None => sink.send(&records).await?,
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
        // Release the host's batch buffer now, not when the vector is next reused; the
        // records stay for a later batch to overwrite.
        codec::release_payloads(&mut records);
        let mut spare = self.spare.lock();
        if spare.len() < SPARE_VECTORS {
            spare.push(records);
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
                    streams: Mutex::new(StreamInterner::default()),
                    spare: Mutex::new(Vec::new()),
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
                let records = cell.decode(batch)?;
                cell.send(records, None).await
            })
        })
    }
}

pub(super) unsafe extern "C" fn stage(handle: u64, batch: Buffer, out_staged: *mut u64) -> Status {
    // SAFETY: handed over by this call; released on every path when dropped.
    let batch = unsafe { ForeignBuffer::new(batch) };
    guard(|| {
        if out_staged.is_null() {
            return Err(Failure::invalid("null out_staged"));
        }
        let cell = SINKS.get(handle)?;
        let records = cell.decode(batch)?;
        let prepared = cell.prepare(&records)?;
        let id = next_handle();
        cell.staged.lock().insert(id, Staged { records, prepared });
        // SAFETY: checked non-null; the host guarantees validity.
        unsafe { out_staged.write(id) };
        Ok(Status::OK)
    })
}

pub(super) unsafe extern "C" fn send_staged(
    handle: u64,
    staged: u64,
    waker: HostWaker,
    out_op: *mut u64,
) -> Status {
    // SAFETY: the waker is handed over by this call; `out_op` is writable.
    unsafe {
        SINKS.operation(handle, waker, out_op, |cell| {
            let batch = cell.take_staged(staged)?;
            Ok(async move { cell.send(batch.records, batch.prepared).await })
        })
    }
}

pub(super) unsafe extern "C" fn unstage(handle: u64, staged: u64) -> Status {
    guard(|| {
        let batch = SINKS.get(handle)?.take_staged(staged)?;
        // What the sink prepared may hold runtime resources: drop it in the runtime.
        let _rt = runtime()?.enter();
        drop(batch);
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

pub(super) unsafe extern "C" fn health(handle: u64, out: *mut Buffer) -> Status {
    // SAFETY: the host passes a writable `out`.
    unsafe { SINKS.health(handle, out) }
}

pub(super) unsafe extern "C" fn destroy(handle: u64) -> Status {
    SINKS.destroy(handle)
}
