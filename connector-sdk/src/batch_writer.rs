//! Where a source writes the records of one poll ([`Source::poll_into`](crate::Source::poll_into)).
//!
//! Built in, the writer collects [`Record`]s whose values share one buffer. In a plugin it
//! encodes each record straight into the buffer that crosses to the host, so a source that
//! writes its values in place builds no `Record` of its own and copies nothing twice.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;

use crate::plugin::codec::BatchEncoder;
use crate::{Origin, OriginRef, Polled, Record};

/// How a [`Source::poll_into`](crate::Source::poll_into) ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PollEnd {
    /// More may come: the host polls again (having written nothing means idle).
    More,
    /// The source is exhausted. Records written by the same call are still delivered; a
    /// finished source answers `Finished` to every later poll.
    Finished,
}

/// What a record written in place carries besides its value.
#[derive(Clone, Copy, Debug)]
pub struct RecordHead<'a> {
    /// The origin's stream, shared by the records that name it.
    pub stream: &'a Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: Option<i64>,
    pub key: Option<&'a [u8]>,
}

impl RecordHead<'_> {
    fn origin(&self) -> OriginRef<'_> {
        OriginRef {
            stream: self.stream,
            partition: self.partition,
            offset: self.offset,
        }
    }
}

/// The records of one poll, in source order.
pub struct BatchWriter<'a> {
    mode: Mode<'a>,
}

enum Mode<'a> {
    Collect(Collect),
    Encode {
        enc: BatchEncoder<'a>,
        /// Where the poll result starts in the buffer: an empty result is rewritten there.
        start: usize,
    },
}

/// Records pushed whole, and records written in place into one buffer.
#[derive(Default)]
struct Collect {
    whole: Vec<Record>,
    placed: Vec<Placed>,
    buf: Vec<u8>,
}

/// A record written in place: its parts, its value's and key's range in the buffer, and its
/// position in the batch.
struct Placed {
    at: usize,
    value: Range<usize>,
    key: Option<Range<usize>>,
    stream: Arc<str>,
    partition: i32,
    offset: i64,
    timestamp: Option<i64>,
    /// The writer vouched that the value is one JSON text.
    json: bool,
}

