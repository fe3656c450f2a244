//! Sink batches cross the boundary lent, not encoded. The host describes its records into
//! [`LentRecord`]s that point into its own memory ([`LentBatchBuf`]); the plugin reads those
//! descriptors into the [`RecordRef`]s its sink takes ([`LentViews`]), in one pass per batch.
//! No payload is copied and no reference count is touched per record; the ownership rules in
//! [`abi`](super::abi) say how long the plugin may read them. Both sides keep their vectors
//! for the next batches.

use std::marker::PhantomData;

use parking_lot::Mutex;

use super::abi::{LentBatch, LentHeader, LentRecord, Slice};
use crate::{HeaderRef, Headers, OriginRef, RecordRef};

/// Vectors kept for the next batches: a fresh 100-kilobyte vector per batch costs more in
/// page faults than filling it does. One per batch that can be on its way at once; beyond
/// that they are freed.
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
static SPARE_HEADER_VIEWS: Spare<HeaderRef<'static>> = Spare::new();

/// A batch described for lending: descriptors of the records, pointing into them.
///
/// The host keeps it until the operation it was lent to has ended.
pub struct LentBatchBuf<'a> {
    records: Vec<LentRecord>,
    /// Never grown after `records` point into it.
    headers: Vec<LentHeader>,
    _borrow: PhantomData<&'a [u8]>,
}

impl<'a> LentBatchBuf<'a> {
    pub fn new(records: &'a [RecordRef<'_>]) -> Self {
        let mut lent = SPARE_RECORDS.take();
        let mut headers = SPARE_HEADERS.take();
        lent.reserve(records.len());
        for r in records {
            let mut flags = 0;
            if r.key.is_some() {
                flags |= LentRecord::KEY;
            }
            if r.timestamp.is_some() {
                flags |= LentRecord::TIMESTAMP;
            }
            headers.extend(r.headers.iter().map(|h| LentHeader {
                key: Slice::new(h.key.as_bytes()),
                value: Slice::new(h.value.unwrap_or_default()),
                has_value: u32::from(h.value.is_some()),
            }));
            lent.push(LentRecord {
                value: Slice::new(r.value),
                key: Slice::new(r.key.unwrap_or_default()),
                stream: Slice::new(r.origin.stream.as_bytes()),
                headers: std::ptr::null(),
                header_count: r.headers.len(),
                timestamp: r.timestamp.unwrap_or_default(),
                offset: r.origin.offset,
                partition: r.origin.partition,
                flags,
            });
        }
        if !headers.is_empty() {
            let mut next = 0;
            for l in lent.iter_mut().filter(|l| l.header_count > 0) {
                l.headers = headers[next..].as_ptr();
                next += l.header_count;
            }
        }
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

impl Drop for LentBatchBuf<'_> {
    fn drop(&mut self) {
        SPARE_RECORDS.give(std::mem::take(&mut self.records));
        SPARE_HEADERS.give(std::mem::take(&mut self.headers));
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

/// The plugin's side: reads lent batches into the records a sink takes, reusing its vectors
/// from one batch to the next.
pub struct LentViews {
    /// Views of the last batch read. Their lifetime is that of the borrow [`read`] returned
    /// them under; they are never read after it, and cleared before the vector is reused.
    ///
    /// [`read`]: LentViews::read
    records: Vec<RecordRef<'static>>,
    /// The headers those views point into; never grown after they do.
    headers: Vec<HeaderRef<'static>>,
}

impl Default for LentViews {
    fn default() -> Self {
        Self::new()
    }
}

impl LentViews {
    pub fn new() -> Self {
        LentViews {
            records: SPARE_VIEWS.take(),
            headers: SPARE_HEADER_VIEWS.take(),
        }
    }

    /// The records of a lent batch, after checking what a view takes on trust: stream names
    /// are UTF-8 and flags are the ABI's. A header name that is not UTF-8 (the host lends
    /// names of `String`s) reads as empty.
    ///
    /// # Safety
    /// `batch` must follow the ABI (`len` descriptors at `records`, each pointing at readable
    /// bytes) and stay valid and unchanged for as long as the returned views are used.
    pub unsafe fn read<'s>(
        &'s mut self,
        batch: LentBatch,
    ) -> Result<&'s [RecordRef<'s>], LendError> {
        self.records.clear();
        self.headers.clear();
        if batch.len == 0 || batch.records.is_null() {
            return Ok(&[]);
        }
        // SAFETY: the caller's contract.
        let lent = unsafe { std::slice::from_raw_parts(batch.records, batch.len) };
        self.records.reserve(lent.len());
        // Records of a batch share their stream's name: check each distinct one once.
        let mut last: (*const u8, usize, &'static str) = (std::ptr::null(), 0, "");
        for r in lent {
            if r.flags & !(LentRecord::KEY | LentRecord::TIMESTAMP) != 0 {
                return Err(LendError::Flags(r.flags));
            }
            if (r.stream.ptr, r.stream.len) != (last.0, last.1) {
                // SAFETY: the caller's contract; views hold it no longer than they are used.
                let name: &'static [u8] = unsafe { r.stream.as_bytes() };
                let name = std::str::from_utf8(name).map_err(|_| LendError::Stream)?;
                last = (r.stream.ptr, r.stream.len, name);
            }
            if r.header_count > 0 && !r.headers.is_null() {
                // SAFETY: as above.
                let lent = unsafe { std::slice::from_raw_parts(r.headers, r.header_count) };
                self.headers.extend(lent.iter().map(|h| {
                    // SAFETY: as above.
                    let (key, value) = unsafe { (h.key.as_bytes(), h.value.as_bytes()) };
                    HeaderRef {
                        key: std::str::from_utf8(key).unwrap_or_default(),
                        value: (h.has_value != 0).then_some(value),
                    }
                }));
            }
            let origin = OriginRef {
                stream: last.2,
                partition: r.partition,
                offset: r.offset,
            };
            // SAFETY: as above.
            let (value, key) = unsafe { (r.value.as_bytes(), r.key.as_bytes()) };
            self.records.push(RecordRef {
                key: (r.flags & LentRecord::KEY != 0).then_some(key),
                value,
                headers: Headers::default(),
                timestamp: (r.flags & LentRecord::TIMESTAMP != 0).then_some(r.timestamp),
                origin,
                // Not carried across the plugin boundary: a plugin checks for itself.
                checked_json: false,
            });
        }
        if !self.headers.is_empty() {
            let headers: &'static [HeaderRef<'static>] =
                // SAFETY: `headers` is complete and is not touched again before the views
                // pointing into it are cleared.
                unsafe { std::slice::from_raw_parts(self.headers.as_ptr(), self.headers.len()) };
            let mut next = 0;
            for (view, r) in self.records.iter_mut().zip(lent) {
                if r.header_count > 0 && !r.headers.is_null() {
                    view.headers = Headers::from(&headers[next..next + r.header_count]);
                    next += r.header_count;
                }
            }
        }
        Ok(&self.records)
    }
}

