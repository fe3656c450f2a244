//! The binary encodings that cross the plugin boundary: source batches (poll results), sink
//! outcomes, transform results, commit origins and checkpoints. (Sink and transform batches
//! are not encoded: the host lends them, see [`super::lend`].)
//!
//! A source batch is written once into one buffer by the plugin and decoded by the host into
//! [`Record`]s whose key, value and header values are slices of that one buffer (shared
//! [`Bytes`], no further copy): the host keeps records past the call, so they must own what
//! they point into. A source that writes its values in place ([`BatchWriter::push_with`])
//! writes them straight into this buffer. The batch format is described in `codec/batch.rs`;
//! the other encodings here use LEB128 varints (signed ones zigzag).

mod batch;

pub(crate) use batch::BatchEncoder;

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;

use crate::transform::{Applied, TransformError};
use crate::{BatchWriter, Checkpoint, Origin, Outcome, PollEnd, Polled, Record, Rejection};

const OUTCOMES_ALL_DELIVERED: u8 = 0;
const OUTCOMES_LISTED: u8 = 1;
const OUTCOME_DELIVERED: u8 = 0;
const OUTCOME_RETRY: u8 = 1;
const OUTCOME_REJECT: u8 = 2;
const OUTCOME_UNAVAILABLE: u8 = 3;

const APPLIED_ALL_KEPT: u8 = 0;
const APPLIED_LISTED: u8 = 1;
const APPLIED_KEPT: u8 = 0;
const APPLIED_CHANGED: u8 = 1;
const APPLIED_SKIPPED: u8 = 2;
const APPLIED_FAILED: u8 = 3;

const POLLED_RECORDS: u8 = 0;
const POLLED_IDLE: u8 = 1;
const POLLED_FINISHED: u8 = 2;

/// A buffer that does not follow the encoding (a bug on the other side, never user data).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed plugin buffer: {0}")]
pub struct CodecError(pub &'static str);

/// Reuses the `Arc<str>` of stream names across batches, so decoding a batch from a source
/// that reads one topic allocates no stream name at all.
#[derive(Debug, Default)]
pub struct StreamInterner {
    streams: Vec<Arc<str>>,
}

impl StreamInterner {
    /// Beyond this many distinct names the cache starts over (bounded memory).
    const CAPACITY: usize = 256;

    pub fn intern(&mut self, name: &str) -> Arc<str> {
        if let Some(s) = self.streams.iter().find(|s| &***s == name) {
            return s.clone();
        }
        if self.streams.len() >= Self::CAPACITY {
            self.streams.clear();
        }
        let s: Arc<str> = Arc::from(name);
        self.streams.push(s.clone());
        s
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_zigzag(out: &mut Vec<u8>, v: i64) {
    put_varint(out, ((v << 1) ^ (v >> 63)) as u64);
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn u8(&mut self) -> Result<u8, CodecError> {
        let b = *self.buf.get(self.pos).ok_or(CodecError("truncated"))?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, CodecError> {
        let rest = &self.buf[self.pos..];
        // Flags, stream indexes and most lengths fit in one byte.
        if let Some(&b) = rest.first() {
            if b < 0x80 {
                self.pos += 1;
                return Ok(u64::from(b));
            }
        }
        // Offsets, timestamps and longer lengths: up to eight bytes decoded at once, by
        // squeezing the 7-bit groups of one little-endian word together.
        if let Some(chunk) = rest.first_chunk::<8>() {
            let word = u64::from_le_bytes(*chunk);
            let ends = !word & 0x8080_8080_8080_8080;
            if ends != 0 {
                let len = ends.trailing_zeros() as usize / 8 + 1;
                let mut v = word & (u64::MAX >> (64 - 8 * len)) & 0x7f7f_7f7f_7f7f_7f7f;
                v = (v & 0x007f_007f_007f_007f) | ((v & 0x7f00_7f00_7f00_7f00) >> 1);
                v = (v & 0x0000_3fff_0000_3fff) | ((v & 0x3fff_0000_3fff_0000) >> 2);
                v = (v & 0x0000_0000_0fff_ffff) | ((v & 0x0fff_ffff_0000_0000) >> 4);
                self.pos += len;
                return Ok(v);
            }
        }
        let mut v: u64 = 0;
        for (i, &b) in rest.iter().take(10).enumerate() {
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                self.pos += i + 1;
                return Ok(v);
            }
        }
        Err(if rest.len() < 10 {
            CodecError("truncated")
        } else {
            CodecError("varint longer than 64 bits")
        })
    }

    fn zigzag(&mut self) -> Result<i64, CodecError> {
        let v = self.varint()?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    fn len(&mut self) -> Result<usize, CodecError> {
        let n = self.varint()?;
        usize::try_from(n)
            .ok()
            .filter(|n| *n <= self.remaining())
            .ok_or(CodecError("length beyond the end of the buffer"))
    }

    /// A length-prefixed byte range, as positions in the buffer.
    fn range(&mut self) -> Result<Range<usize>, CodecError> {
        let n = self.len()?;
        let start = self.pos;
        self.pos += n;
        Ok(start..self.pos)
    }

    fn bytes(&mut self) -> Result<&'a [u8], CodecError> {
        let r = self.range()?;
        Ok(&self.buf[r])
    }

    fn str(&mut self) -> Result<&'a str, CodecError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| CodecError("invalid UTF-8 in a name"))
    }

    fn end(&self) -> Result<(), CodecError> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(CodecError("trailing bytes"))
        }
    }
}

