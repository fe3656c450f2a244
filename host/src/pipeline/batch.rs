//! A batch on its way from the source loop to one sink.
//!
//! Several sinks of a fan-out take the same records, so a batch holds either records of its
//! own or some records of a poll shared with the other sinks ([`Poll`]): a record routed to
//! three sinks is then neither copied nor dropped three times, and no sink's answer can change
//! what another sink sends. Whatever needs a record of its own (a dead letter, a retry subset,
//! a record marked for the fallback) copies it out of the shared poll ([`Batch::into_records`]);
//! that happens only off the path where every record is delivered.

use std::sync::Arc;

use sluice_sdk::{Record, RecordRef};

/// The records of one poll, after the pipeline's transforms, shared by the sinks that take
/// them.
pub type Poll = Arc<Vec<Record>>;

/// Records of a batch: a run of its own, or positions in a shared poll, in source order.
enum Part {
    Own(Vec<Record>),
    Range(Poll, std::ops::Range<usize>),
    At(Poll, Vec<u32>),
}

#[cfg(test)]
impl Part {
    fn len(&self) -> usize {
        match self {
            Part::Own(v) => v.len(),
            Part::Range(_, r) => r.len(),
            Part::At(_, at) => at.len(),
        }
    }
}

/// Iterates a batch's records in order.
pub struct Iter<'a> {
    parts: std::slice::Iter<'a, Part>,
    cur: Cur<'a>,
}

enum Cur<'a> {
    Run(std::slice::Iter<'a, Record>),
    At(&'a [Record], std::slice::Iter<'a, u32>),
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a Record;

    fn next(&mut self) -> Option<&'a Record> {
        loop {
            let next = match &mut self.cur {
                Cur::Run(it) => it.next(),
                Cur::At(poll, it) => it.next().map(|&i| &poll[i as usize]),
            };
            if next.is_some() {
                return next;
            }
            self.cur = match self.parts.next()? {
                Part::Own(v) => Cur::Run(v.iter()),
                Part::Range(poll, r) => Cur::Run(poll[r.clone()].iter()),
                Part::At(poll, at) => Cur::At(poll, at.iter()),
            };
        }
    }
}

/// Records of one sink's batch, in source order.
#[derive(Default)]
pub struct Batch {
    parts: Vec<Part>,
    len: usize,
}

impl From<Vec<Record>> for Batch {
    fn from(records: Vec<Record>) -> Self {
        let mut b = Batch::default();
        b.push_own(records);
        b
    }
}

impl Batch {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends records of its own.
    pub fn push_own(&mut self, records: Vec<Record>) {
        if records.is_empty() {
            return;
        }
        self.len += records.len();
        self.parts.push(Part::Own(records));
    }

    /// Appends one record of its own, to the last run of its own if that is the last part;
    /// a new run is made with room for `room` records.
    pub fn push_record(&mut self, r: Record, room: usize) {
        self.len += 1;
        if let Some(Part::Own(v)) = self.parts.last_mut() {
            v.push(r);
        } else {
            let mut v = Vec::with_capacity(room.max(1));
            v.push(r);
            self.parts.push(Part::Own(v));
        }
    }

    /// Appends records `range` of a shared poll.
    pub fn push_range(&mut self, poll: &Poll, range: std::ops::Range<usize>) {
        if range.is_empty() {
            return;
        }
        self.len += range.len();
        self.parts.push(Part::Range(poll.clone(), range));
    }

    /// Appends the records of a shared poll at these positions (increasing).
    pub fn push_at(&mut self, poll: &Poll, at: Vec<u32>) {
        if at.is_empty() {
            return;
        }
        self.len += at.len();
        self.parts.push(Part::At(poll.clone(), at));
    }

    /// The records, in order.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            parts: self.parts.iter(),
            cur: Cur::Run([].iter()),
        }
    }

    /// Borrowed views of the records, as a sink takes them.
    pub fn views(&self) -> Vec<RecordRef<'_>> {
        let mut out = Vec::with_capacity(self.len);
        for p in &self.parts {
            match p {
                Part::Own(v) => out.extend(v.iter().map(Record::view)),
                Part::Range(poll, r) => out.extend(poll[r.clone()].iter().map(Record::view)),
                Part::At(poll, at) => out.extend(at.iter().map(|&i| poll[i as usize].view())),
            }
        }
        out
    }

    /// The records as this batch's own: moved where they are, copied out of shared polls
    /// (each copy shares the payload bytes).
    pub fn into_records(self) -> Vec<Record> {
        let mut parts = self.parts;
        if let [Part::Own(v)] = parts.as_mut_slice() {
            return std::mem::take(v);
        }
        let mut out = Vec::with_capacity(self.len);
        for p in parts {
            match p {
                Part::Own(v) => out.extend(v),
                Part::Range(poll, r) => out.extend_from_slice(&poll[r]),
                Part::At(poll, at) => out.extend(at.iter().map(|&i| poll[i as usize].clone())),
            }
        }
        out
    }

    /// Splits the batch in two at `at` records.
    pub fn split_off(self, at: usize) -> (Batch, Batch) {
        let mut records = self.into_records();
        let tail = records.split_off(at.min(records.len()));
        (Batch::from(records), Batch::from(tail))
    }

    /// Number of parts, for tests.
    #[cfg(test)]
    fn parts(&self) -> usize {
        debug_assert_eq!(self.len, self.parts.iter().map(Part::len).sum::<usize>());
        self.parts.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::Origin;

    fn rec(off: i64) -> Record {
        Record::new(format!("{{\"n\":{off}}}"), Origin::new("t".into(), 0, off))
    }

    fn offsets<'a>(it: impl Iterator<Item = &'a Record>) -> Vec<i64> {
        it.map(|r| r.origin.offset).collect()
    }

    #[test]
    fn parts_read_in_the_order_they_were_added() {
        let poll: Poll = Arc::new((10..20).map(rec).collect());
        let mut b = Batch::from(vec![rec(1), rec(2)]);
        b.push_range(&poll, 0..3);
        b.push_at(&poll, vec![4, 7, 9]);
        b.push_record(rec(30), 2);
        b.push_record(rec(31), 2);
        b.push_range(&poll, 5..5);
        b.push_at(&poll, Vec::new());
        assert_eq!(b.len(), 10);
        assert_eq!(
            b.parts(),
            4,
            "empty parts are not kept, single records join a run"
        );
        let want = vec![1, 2, 10, 11, 12, 14, 17, 19, 30, 31];
        assert_eq!(offsets(b.iter()), want);
        let views: Vec<i64> = b.views().iter().map(|v| v.origin().offset).collect();
        assert_eq!(views, want);
        let (head, tail) = b.split_off(4);
        assert_eq!(offsets(head.iter()), vec![1, 2, 10, 11]);
        assert_eq!(offsets(tail.iter()), vec![12, 14, 17, 19, 30, 31]);
        let owned = tail.into_records();
        assert_eq!(owned[3].value, poll[9].value);
        assert_eq!(poll.len(), 10, "the shared poll is untouched");
    }

    #[test]
    fn a_batch_of_its_own_records_gives_them_back_unmoved() {
        let records = vec![rec(1), rec(2), rec(3)];
        let at = records.as_ptr();
        let back = Batch::from(records).into_records();
        assert_eq!(back.as_ptr(), at);
        assert_eq!(offsets(back.iter()), vec![1, 2, 3]);
    }
}
