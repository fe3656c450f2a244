//! Sink batches cross the boundary lent, not encoded: the host describes its own records
//! ([`LentBatch`]) and the plugin reads them in place as [`RecordRef`]s. No payload is
//! copied and no reference count is touched per record; the ownership rules in [`abi`]
//! (`super::abi`) say how long the plugin may read them.

use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::ops::Deref;

use parking_lot::Mutex;

use super::abi::{LentBatch, LentHeader, LentRecord, Slice};
use crate::record::Headers;
use crate::{OriginRef, RecordRef};

/// Vectors kept for the next batches: a fresh 100-kilobyte vector per batch costs more in
/// page faults than filling it does. One per batch that can be on its way at once (staged,
/// in flight); beyond that they are freed.
struct Spare<T>(Mutex<Vec<Vec<T>>>);

impl<T> Spare<T> {
    const KEEP: usize = 8;

    const fn new() -> Self {
        Spare(Mutex::new(Vec::new()))
    }

    fn take(&self) -> Vec<T> {
        self.0.lock().pop().unwrap_or_default()
    }

    fn give(&self, mut v: Vec<T>) {
        v.clear();
        let mut spare = self.0.lock();
        if spare.len() < Self::KEEP {
            spare.push(v);
        }
    }
}

static SPARE_RECORDS: Spare<LentRecord> = Spare::new();
static SPARE_HEADERS: Spare<LentHeader> = Spare::new();
static SPARE_VIEWS: Spare<RecordRef<'static>> = Spare::new();

/// A batch laid out for lending: owns the descriptors, borrows the records they point into.
///
/// The host keeps it until the operation it was lent to has ended.
pub struct LentBatchBuf<'a> {
    records: Vec<LentRecord>,
    /// Never grown after `records` point into it.
    headers: Vec<LentHeader>,
    _borrow: PhantomData<&'a [u8]>,
}

impl Drop for LentBatchBuf<'_> {
    fn drop(&mut self) {
        SPARE_RECORDS.give(std::mem::take(&mut self.records));
        SPARE_HEADERS.give(std::mem::take(&mut self.headers));
    }
}

impl<'a> LentBatchBuf<'a> {
    pub fn new(records: &[RecordRef<'a>]) -> Self {
        let mut headers = SPARE_HEADERS.take();
        for r in records.iter().filter(|r| !r.headers.is_empty()) {
            headers.extend(r.headers.iter().map(|h| LentHeader {
                key: Slice::new(h.key.as_bytes()),
                value: Slice::new(h.value.unwrap_or_default()),
                has_value: u32::from(h.value.is_some()),
            }));
        }
        let mut lent = SPARE_RECORDS.take();
        lent.reserve(records.len());
        let mut next_header = 0;
        lent.extend(records.iter().map(|r| {
            let mut flags = 0;
            if r.key.is_some() {
                flags |= LentRecord::KEY;
            }
            if r.timestamp.is_some() {
                flags |= LentRecord::TIMESTAMP;
            }
            let header_count = r.headers.len();
            let first = headers[next_header..].as_ptr();
            next_header += header_count;
            LentRecord {
                value: Slice::new(r.value),
                key: Slice::new(r.key.unwrap_or_default()),
                stream: Slice::new(r.origin.stream.as_bytes()),
                headers: first,
                header_count,
                timestamp: r.timestamp.unwrap_or_default(),
                offset: r.origin.offset,
                partition: r.origin.partition,
                flags,
            }
        }));
        LentBatchBuf {
            records: lent,
            headers,
            _borrow: PhantomData,
        }
    }

    /// What crosses the boundary.
    pub fn batch(&self) -> LentBatch {
        LentBatch {
            records: self.records.as_ptr(),
            len: self.records.len(),
        }
    }
}

/// A stream name that is not UTF-8 (a bug on the host's side, never user data).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("lent batch: a stream name is not UTF-8")]
pub struct LendError;

/// The records of a lent batch, as a sink takes them.
#[derive(Debug)]
pub struct BorrowedBatch<'a> {
    records: Vec<RecordRef<'a>>,
}

