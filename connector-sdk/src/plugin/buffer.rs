use std::ffi::c_void;
use std::sync::Arc;

use bytes::Bytes;

use super::abi::Buffer;

/// A [`Buffer`] received from the other side of the ABI, released (freed by its allocator)
/// when dropped.
///
/// [`into_bytes`](ForeignBuffer::into_bytes) wraps it in one [`Bytes`] without copying, so the
/// records decoded from a batch share the buffer and it is released once the last of them
/// is dropped.
#[derive(Debug)]
pub struct ForeignBuffer(Buffer);

// SAFETY: the ABI requires buffers to be immutable while owned by the receiver and their
// release callback to be callable from any thread.
unsafe impl Send for ForeignBuffer {}
unsafe impl Sync for ForeignBuffer {}

impl ForeignBuffer {
    /// Takes ownership of a buffer received through the ABI.
    ///
    /// # Safety
    /// `buffer` must be valid per the ABI rules and owned by this side (not yet released).
    pub unsafe fn new(buffer: Buffer) -> Self {
        ForeignBuffer(buffer)
    }

    pub fn as_slice(&self) -> &[u8] {
        if self.0.ptr.is_null() || self.0.len == 0 {
            &[]
        } else {
            // SAFETY: the ABI guarantees `len` readable bytes until release.
            unsafe { std::slice::from_raw_parts(self.0.ptr, self.0.len) }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.len == 0
    }

    /// The bytes as a shared [`Bytes`], without a copy.
    pub fn into_bytes(self) -> Bytes {
        if self.is_empty() {
            return Bytes::new();
        }
        Bytes::from_owner(self)
    }

    /// The bytes as text, replacing invalid UTF-8 (messages, reasons).
    pub fn to_string_lossy(&self) -> String {
        String::from_utf8_lossy(self.as_slice()).into_owned()
    }
}

impl AsRef<[u8]> for ForeignBuffer {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl Drop for ForeignBuffer {
    fn drop(&mut self) {
        let buffer = std::mem::replace(&mut self.0, Buffer::EMPTY);
        // SAFETY: owned by this side and released exactly once, here.
        unsafe { buffer.release() }
    }
}

/// Batch-sized buffers that come back when whoever holds them lets go.
///
/// A batch buffer is a few hundred kilobytes: allocated fresh for every call it costs page
/// faults and cold-cache copies (allocators hand such sizes straight back to the kernel). The
/// side that encodes batches takes its vectors from a pool and hands them over with
/// [`BufferPool::hand_over`] (to the other side of the ABI) or [`BufferPool::into_bytes`]
/// (to an HTTP client, as a request body); the release puts them back, already sized and
/// faulted in. At most [`BufferPool::KEEP`] vectors are kept, and none larger than
/// [`BufferPool::MAX_KEPT_CAPACITY`], so the memory held is bounded.
#[derive(Debug, Default)]
pub struct BufferPool {
    free: parking_lot::Mutex<Vec<Vec<u8>>>,
}

impl BufferPool {
    /// Enough for the batches in flight to one connector plus the one being encoded.
    pub const KEEP: usize = 4;
    pub const MAX_KEPT_CAPACITY: usize = 32 << 20;

    pub fn new() -> Arc<Self> {
        Arc::new(BufferPool::default())
    }

    /// An empty vector, with the capacity of an earlier batch when one came back.
    pub fn take(&self) -> Vec<u8> {
        self.free.lock().pop().unwrap_or_default()
    }

    pub(crate) fn put(&self, mut v: Vec<u8>) {
        if v.capacity() == 0 || v.capacity() > Self::MAX_KEPT_CAPACITY {
            return;
        }
        v.clear();
        let mut free = self.free.lock();
        if free.len() < Self::KEEP {
            free.push(v);
        }
    }

    /// Hands `bytes` over to the other side; its release returns the vector to this pool.
    pub fn hand_over(self: &Arc<Self>, bytes: Vec<u8>) -> Buffer {
        if bytes.is_empty() {
            self.put(bytes);
            return Buffer::EMPTY;
        }
        let owned = Box::new(Pooled {
            bytes,
            pool: self.clone(),
        });
        Buffer {
            ptr: owned.bytes.as_ptr(),
            len: owned.bytes.len(),
            release: Some(release_pooled),
            owner: Box::into_raw(owned).cast(),
        }
    }

    /// `bytes` as a [`Bytes`] whose last clone, dropped on any thread, returns the vector to
    /// this pool.
    pub fn into_bytes(self: &Arc<Self>, bytes: Vec<u8>) -> Bytes {
        Bytes::from_owner(Pooled {
            bytes,
            pool: self.clone(),
        })
    }
}

struct Pooled {
    bytes: Vec<u8>,
    pool: Arc<BufferPool>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.put(std::mem::take(&mut self.bytes));
    }
}

unsafe extern "C" fn release_pooled(owner: *mut c_void) {
    // SAFETY: `owner` came from `Box::into_raw` in `BufferPool::hand_over` on this side and
    // is released once. A panic must not unwind into the other side.
    let owned = unsafe { Box::from_raw(owner.cast::<Pooled>()) };
    // Dropping it puts the vector back.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(owned)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_buffers_come_back_with_their_capacity() {
        let pool = BufferPool::new();
        let mut v = pool.take();
        v.extend_from_slice(&[7u8; 100_000]);
        let ptr = v.as_ptr();
        // SAFETY: the buffer was handed over by this test and is released once.
        let received = unsafe { ForeignBuffer::new(pool.hand_over(v)) };
        assert_eq!(received.as_slice(), &[7u8; 100_000][..]);
        drop(received);
        let again = pool.take();
        assert!(again.is_empty());
        assert!(again.capacity() >= 100_000);
        assert_eq!(again.as_ptr(), ptr, "the same allocation comes back");
    }

    #[test]
    fn the_pool_keeps_a_bounded_number_of_buffers() {
        let pool = BufferPool::new();
        let handed: Vec<ForeignBuffer> = (0..10)
            .map(|i| {
                let mut v = pool.take();
                v.resize(1000 + i, 1);
                // SAFETY: as above.
                unsafe { ForeignBuffer::new(pool.hand_over(v)) }
            })
            .collect();
        drop(handed);
        assert_eq!(pool.free.lock().len(), BufferPool::KEEP);
    }
}
