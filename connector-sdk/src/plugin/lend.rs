//! Sink batches cross the boundary lent, not encoded: the host describes its own records
//! ([`LentBatch`]) and the plugin reads them in place as [`RecordRef`]s. No payload is
//! copied and no reference count is touched per record; the ownership rules in [`abi`]
//! (`super::abi`) say how long the plugin may read them.

use std::marker::PhantomData;

use super::abi::{LentBatch, LentHeader, LentRecord, Slice};
use crate::record::Headers;
use crate::{OriginRef, RecordRef};

/// A batch laid out for lending: owns the descriptors, borrows the records they point into.
///
/// The host keeps it until the operation it was lent to has ended.
pub struct LentBatchBuf<'a> {
    records: Vec<LentRecord>,
    /// Never grown after `records` point into it.
    _headers: Vec<LentHeader>,
    _borrow: PhantomData<&'a [u8]>,
}

// SAFETY: descriptors of bytes borrowed immutably for 'a.
unsafe impl Send for LentBatchBuf<'_> {}
unsafe impl Sync for LentBatchBuf<'_> {}

impl<'a> LentBatchBuf<'a> {
    pub fn new(records: &[RecordRef<'a>]) -> Self {
        let headers: Vec<LentHeader> = records
            .iter()
            .flat_map(|r| r.headers.iter())
            .map(|h| LentHeader {
                key: Slice::new(h.key.as_bytes()),
                value: Slice::new(h.value.unwrap_or_default()),
                has_value: u32::from(h.value.is_some()),
            })
            .collect();
        let mut next_header = 0;
        let lent = records
            .iter()
            .map(|r| {
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
            })
            .collect();
        LentBatchBuf {
            records: lent,
            _headers: headers,
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

/// Reads a lent batch as the records a sink takes.
///
/// # Safety
/// `batch` must follow the ABI (`len` descriptors at `records`, each pointing at readable
/// bytes) and stay valid for `'a`.
pub unsafe fn borrow<'a>(batch: LentBatch) -> Result<Vec<RecordRef<'a>>, LendError> {
    if batch.len == 0 || batch.records.is_null() {
        return Ok(Vec::new());
    }
    // SAFETY: the caller's contract.
    let lent = unsafe { std::slice::from_raw_parts(batch.records, batch.len) };
    let mut out = Vec::with_capacity(lent.len());
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
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::{views, Header, Origin, Record};

    fn sample() -> Vec<Record> {
        let audit: Arc<str> = Arc::from("audit");
        let mut full = Record::new(&b"{\"a\":1}"[..], Origin::new(audit.clone(), 3, 1 << 40));
        full.key = Some(Bytes::from_static(b"k-1"));
        full.timestamp = Some(-1);
        full.headers = vec![
            Header::new("trace", &b"abc"[..]),
            Header {
                key: "empty".into(),
                value: None,
            },
            Header::new("trace", Vec::<u8>::new()),
        ];
        let mut keyed_empty = Record::new(Bytes::new(), Origin::new(audit, 3, (1 << 40) + 1));
        keyed_empty.key = Some(Bytes::new());
        let mut tail = Record::new(&b"last"[..], Origin::new(Arc::from("other"), -1, i64::MIN));
        tail.headers = vec![Header::new("h", &b"1"[..])];
        vec![full, keyed_empty, tail]
    }

    #[test]
    fn a_lent_batch_reads_back_exactly_and_in_place() {
        let records = sample();
        let views = views(&records);
        let lent = LentBatchBuf::new(&views);
        // SAFETY: `lent` and `records` outlive `back`.
        let back = unsafe { borrow(lent.batch()) }.unwrap();
        assert_eq!(back, views);
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
        assert_eq!(back[2].to_record(), records[2]);
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