impl<'a> Deref for BorrowedBatch<'a> {
    type Target = [RecordRef<'a>];

    fn deref(&self) -> &[RecordRef<'a>] {
        &self.records
    }
}

impl Drop for BorrowedBatch<'_> {
    fn drop(&mut self) {
        let mut v = ManuallyDrop::new(std::mem::take(&mut self.records));
        v.clear();
        // SAFETY: an empty vector holds no value of the shorter lifetime, and lifetimes do not
        // change the layout: this only keeps the allocation for the next batch.
        let empty: Vec<RecordRef<'static>> =
            unsafe { Vec::from_raw_parts(v.as_mut_ptr().cast(), 0, v.capacity()) };
        SPARE_VIEWS.give(empty);
    }
}

/// Reads a lent batch as the records a sink takes.
///
/// # Safety
/// `batch` must follow the ABI (`len` descriptors at `records`, each pointing at readable
/// bytes) and stay valid for `'a`.
pub unsafe fn borrow<'a>(batch: LentBatch) -> Result<BorrowedBatch<'a>, LendError> {
    // A `Vec<RecordRef<'static>>` is a `Vec<RecordRef<'a>>` (the lifetime only shortens).
    let mut out: Vec<RecordRef<'a>> = SPARE_VIEWS.take();
    if batch.len == 0 || batch.records.is_null() {
        return Ok(BorrowedBatch { records: out });
    }
    // SAFETY: the caller's contract.
    let lent = unsafe { std::slice::from_raw_parts(batch.records, batch.len) };
    out.reserve(lent.len());
    // Records of a batch share their stream's name: check each distinct one once.
    let mut last: (*const u8, usize, &'a str) = (std::ptr::null(), 0, "");
    for r in lent {
        let stream = if r.stream.ptr == last.0 && r.stream.len == last.1 {
            last.2
        } else {
            // SAFETY: the caller's contract.
            let s = std::str::from_utf8(unsafe { r.stream.as_bytes() }).map_err(|_| LendError)?;
            last = (r.stream.ptr, r.stream.len, s);
            s
        };
        let headers: &'a [LentHeader] = if r.header_count == 0 || r.headers.is_null() {
            &[]
        } else {
            // SAFETY: the caller's contract.
            unsafe { std::slice::from_raw_parts(r.headers, r.header_count) }
        };
        out.push(RecordRef {
            // SAFETY: the caller's contract, for this and the value.
            key: (r.flags & LentRecord::KEY != 0).then(|| unsafe { r.key.as_bytes() }),
            value: unsafe { r.value.as_bytes() },
            // SAFETY: the caller's contract.
            headers: unsafe { Headers::lent(headers) },
            timestamp: (r.flags & LentRecord::TIMESTAMP != 0).then_some(r.timestamp),
            origin: OriginRef {
                stream,
                partition: r.partition,
                offset: r.offset,
            },
        });
    }
    Ok(BorrowedBatch { records: out })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::{views, Record};

    /// The codec's sample, with an empty key (still a key) on the second record.
    fn sample() -> Vec<Record> {
        let mut records = crate::plugin::codec::tests::sample();
        records[1].key = Some(Bytes::new());
        records
    }

    #[test]
    fn a_lent_batch_reads_back_exactly_and_in_place() {
        let records = sample();
        let views = views(&records);
        let lent = LentBatchBuf::new(&views);
        // SAFETY: `lent` and `records` outlive `back`.
        let back = unsafe { borrow(lent.batch()) }.unwrap();
        assert_eq!(&back[..], &views[..]);
        assert_eq!(
            back[0].headers.get("trace").unwrap().value,
            Some(&b"abc"[..])
        );
        assert_eq!(back[1].key, Some(&b""[..]), "an empty key is still a key");
        for (r, orig) in back.iter().zip(&records) {
            assert_eq!(
                r.value.as_ptr(),
                orig.value.as_ptr(),
                "the value was copied"
            );
        }
        // The last record has neither key nor headers nor decode error to lose.
        assert_eq!(back[4].to_record(), records[4]);
    }

    #[test]
    fn an_empty_batch_and_a_bad_stream_name() {
        let lent = LentBatchBuf::new(&[]);
        // SAFETY: an empty batch.
        assert!(unsafe { borrow(lent.batch()) }.unwrap().is_empty());

        let records = sample();
        let views = views(&records);
        let mut lent = LentBatchBuf::new(&views);
        let bad = [0xffu8, 0xfe];
        lent.records[2].stream = Slice::new(&bad);
        // SAFETY: every descriptor points into live memory.
        assert_eq!(unsafe { borrow(lent.batch()) }.unwrap_err(), LendError);
    }
}