/// Appends an encoded batch to `out`.
pub fn encode_records_into(out: &mut Vec<u8>, records: &[Record]) {
    let mut enc = BatchEncoder::begin(out);
    for r in records {
        enc.record(r);
    }
    enc.finish();
}

/// Decodes the batch at the reader's position, which runs to the end of `buf`.
fn decode_records_from(
    rd: &mut Reader<'_>,
    buf: &Bytes,
    interner: &mut StreamInterner,
    records: &mut Vec<Record>,
) -> Result<(), CodecError> {
    let base = rd.pos;
    let magic = buf.get(base..base + 4).ok_or(CodecError("truncated"))?;
    if magic == batch::MAGIC {
        batch::decode(buf, base, interner, records)?;
        rd.pos = buf.len();
        Ok(())
    } else {
        Err(CodecError("not a record batch"))
    }
}

/// Encodes a sink's answer: one byte per batch when everything was delivered.
pub fn encode_outcomes(outcomes: &[Outcome]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    put_varint(&mut out, outcomes.len() as u64);
    if outcomes.iter().all(|o| matches!(o, Outcome::Delivered)) {
        out.push(OUTCOMES_ALL_DELIVERED);
        return out;
    }
    out.push(OUTCOMES_LISTED);
    for o in outcomes {
        match o {
            Outcome::Delivered => out.push(OUTCOME_DELIVERED),
            Outcome::Retry(reason) => {
                out.push(OUTCOME_RETRY);
                put_bytes(&mut out, reason.as_bytes());
            }
            Outcome::Reject(r) => {
                out.push(OUTCOME_REJECT);
                put_bytes(&mut out, r.kind.as_bytes());
                put_bytes(&mut out, r.message.as_bytes());
            }
            Outcome::Unavailable(reason) => {
                out.push(OUTCOME_UNAVAILABLE);
                put_bytes(&mut out, reason.as_bytes());
            }
        }
    }
    out
}

