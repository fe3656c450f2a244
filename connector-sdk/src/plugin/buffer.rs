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