impl Drop for LentViews {
    fn drop(&mut self) {
        SPARE_VIEWS.give(std::mem::take(&mut self.records));
        SPARE_HEADER_VIEWS.give(std::mem::take(&mut self.headers));
    }
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
    fn a_batch_with_headers_reads_back_exactly_without_copying_a_value() {
        let records = sample();
        let views = views(&records);
        let lent = LentBatchBuf::new(&views);
        let mut read = LentViews::new();
        // SAFETY: `lent` and `records` outlive `back`.
        let back = unsafe { read.read(lent.batch()) }.unwrap();
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
    fn views_are_reused_from_one_batch_to_the_next() {
        let mut records = sample();
        let mut read = LentViews::new();
        {
            let views = views(&records);
            let lent = LentBatchBuf::new(&views);
            // SAFETY: `lent` and `records` outlive the views.
            assert_eq!(unsafe { read.read(lent.batch()) }.unwrap(), &views[..]);
        }
        records.iter_mut().for_each(|r| r.headers.clear());
        records.truncate(3);
        let views = views(&records);
        let lent = LentBatchBuf::new(&views);
        // SAFETY: as above.
        let back = unsafe { read.read(lent.batch()) }.unwrap();
        assert_eq!(back, &views[..]);
        assert_eq!(back[1].key(), Some(&b""[..]));
        assert_eq!(back[0].origin(), records[0].view().origin());
        assert_eq!(back[0].timestamp(), records[0].timestamp);
    }

    #[test]
    fn an_empty_batch_a_bad_stream_name_and_unknown_flags() {
        let lent = LentBatchBuf::new(&[]);
        let mut read = LentViews::new();
        // SAFETY: an empty batch.
        assert!(unsafe { read.read(lent.batch()) }.unwrap().is_empty());

        let mut records = sample();
        records.iter_mut().for_each(|r| r.headers.clear());
        let views = views(&records);
        let described = LentBatchBuf::new(&views);
        let mut raw: Vec<LentRecord> = described.records.clone();
        let batch = |raw: &[LentRecord]| LentBatch {
            records: raw.as_ptr(),
            len: raw.len(),
        };
        let bad = [0xffu8, 0xfe];
        let stream = raw[2].stream;
        raw[2].stream = Slice::new(&bad);
        // SAFETY: every descriptor points into live memory.
        assert_eq!(
            unsafe { read.read(batch(&raw)) }.unwrap_err(),
            LendError::Stream
        );
        raw[2].stream = stream;
        raw[3].flags |= 1 << 31;
        // SAFETY: as above.
        assert_eq!(
            unsafe { read.read(batch(&raw)) }.unwrap_err(),
            LendError::Flags((1 << 31) | raw[3].flags & 3)
        );
    }
}