pub fn decode_outcomes(buf: &[u8]) -> Result<Vec<Outcome>, CodecError> {
    let mut rd = Reader::new(buf);
    let count = usize::try_from(rd.varint()?).map_err(|_| CodecError("outcome count"))?;
    let outcomes = match rd.u8()? {
        OUTCOMES_ALL_DELIVERED => {
            // A count is trusted here only up to a sane bound: it sizes an allocation.
            if count > (1 << 28) {
                return Err(CodecError("outcome count"));
            }
            vec![Outcome::Delivered; count]
        }
        OUTCOMES_LISTED => {
            let mut v = Vec::with_capacity(count.min(rd.remaining()));
            for _ in 0..count {
                v.push(match rd.u8()? {
                    OUTCOME_DELIVERED => Outcome::Delivered,
                    OUTCOME_RETRY => Outcome::Retry(lossy(rd.bytes()?)),
                    OUTCOME_REJECT => Outcome::Reject(Rejection {
                        kind: lossy(rd.bytes()?),
                        message: lossy(rd.bytes()?),
                    }),
                    OUTCOME_UNAVAILABLE => Outcome::Unavailable(lossy(rd.bytes()?)),
                    _ => return Err(CodecError("unknown outcome")),
                });
            }
            v
        }
        _ => return Err(CodecError("unknown outcome list form")),
    };
    rd.end()?;
    Ok(outcomes)
}

/// Appends a transform's results for a batch to `out` (a reused buffer): one byte per batch
/// when every record was kept as it was, else one entry per record, a changed record with its
/// new value and a failed one with its dead-letter kind and message.
pub fn encode_applied(out: &mut Vec<u8>, applied: &[Applied]) {
    put_varint(out, applied.len() as u64);
    if applied.iter().all(|a| matches!(a, Applied::Kept)) {
        out.push(APPLIED_ALL_KEPT);
        return;
    }
    out.push(APPLIED_LISTED);
    for a in applied {
        match a {
            Applied::Kept => out.push(APPLIED_KEPT),
            Applied::Changed(value) => {
                out.push(APPLIED_CHANGED);
                put_bytes(out, value);
            }
            Applied::Skipped => out.push(APPLIED_SKIPPED),
            Applied::Failed(e) => {
                out.push(APPLIED_FAILED);
                put_bytes(out, e.kind().as_bytes());
                put_bytes(out, e.to_string().as_bytes());
            }
        }
    }
}

/// Decodes a transform's results; new values are slices of `buf`, not copies. A failure comes
/// back as [`TransformError::Other`] with the kind and message the plugin gave.
pub fn decode_applied(buf: &Bytes) -> Result<Vec<Applied>, CodecError> {
    let mut rd = Reader::new(buf);
    let count = usize::try_from(rd.varint()?).map_err(|_| CodecError("result count"))?;
    let applied = match rd.u8()? {
        APPLIED_ALL_KEPT => {
            // A count is trusted here only up to a sane bound: it sizes an allocation.
            if count > (1 << 28) {
                return Err(CodecError("result count"));
            }
            vec![Applied::Kept; count]
        }
        APPLIED_LISTED => {
            let mut v = Vec::with_capacity(count.min(rd.remaining()));
            for _ in 0..count {
                v.push(match rd.u8()? {
                    APPLIED_KEPT => Applied::Kept,
                    APPLIED_CHANGED => Applied::Changed(buf.slice(rd.range()?)),
                    APPLIED_SKIPPED => Applied::Skipped,
                    APPLIED_FAILED => Applied::Failed(TransformError::other(
                        lossy(rd.bytes()?),
                        lossy(rd.bytes()?),
                    )),
                    _ => return Err(CodecError("unknown transform result")),
                });
            }
            v
        }
        _ => return Err(CodecError("unknown transform result list form")),
    };
    rd.end()?;
    Ok(applied)
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Appends the encoded result of `Source::poll` to `out` (a reused batch buffer).
pub fn encode_polled_into(out: &mut Vec<u8>, polled: &Polled) {
    match polled {
        Polled::Records(records) => {
            out.push(POLLED_RECORDS);
            encode_records_into(out, records);
        }
        Polled::Idle => out.push(POLLED_IDLE),
        Polled::Finished => out.push(POLLED_FINISHED),
    }
}

/// A writer for `Source::poll_into` that encodes each record into `out` as it is written,
/// as a poll result; complete it with [`finish_poll`].
pub fn poll_writer(out: &mut Vec<u8>) -> BatchWriter<'_> {
    let start = out.len();
    out.push(POLLED_RECORDS);
    BatchWriter::encoding(BatchEncoder::begin(out), start)
}

