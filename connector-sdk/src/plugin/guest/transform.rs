//! Transform exports: instances behind handles, and `apply` of a batch the host lends, in one
//! call per batch that answers one result per record.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, LazyLock};

use super::instances::{registry_failure, Instances};
use super::ops::{guard, panic_message, Failure};
use crate::plugin::abi::{Buffer, LentBatch, Slice, Status};
use crate::plugin::codec;
use crate::plugin::lend::LentViews;
use crate::plugin::BufferPool;
use crate::transform::{apply_one, Applied, TransformError, TRANSFORM_PANIC};
use crate::{Record, Transform};

static TRANSFORMS: Instances<Box<dyn Transform>> = Instances::new("transform");

/// The buffers results go back in; the host's release returns them here.
static RESULTS: LazyLock<Arc<BufferPool>> = LazyLock::new(BufferPool::new);

pub(super) unsafe extern "C" fn create(
    type_name: Slice,
    config: Slice,
    context: Slice,
    out_transform: *mut u64,
) -> Status {
    // SAFETY: the host passes valid slices and a writable `out_transform`.
    unsafe {
        TRANSFORMS.create(
            type_name,
            config,
            context,
            out_transform,
            |registry, ty, cfg, ctx| {
                registry
                    .build_transform(ty, cfg, ctx)
                    .map_err(registry_failure)
            },
        )
    }
}

/// Applies the transform to each record of the lent batch and writes the encoded results.
///
/// A transform's `apply` reads the record as an owned [`Record`] (its `Event` borrows one),
/// so each lent record is copied once on this side. A panic on a record fails that record
/// alone, with kind [`TRANSFORM_PANIC`] and the panic's message and location.
pub(super) unsafe extern "C" fn apply(handle: u64, batch: LentBatch, out: *mut Buffer) -> Status {
    guard(|| {
        if out.is_null() {
            return Err(Failure::invalid("null out"));
        }
        let transform = TRANSFORMS.get(handle)?;
        let mut views = LentViews::new();
        // SAFETY: the host lends the batch for the duration of this call.
        let records = unsafe { views.read(batch) }?;
        let applied: Vec<Applied> = records
            .iter()
            .map(|view| {
                let record: Record = view.to_record();
                catch_unwind(AssertUnwindSafe(|| apply_one(&**transform, &record))).unwrap_or_else(
                    |payload| {
                        Applied::Failed(TransformError::other(
                            TRANSFORM_PANIC,
                            panic_message(payload),
                        ))
                    },
                )
            })
            .collect();
        let mut buf = RESULTS.take();
        codec::encode_applied(&mut buf, &applied);
        // SAFETY: checked non-null; the host owns the buffer from now on.
        unsafe { out.write(RESULTS.hand_over(buf)) };
        Ok(Status::OK)
    })
}

pub(super) unsafe extern "C" fn destroy(handle: u64) -> Status {
    TRANSFORMS.destroy(handle)
}