impl Default for BatchWriter<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> BatchWriter<'a> {
    /// A writer that collects records ([`into_polled`](Self::into_polled)).
    pub fn new() -> Self {
        BatchWriter {
            mode: Mode::Collect(Collect::default()),
        }
    }

    /// A writer that encodes with `enc`, for a poll result that starts at `start` in the
    /// encoder's buffer (see [`crate::plugin::codec::poll_writer`]).
    pub(crate) fn encoding(enc: BatchEncoder<'a>, start: usize) -> Self {
        BatchWriter {
            mode: Mode::Encode { enc, start },
        }
    }

    /// Records written so far.
    pub fn len(&self) -> usize {
        match &self.mode {
            Mode::Collect(c) => c.whole.len() + c.placed.len(),
            Mode::Encode { enc, .. } => enc.count() as usize,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes room for `records` more records with `bytes` of values and keys in all.
    pub fn reserve(&mut self, records: usize, bytes: usize) {
        match &mut self.mode {
            Mode::Collect(c) => {
                c.placed.reserve(records);
                c.buf.reserve(bytes);
            }
            Mode::Encode { enc, .. } => enc.reserve(records, bytes),
        }
    }

    /// Appends a whole record.
    pub fn push(&mut self, record: Record) {
        match &mut self.mode {
            Mode::Collect(c) => c.whole.push(record),
            Mode::Encode { enc, .. } => enc.record(&record),
        }
    }

    /// Appends a record whose value `write` appends to the vector it is given: the value is
    /// written once, where it will be read from.
    pub fn push_with(&mut self, head: RecordHead<'_>, write: impl FnOnce(&mut Vec<u8>)) {
        self.place(head, false, write);
    }

    /// [`push_with`](Self::push_with) for a value the source built as one JSON text (from its
    /// own parts, never from input it has not checked): the record comes out marked as checked
    /// ([`Record::mark_json_checked`]), so the sinks that embed it as JSON do not check it
    /// again. Across the plugin boundary the mark is not carried: the host checks there.
    pub fn push_json_with(&mut self, head: RecordHead<'_>, write: impl FnOnce(&mut Vec<u8>)) {
        self.place(head, true, write);
    }

    fn place(&mut self, head: RecordHead<'_>, json: bool, write: impl FnOnce(&mut Vec<u8>)) {
        match &mut self.mode {
            Mode::Collect(c) => {
                let key = head.key.map(|k| {
                    let start = c.buf.len();
                    c.buf.extend_from_slice(k);
                    start..c.buf.len()
                });
                let start = c.buf.len();
                write(&mut c.buf);
                c.placed.push(Placed {
                    at: c.whole.len() + c.placed.len(),
                    value: start..c.buf.len(),
                    key,
                    stream: head.stream.clone(),
                    partition: head.partition,
                    offset: head.offset,
                    timestamp: head.timestamp,
                    json,
                });
            }
            Mode::Encode { enc, .. } => enc.record_with(
                head.origin(),
                Some(head.stream),
                head.timestamp,
                head.key,
                write,
            ),
        }
    }

    /// The records written, as [`Source::poll`](crate::Source::poll) returns them.
    pub fn into_polled(self, end: PollEnd) -> Polled {
        let records = match self.into_parts() {
            Ok(records) => records,
            // An encoding writer's records are in its buffer: they are completed there, as
            // `codec::finish_poll` would, and this answer carries none of them.
            Err((enc, _)) => {
                enc.finish();
                Vec::new()
            }
        };
        match (records.is_empty(), end) {
            (true, PollEnd::Finished) => Polled::Finished,
            (true, PollEnd::More) => Polled::Idle,
            (false, _) => Polled::Records(records),
        }
    }

    /// The collected records, or the encoder and where its poll result starts.
    pub(crate) fn into_parts(self) -> Result<Vec<Record>, (BatchEncoder<'a>, usize)> {
        match self.mode {
            Mode::Collect(c) => Ok(c.into_records()),
            Mode::Encode { enc, start } => Err((enc, start)),
        }
    }
}

impl Collect {
    fn into_records(self) -> Vec<Record> {
        if self.placed.is_empty() {
            return self.whole;
        }
        let all = Bytes::from(self.buf);
        let make = |p: Placed| {
            let mut r = Record {
                key: p.key.map(|k| all.slice(k)),
                value: all.slice(p.value),
                headers: Vec::new(),
                timestamp: p.timestamp,
                origin: Origin::new(p.stream, p.partition, p.offset),
                decode_error: None,
                json_checked: Default::default(),
            };
            if p.json {
                r.mark_json_checked();
            }
            r
        };
        if self.whole.is_empty() {
            return self.placed.into_iter().map(make).collect();
        }
        let mut out = Vec::with_capacity(self.whole.len() + self.placed.len());
        let mut whole = self.whole.into_iter();
        for p in self.placed {
            while out.len() < p.at {
                match whole.next() {
                    Some(r) => out.push(r),
                    None => break,
                }
            }
            out.push(make(p));
        }
        out.extend(whole);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_written_in_place_share_one_buffer_and_keep_their_order() {
        let stream: Arc<str> = Arc::from("gen");
        let mut w = BatchWriter::new();
        w.reserve(3, 64);
        let head = |offset, key| RecordHead {
            stream: &stream,
            partition: 2,
            offset,
            timestamp: Some(1_700_000_000_000 + offset),
            key,
        };
        w.push_with(head(7, None), |b| b.extend_from_slice(b"{\"seq\":7}"));
        w.push(Record::new(
            &b"pushed"[..],
            Origin::new(stream.clone(), 2, 8),
        ));
        w.push_with(head(9, Some(&b"k9"[..])), |b| {
            b.extend_from_slice(b"{\"seq\":9}")
        });
        assert_eq!(w.len(), 3);
        let Polled::Records(records) = w.into_polled(PollEnd::More) else {
            panic!("records expected");
        };
        let values: Vec<&[u8]> = records.iter().map(|r| &r.value[..]).collect();
        assert_eq!(
            values,
            [&b"{\"seq\":7}"[..], &b"pushed"[..], &b"{\"seq\":9}"[..]]
        );
        assert_eq!(records[0].key, None);
        assert_eq!(records[2].key.as_deref(), Some(&b"k9"[..]));
        assert_eq!(records[2].timestamp, Some(1_700_000_000_009));
        assert_eq!(records[1].timestamp, None);
        let offsets: Vec<i64> = records.iter().map(|r| r.origin.offset).collect();
        assert_eq!(offsets, [7, 8, 9]);
        assert!(Arc::ptr_eq(&records[0].origin.stream, &stream));
        // The two values written in place are neighbours in one allocation.
        let gap = records[2].value.as_ptr() as usize - records[0].value.as_ptr() as usize;
        assert_eq!(gap, records[0].value.len() + 2);
    }

    #[test]
    fn a_value_written_as_json_comes_out_checked_and_no_other() {
        let stream: Arc<str> = Arc::from("gen");
        let head = |offset| RecordHead {
            stream: &stream,
            partition: 0,
            offset,
            timestamp: None,
            key: None,
        };
        let mut w = BatchWriter::new();
        w.push_json_with(head(1), |b| b.extend_from_slice(b"{\"seq\":1}"));
        w.push_with(head(2), |b| b.extend_from_slice(b"{\"seq\":2}"));
        w.push(Record::new(&b"{}"[..], Origin::new(stream.clone(), 0, 3)));
        let Polled::Records(records) = w.into_polled(PollEnd::More) else {
            panic!("records expected");
        };
        let checked: Vec<bool> = records.iter().map(Record::is_checked_json).collect();
        assert_eq!(checked, [true, false, false]);
    }

    #[test]
    fn nothing_written_is_idle_or_finished() {
        assert!(matches!(
            BatchWriter::new().into_polled(PollEnd::More),
            Polled::Idle
        ));
        assert!(matches!(
            BatchWriter::new().into_polled(PollEnd::Finished),
            Polled::Finished
        ));
        let mut w = BatchWriter::new();
        w.push(Record::new(&b"last"[..], Origin::new(Arc::from("s"), 0, 0)));
        assert!(
            matches!(w.into_polled(PollEnd::Finished), Polled::Records(r) if r.len() == 1),
            "records written by a finishing poll are still delivered"
        );
    }
}