/// Completes the poll result of a [`poll_writer`] (an empty one becomes idle or finished).
///
/// Fails for a writer that is not the one `poll_writer` made (a source swapped it for
/// another): its records never reached the buffer, and the poll must fail, not lose them.
pub fn finish_poll(writer: BatchWriter<'_>, end: PollEnd) -> Result<(), CodecError> {
    match writer.into_parts() {
        Err((enc, start)) if enc.count() == 0 => {
            let out = enc.into_out();
            out.truncate(start);
            out.push(match end {
                PollEnd::More => POLLED_IDLE,
                PollEnd::Finished => POLLED_FINISHED,
            });
            Ok(())
        }
        Err((enc, _)) => {
            enc.finish();
            Ok(())
        }
        Ok(_) => Err(CodecError(
            "the source replaced the batch writer it was given",
        )),
    }
}

/// Decodes the result of `Source::poll`; records are slices of `buf`.
pub fn decode_polled(buf: &Bytes, interner: &mut StreamInterner) -> Result<Polled, CodecError> {
    let mut rd = Reader::new(buf);
    let polled = match rd.u8()? {
        POLLED_RECORDS => {
            let mut records = Vec::new();
            decode_records_from(&mut rd, buf, interner, &mut records)?;
            Polled::Records(records)
        }
        POLLED_IDLE => Polled::Idle,
        POLLED_FINISHED => Polled::Finished,
        _ => return Err(CodecError("unknown poll result")),
    };
    rd.end()?;
    Ok(polled)
}

/// Encodes the positions handed to `Source::commit`.
pub fn encode_origins(origins: &[Origin]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + origins.len() * 32);
    put_varint(&mut out, origins.len() as u64);
    for o in origins {
        put_bytes(&mut out, o.stream.as_bytes());
        put_zigzag(&mut out, i64::from(o.partition));
        put_zigzag(&mut out, o.offset);
    }
    out
}

pub fn decode_origins(buf: &[u8]) -> Result<Vec<Origin>, CodecError> {
    let mut rd = Reader::new(buf);
    let count = rd.varint()?;
    let mut v = Vec::with_capacity(usize::try_from(count).unwrap_or(0).min(rd.remaining()));
    for _ in 0..count {
        let stream = Arc::from(rd.str()?);
        let partition =
            i32::try_from(rd.zigzag()?).map_err(|_| CodecError("partition out of range"))?;
        let offset = rd.zigzag()?;
        v.push(Origin {
            stream,
            partition,
            offset,
        });
    }
    rd.end()?;
    Ok(v)
}

/// Encodes the checkpoints `Source::commit` returned: a count, then per checkpoint the
/// partition as decimal text (`"0"`, `"-3"`) and the position, each length-prefixed.
pub fn encode_checkpoints(checkpoints: &[Checkpoint]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + checkpoints.len() * 32);
    put_varint(&mut out, checkpoints.len() as u64);
    for c in checkpoints {
        put_bytes(&mut out, c.partition.to_string().as_bytes());
        put_bytes(&mut out, c.position.as_bytes());
    }
    out
}

/// Decodes [`encode_checkpoints`]. A partition must be an `i32` written the way
/// `i32::to_string` writes it (no sign on positives, no leading zeros), so that one partition
/// has one text.
pub fn decode_checkpoints(buf: &[u8]) -> Result<Vec<Checkpoint>, CodecError> {
    let mut rd = Reader::new(buf);
    let count = rd.varint()?;
    let mut v = Vec::with_capacity(usize::try_from(count).unwrap_or(0).min(rd.remaining()));
    for _ in 0..count {
        let partition = parse_partition(rd.str()?)
            .ok_or(CodecError("checkpoint partition is not an i32 in decimal"))?;
        v.push(Checkpoint {
            partition,
            position: rd.str()?.to_owned(),
        });
    }
    rd.end()?;
    Ok(v)
}

