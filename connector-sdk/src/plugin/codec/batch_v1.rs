//! Source batches, format 1 (`SLB1`), as plugins built for ABI 2.0 write them: read by the
//! host so those plugins keep working; the SDK no longer writes it.
//!
//! ```text
//! batch    := "SLB1" varint(count) record*
//! record   := u8(flags) varint(stream) [str(stream name) if stream is new]
//!             zigzag(partition) zigzag(offset) [zigzag(timestamp)] [bytes(key)] bytes(value)
//!             extras
//! bytes    := varint(len) byte{len}
//! ```
//! Integers are LEB128 varints (signed ones zigzag); a number may be padded with leading zero
//! groups that carry a continuation bit. `stream` indexes the streams seen so far in the
//! batch; an index equal to their count introduces a new stream whose name follows. Flags
//! and extras are those of format 2 ([`super::batch`]).

use std::sync::Arc;

use bytes::Bytes;

use super::batch::{read_extras, FLAG_DECODE_ERROR, FLAG_HEADERS, FLAG_KEY, FLAG_TIMESTAMP};
use super::{CodecError, Reader, StreamInterner};
use crate::{Origin, Record};

pub(super) const MAGIC: &[u8; 4] = b"SLB1";

/// Decodes the records that follow the magic; records are slices of `buf`.
pub(super) fn decode(
    rd: &mut Reader<'_>,
    buf: &Bytes,
    interner: &mut StreamInterner,
    records: &mut Vec<Record>,
) -> Result<(), CodecError> {
    let count = rd.varint()?;
    // Each record takes at least four bytes: never trust a count beyond what the buffer holds.
    let cap = usize::try_from(count)
        .unwrap_or(usize::MAX)
        .min(rd.remaining() / 4);
    records.reserve(cap);
    let mut streams: Vec<Arc<str>> = Vec::new();
    for _ in 0..count {
        let flags = u32::from(rd.u8()?);
        let idx = usize::try_from(rd.varint()?).map_err(|_| CodecError("stream index"))?;
        if idx == streams.len() {
            streams.push(interner.intern(rd.str()?));
        }
        let stream = streams
            .get(idx)
            .ok_or(CodecError("stream index out of range"))?;
        let partition =
            i32::try_from(rd.zigzag()?).map_err(|_| CodecError("partition out of range"))?;
        let offset = rd.zigzag()?;
        let timestamp = if flags & FLAG_TIMESTAMP != 0 {
            Some(rd.zigzag()?)
        } else {
            None
        };
        let key = if flags & FLAG_KEY != 0 {
            Some(buf.slice(rd.range()?))
        } else {
            None
        };
        let value = buf.slice(rd.range()?);
        let (headers, decode_error) = read_extras(
            rd,
            buf,
            flags & FLAG_HEADERS != 0,
            flags & FLAG_DECODE_ERROR != 0,
        )?;
        records.push(Record {
            key,
            value,
            headers,
            timestamp,
            origin: Origin {
                stream: stream.clone(),
                partition,
                offset,
            },
            decode_error,
        });
    }
    Ok(())
}
