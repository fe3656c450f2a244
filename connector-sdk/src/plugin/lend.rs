//! Sink batches cross the boundary lent, not encoded: a [`RecordRef`] has the layout of the
//! ABI's [`LentRecord`], so the host lends its own views of a batch as they are and the
//! plugin reads them in place. No payload and no descriptor is copied, and no reference count
//! is touched per record; the ownership rules in [`abi`](super::abi) say how long the plugin
//! may read them. Only records whose headers are the host's own Rust values are described
//! again first, into [`LentHeader`]s.

use std::marker::PhantomData;

use parking_lot::Mutex;

use super::abi::{LentBatch, LentHeader, LentRecord, Slice};
use crate::RecordRef;

/// Vectors kept for the next batches that need describing: a fresh 100-kilobyte vector per
/// batch costs more in page faults than filling it does. One per batch that can be on its way
/// at once (staged, in flight); beyond that they are freed.
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

/// The descriptors of a batch whose headers had to be described for lending.
struct Described {
    records: Vec<LentRecord>,
    /// Never grown after `records` point into it.
    headers: Vec<LentHeader>,
}

impl Drop for Described {
    fn drop(&mut self) {
        SPARE_RECORDS.give(std::mem::take(&mut self.records));
        SPARE_HEADERS.give(std::mem::take(&mut self.headers));
    }
}

/// A batch laid out for lending: the views themselves, or a described copy of them when some
/// record carries headers. Borrows the records either way.
///
/// The host keeps it until the operation it was lent to has ended.
pub struct LentBatchBuf<'a> {
    batch: LentBatch,
    _described: Option<Described>,
    _borrow: PhantomData<&'a [RecordRef<'a>]>,
}

impl<'a> LentBatchBuf<'a> {
    pub fn new(records: &'a [RecordRef<'_>]) -> Self {
        if !records.iter().any(RecordRef::owns_headers) {
            return LentBatchBuf {
                batch: LentBatch {
                    records: records.as_ptr().cast(),
                    len: records.len(),
                },
                _described: None,
                _borrow: PhantomData,
            };
        }
        let mut headers = SPARE_HEADERS.take();
        for r in records.iter().filter(|r| r.owns_headers()) {
            headers.extend(r.headers().iter().map(|h| LentHeader {
                key: Slice::new(h.key.as_bytes()),
                value: Slice::new(h.value.unwrap_or_default()),
                has_value: u32::from(h.value.is_some()),
            }));
        }
        let mut lent = SPARE_RECORDS.take();
        lent.reserve(records.len());
        let mut next_header = 0;
        lent.extend(records.iter().map(|r| {
            let mut raw = *r.raw();
            if r.owns_headers() {
                raw.headers = headers[next_header..].as_ptr();
                raw.flags &= LentRecord::KEY | LentRecord::TIMESTAMP;
                next_header += raw.header_count;
            }
            raw
        }));
        LentBatchBuf {
            batch: LentBatch {
                records: lent.as_ptr(),
                len: lent.len(),
            },
            _described: Some(Described {
                records: lent,
                headers,
            }),
            _borrow: PhantomData,
        }
    }

    /// What crosses the boundary.
    pub fn batch(&self) -> LentBatch {
        self.batch
    }
}

/// A lent batch the plugin cannot read: a bug on the host's side, never user data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LendError {
    #[error("lent batch: a stream name is not UTF-8")]
    Stream,
    #[error("lent batch: record flags {0:#x} are not the ABI's")]
    Flags(u32),
}