/// `text` as an `i32` if it is exactly what `i32::to_string` writes for it.
fn parse_partition(text: &str) -> Option<i32> {
    text.parse::<i32>().ok().filter(|p| p.to_string() == text)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::Header;

    /// Writes `v` as a varint of exactly `slot.len()` bytes, padded with leading zero groups
    /// that carry a continuation bit. `v` must fit in `7 * slot.len()` bits.
    fn put_padded_varint(slot: &mut [u8], v: u64) {
        let last = slot.len() - 1;
        for (i, b) in slot.iter_mut().enumerate() {
            let group = (v.checked_shr(7 * i as u32).unwrap_or(0) & 0x7f) as u8;
            *b = if i == last { group } else { group | 0x80 };
        }
    }

    fn varint_len(v: u64) -> usize {
        (64 - v.leading_zeros() as usize).div_ceil(7).max(1)
    }

    #[test]
    fn a_frame_that_points_outside_its_batch_is_an_error() {
        let full = encode_records(&sample());
        // The first frame follows the stream table (two streams) and precedes four more
        // frames and the trailer.
        let frame = full.len() - 32 - 5 * 56;
        let corrupt = |at: usize, bytes: &[u8]| {
            let mut buf = full.clone();
            buf[frame + at..frame + at + bytes.len()].copy_from_slice(bytes);
            decode_records(&Bytes::from(buf), &mut StreamInterner::default())
        };
        let moved = corrupt(24, &7i64.to_le_bytes()).unwrap();
        assert_eq!(moved[0].origin.offset, 7, "the frame found is the first");
        for (at, bytes, what) in [
            (8, &u64::MAX.to_le_bytes()[..], "value length"),
            (0, &u64::MAX.to_le_bytes()[..], "value start"),
            (16, &1_000_000u64.to_le_bytes()[..], "key length"),
            (44, &[9, 0, 0, 0][..], "stream index"),
            (48, &[0x10, 0, 0, 0][..], "flags"),
        ] {
            assert!(corrupt(at, bytes).is_err(), "{what}");
        }
    }

    #[test]
    fn varints_read_back_whatever_their_length_and_padding() {
        let mut values: Vec<u64> = vec![0, 1, 127, 128, 300, 16_383, 16_384, u64::MAX];
        values.extend((1..64).flat_map(|bit| [(1u64 << bit) - 1, 1u64 << bit]));
        values.push(1_717_977_600_000); // a timestamp in milliseconds
        for v in values {
            // Alone (the word read would pass the end), then followed by other bytes.
            for tail in [&[][..], &[0xff; 12][..]] {
                let mut buf = Vec::new();
                put_varint(&mut buf, v);
                buf.extend_from_slice(tail);
                let mut rd = Reader::new(&buf);
                assert_eq!(rd.varint().unwrap(), v, "{v} before {} bytes", tail.len());
                assert_eq!(rd.remaining(), tail.len(), "{v}");
            }
            // Padded to a fixed width, as a patched length is.
            let width = varint_len(v).max(4);
            if width <= 10 && (width == 10 || v >> (7 * width) == 0) {
                let mut buf = vec![0; width];
                put_padded_varint(&mut buf, v);
                buf.extend_from_slice(&[0xff; 8]);
                let mut rd = Reader::new(&buf);
                assert_eq!(rd.varint().unwrap(), v, "{v} padded to {width}");
                assert_eq!(rd.remaining(), 8);
            }
        }
        let eleven = [0x80u8; 11];
        assert!(Reader::new(&eleven).varint().is_err());
        assert!(Reader::new(&eleven[..3]).varint().is_err());
    }

    fn encode_records(records: &[Record]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_records_into(&mut out, records);
        out
    }

    fn decode_records(
        buf: &Bytes,
        interner: &mut StreamInterner,
    ) -> Result<Vec<Record>, CodecError> {
        let mut records = Vec::new();
        let mut rd = Reader::new(buf);
        decode_records_from(&mut rd, buf, interner, &mut records).and_then(|()| rd.end())?;
        Ok(records)
    }

    fn encode_polled(polled: &Polled) -> Vec<u8> {
        let mut out = Vec::new();
        encode_polled_into(&mut out, polled);
        out
    }

    fn origin(stream: &str, partition: i32, offset: i64) -> Origin {
        Origin::new(Arc::from(stream), partition, offset)
    }

    /// Records with every field and edge case a batch can carry.
    pub(crate) fn sample() -> Vec<Record> {
        let mut full = Record::new(&b"{\"a\":1}"[..], origin("audit", 3, 1 << 40));
        full.key = Some(Bytes::from_static(b"k-1"));
        full.timestamp = Some(1_700_000_000_123);
        full.headers = vec![
            Header::new("trace", &b"abc"[..]),
            Header {
                key: "empty".into(),
                value: None,
            },
            Header::new("trace", Vec::<u8>::new()),
        ];
        let mut bad = Record::new(vec![0xff, 0xfe, 0x00], origin("other", -1, -5));
        bad.decode_error = Some("not JSON".into());
        bad.timestamp = Some(-1);
        vec![
            full,
            Record::new(Bytes::new(), origin("audit", 3, (1 << 40) + 1)),
            bad,
            Record::new(vec![b'x'; 70_000], origin("audit", 0, 0)),
            Record::new(&b"last"[..], origin("other", i32::MAX, i64::MAX)),
        ]
    }

    #[test]
    fn batches_round_trip_exactly() {
        let records = sample();
        let buf = Bytes::from(encode_records(&records));
        let decoded = decode_records(&buf, &mut StreamInterner::default()).unwrap();
        assert_eq!(decoded, records);
    }

    #[test]
    fn decoded_payloads_are_slices_of_the_buffer() {
        let buf = Bytes::from(encode_records(&sample()));
        let range = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len();
        let decoded = decode_records(&buf, &mut StreamInterner::default()).unwrap();
        for r in &decoded {
            if !r.value.is_empty() {
                assert!(
                    range.contains(&(r.value.as_ptr() as usize)),
                    "value was copied"
                );
            }
            if let Some(k) = &r.key {
                assert!(range.contains(&(k.as_ptr() as usize)), "key was copied");
            }
        }
    }

    #[test]
    fn streams_are_shared_within_and_across_batches() {
        let records = sample();
        let mut interner = StreamInterner::default();
        let a = decode_records(&Bytes::from(encode_records(&records)), &mut interner).unwrap();
        let b = decode_records(&Bytes::from(encode_records(&records)), &mut interner).unwrap();
        assert!(Arc::ptr_eq(&a[0].origin.stream, &a[1].origin.stream));
        assert!(Arc::ptr_eq(&a[0].origin.stream, &b[3].origin.stream));
    }

    #[test]
    fn framing_is_fixed_per_record() {
        let records: Vec<Record> = (0..1000)
            .map(|i| {
                Record::new(
                    vec![b'v'; 350],
                    origin("assessment.events", 0, 1_000_000 + i),
                )
            })
            .collect();
        let payload: usize = records.iter().map(|r| r.value.len()).sum();
        let framing = encode_records(&records).len() - payload;
        // Magic, one stream's name and entry, 56 bytes a record, the trailer.
        assert_eq!(framing, 4 + 17 + 16 + 1000 * 56 + 32);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let full = encode_records(&sample());
        for cut in 0..full.len() {
            let buf = Bytes::copy_from_slice(&full[..cut]);
            assert!(
                decode_records(&buf, &mut StreamInterner::default()).is_err(),
                "cut at {cut}"
            );
        }
        let mut longer = full.clone();
        longer.push(0);
        assert!(decode_records(&Bytes::from(longer), &mut StreamInterner::default()).is_err());
    }

    #[test]
    fn absurd_counts_do_not_allocate() {
        let mut v2 = b"SLB2".to_vec();
        for word in [4, u64::MAX, 4, 0] {
            v2.extend_from_slice(&word.to_le_bytes());
        }
        assert!(decode_records(&Bytes::from(v2), &mut StreamInterner::default()).is_err());
        let mut outcomes = Vec::new();
        put_varint(&mut outcomes, u64::MAX);
        outcomes.push(OUTCOMES_ALL_DELIVERED);
        assert!(decode_outcomes(&outcomes).is_err());
    }

    #[test]
    fn outcomes_round_trip() {
        let all = vec![Outcome::Delivered; 1000];
        let enc = encode_outcomes(&all);
        assert_eq!(enc.len(), 3);
        assert_eq!(decode_outcomes(&enc).unwrap(), all);

        let mixed = vec![
            Outcome::Delivered,
            Outcome::Retry("es 429".into()),
            Outcome::reject("splunk.hec.code=6", "Invalid data format"),
            Outcome::Unavailable("es 503 on a later request".into()),
            Outcome::Delivered,
        ];
        assert_eq!(decode_outcomes(&encode_outcomes(&mixed)).unwrap(), mixed);
        assert_eq!(decode_outcomes(&encode_outcomes(&[])).unwrap(), vec![]);
    }

    #[test]
    fn poll_results_round_trip() {
        let mut interner = StreamInterner::default();
        for polled in [Polled::Idle, Polled::Finished, Polled::Records(sample())] {
            let buf = Bytes::from(encode_polled(&polled));
            let back = decode_polled(&buf, &mut interner).unwrap();
            assert_eq!(format!("{back:?}"), format!("{polled:?}"));
        }
        assert!(decode_polled(&Bytes::from_static(&[9]), &mut interner).is_err());
    }

    /// Writes `sample()` through a batch writer: the records without headers or decode error
    /// in place (a key, an empty value, 70,000 bytes, stream switches), the others whole.
    fn write_sample(w: &mut BatchWriter<'_>) -> Vec<Record> {
        let mut records = sample();
        records[1].key = Some(Bytes::from_static(b"k-2"));
        for r in &records {
            if r.headers.is_empty() && r.decode_error.is_none() {
                let head = crate::RecordHead {
                    stream: &r.origin.stream,
                    partition: r.origin.partition,
                    offset: r.origin.offset,
                    timestamp: r.timestamp,
                    key: r.key.as_deref(),
                };
                let value = r.value.clone();
                w.push_with(head, |b| b.extend_from_slice(&value));
            } else {
                w.push(r.clone());
            }
        }
        records
    }

    #[test]
    fn a_poll_written_in_place_decodes_to_the_records_written() {
        let mut interner = StreamInterner::default();
        let mut out = vec![0xAA; 3];
        let mut w = poll_writer(&mut out);
        let expected = write_sample(&mut w);
        finish_poll(w, PollEnd::More).unwrap();
        assert_eq!(
            &out[..3],
            &[0xAA; 3],
            "what was in the buffer before is kept"
        );
        let buf = Bytes::from(out).slice(3..);
        match decode_polled(&buf, &mut interner).unwrap() {
            Polled::Records(back) => assert_eq!(back, expected),
            other => panic!("records expected, got {other:?}"),
        }
        // The same records, collected: one source, both paths, the same batch.
        let mut w = BatchWriter::new();
        write_sample(&mut w);
        assert_eq!(
            format!("{:?}", w.into_polled(PollEnd::More)),
            format!("{:?}", Polled::Records(expected))
        );
    }

    #[test]
    fn an_empty_written_poll_is_idle_or_finished() {
        let mut interner = StreamInterner::default();
        for (end, want) in [(PollEnd::More, "Idle"), (PollEnd::Finished, "Finished")] {
            let mut out = Vec::new();
            finish_poll(poll_writer(&mut out), end).unwrap();
            let back = decode_polled(&Bytes::from(out), &mut interner).unwrap();
            assert_eq!(format!("{back:?}"), want);
        }
    }

    #[test]
    fn a_swapped_writer_fails_the_poll_instead_of_losing_its_records() {
        let mut out = Vec::new();
        let mut w = poll_writer(&mut out);
        let mut swapped = BatchWriter::new();
        swapped.push(sample().remove(0));
        let _original = std::mem::replace(&mut w, swapped);
        assert!(finish_poll(w, PollEnd::More).is_err());
    }

    #[test]
    fn origins_and_checkpoints_round_trip() {
        let origins = vec![origin("a", 0, 5), origin("b", -3, i64::MIN)];
        assert_eq!(decode_origins(&encode_origins(&origins)).unwrap(), origins);
        let cps = vec![
            Checkpoint {
                partition: 0,
                position: "1024".into(),
            },
            Checkpoint {
                partition: i32::MIN,
                position: "é".into(),
            },
            Checkpoint {
                partition: i32::MAX,
                position: String::new(),
            },
        ];
        assert_eq!(decode_checkpoints(&encode_checkpoints(&cps)).unwrap(), cps);
    }

    /// Checkpoints in the wire format written by hand, the partition as any text, so that the
    /// test does not depend on `encode_checkpoints`.
    fn text_checkpoints(cps: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint(&mut out, cps.len() as u64);
        for (partition, position) in cps {
            put_bytes(&mut out, partition.as_bytes());
            put_bytes(&mut out, position.as_bytes());
        }
        out
    }

    #[test]
    fn checkpoint_partitions_cross_as_decimal_text() {
        let cps = [("0", "1024"), ("-3", "a"), ("17", "\"etag\"")];
        let encoded = encode_checkpoints(&[
            Checkpoint {
                partition: 0,
                position: "1024".into(),
            },
            Checkpoint {
                partition: -3,
                position: "a".into(),
            },
            Checkpoint {
                partition: 17,
                position: "\"etag\"".into(),
            },
        ]);
        assert_eq!(encoded, text_checkpoints(&cps));
        let decoded = decode_checkpoints(&encoded).unwrap();
        let partitions: Vec<i32> = decoded.iter().map(|c| c.partition).collect();
        assert_eq!(partitions, [0, -3, 17]);
    }

    #[test]
    fn a_checkpoint_partition_that_is_not_an_i32_is_a_decode_error() {
        let not_i32 = CodecError("checkpoint partition is not an i32 in decimal");
        for partition in [
            "file:/var/log/a.jsonl",
            "",
            " 1",
            "+1",
            "01",
            "-0",
            "2147483648",
            "1.0",
        ] {
            let buf = text_checkpoints(&[("0", "1"), (partition, "2")]);
            assert_eq!(
                decode_checkpoints(&buf),
                Err(not_i32.clone()),
                "{partition:?}"
            );
        }
    }

    #[test]
    fn transform_results_round_trip_with_values_as_slices_of_the_buffer() {
        let applied = vec![
            Applied::Kept,
            Applied::Changed(Bytes::from_static(r#"{"tag":"é"}"#.as_bytes())),
            Applied::Skipped,
            Applied::Failed(TransformError::other(
                "tag.refused",
                "refused: line 1\nline 2",
            )),
            Applied::Failed(TransformError::blocked("set", "a.b")),
        ];
        let mut out = Vec::new();
        encode_applied(&mut out, &applied);
        let buf = Bytes::from(out);
        let back = decode_applied(&buf).unwrap();
        assert_eq!(back[..4], applied[..4]);
        let Applied::Failed(e) = &back[4] else {
            panic!("{back:?}")
        };
        assert_eq!(
            (e.kind(), e.to_string().as_str()),
            (
                "transform_error",
                "cannot set `a.b`: a parent is not an object"
            )
        );
        let Applied::Changed(v) = &back[1] else {
            panic!("{back:?}")
        };
        assert!(buf.as_ptr_range().contains(&v.as_ptr()), "not a copy");

        let mut kept = Vec::new();
        encode_applied(&mut kept, &[Applied::Kept, Applied::Kept, Applied::Kept]);
        assert_eq!(kept.len(), 2, "one byte for a batch kept as it was");
        assert_eq!(
            decode_applied(&Bytes::from(kept)).unwrap(),
            vec![Applied::Kept; 3]
        );
        for bad in [&[1u8, 1, 7][..], &[2, 1, 1, 5], &[1, 2], &[0, 0, 0]] {
            assert!(
                decode_applied(&Bytes::copy_from_slice(bad)).is_err(),
                "{bad:?}"
            );
        }
    }
}