/// Reads a lent batch in place as the records a sink takes, after checking what a record
/// view takes on trust: stream names are UTF-8 and flags are the ABI's.
///
/// # Safety
/// `batch` must follow the ABI (`len` descriptors at `records`, each pointing at readable
/// bytes) and stay valid for `'a`.
pub unsafe fn borrow<'a>(batch: LentBatch) -> Result<&'a [RecordRef<'a>], LendError> {
    if batch.len == 0 || batch.records.is_null() {
        return Ok(&[]);
    }
    // SAFETY: the caller's contract.
    let lent = unsafe { std::slice::from_raw_parts(batch.records, batch.len) };
    // Records of a batch share their stream's name: check each distinct one once.
    let mut last: (*const u8, usize) = (std::ptr::null(), 0);
    for r in lent {
        if r.flags & !(LentRecord::KEY | LentRecord::TIMESTAMP) != 0 {
            return Err(LendError::Flags(r.flags));
        }
        if (r.stream.ptr, r.stream.len) != last {
            // SAFETY: the caller's contract.
            std::str::from_utf8(unsafe { r.stream.as_bytes() }).map_err(|_| LendError::Stream)?;
            last = (r.stream.ptr, r.stream.len);
        }
    }
    // SAFETY: checked above; the rest is the caller's contract.
    Ok(unsafe { RecordRef::lent(lent) })
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
    fn a_batch_with_headers_is_described_and_reads_back_exactly() {
        let records = sample();
        let views = views(&records);
        let lent = LentBatchBuf::new(&views);
        assert_ne!(
            lent.batch().records,
            views.as_ptr().cast(),
            "headers need describing"
        );
        // SAFETY: `lent` and `records` outlive `back`.
        let back = unsafe { borrow(lent.batch()) }.unwrap();
        assert_eq!(back, &views[..]);
        assert_eq!(
            back[0].headers().get("trace").unwrap().value,
            Some(&b"abc"[..])
        );
        assert_eq!(back[1].key(), Some(&b""[..]), "an empty key is still a key");
        for (r, orig) in back.iter().zip(&records) {
            assert_eq!(
                r.value().as_ptr(),
                orig.value.as_ptr(),
                "the value was copied"
            );
        }
        // The last record has neither key nor headers nor decode error to lose.
        assert_eq!(back[4].to_record(), records[4]);
    }

    #[test]
    fn a_batch_without_headers_is_lent_as_the_views_themselves() {
        let mut records = sample();
        records.iter_mut().for_each(|r| r.headers.clear());
        let views = views(&records);
        let lent = LentBatchBuf::new(&views);
        assert_eq!(lent.batch().records, views.as_ptr().cast());
        // SAFETY: `lent` and `records` outlive `back`.
        let back = unsafe { borrow(lent.batch()) }.unwrap();
        assert_eq!(back, &views[..]);
        assert_eq!(back[1].key(), Some(&b""[..]));
        assert_eq!(back[0].origin(), records[0].view().origin());
        assert_eq!(back[0].timestamp(), records[0].timestamp);
    }

    #[test]
    fn an_empty_batch_a_bad_stream_name_and_unknown_flags() {
        let lent = LentBatchBuf::new(&[]);
        // SAFETY: an empty batch.
        assert!(unsafe { borrow(lent.batch()) }.unwrap().is_empty());

        let mut records = sample();
        records.iter_mut().for_each(|r| r.headers.clear());
        let mut raw: Vec<LentRecord> = views(&records).iter().map(|r| *r.raw()).collect();
        let batch = |raw: &[LentRecord]| LentBatch {
            records: raw.as_ptr(),
            len: raw.len(),
        };
        let bad = [0xffu8, 0xfe];
        let stream = raw[2].stream;
        raw[2].stream = Slice::new(&bad);
        // SAFETY: every descriptor points into live memory.
        assert_eq!(
            unsafe { borrow(batch(&raw)) }.unwrap_err(),
            LendError::Stream
        );
        raw[2].stream = stream;
        raw[3].flags |= 1 << 31;
        // SAFETY: as above.
        assert_eq!(
            unsafe { borrow(batch(&raw)) }.unwrap_err(),
            LendError::Flags((1 << 31) | raw[3].flags & 3)
        );
    }
}
