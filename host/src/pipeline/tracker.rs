//! Per-partition contiguous offset tracking.
//!
//! A position may be committed only when the record at it and every earlier record of the
//! same partition are done (delivered, filtered out or dead-lettered). A failure at offset 5
//! holds the commit at 4 even when 6..9 succeeded.
//!
//! A record routed to several sinks waits for an outcome from each: it is done when every one
//! of them delivered or dead-lettered it (or its fallback took it).
//!
//! Offsets must increase within a partition for the whole of a run. Every source keeps to
//! that, the Kafka source included: after a rebalance it skips what it already handed out,
//! so a re-assigned partition continues above its last offset. A repeated or lower offset is
//! therefore a source bug (typically a plugin's), and accepting it would mean forgetting
//! records still in flight and committing past them: it is an error that fails the run.

use std::collections::VecDeque;
use std::sync::Arc;

use sluice_sdk::Origin;

struct Partition {
    stream: Arc<str>,
    partition: i32,
    /// Registered, not yet committable records, in offset order, with the number of
    /// outcomes each still waits for (0: done).
    pending: VecDeque<(i64, u32)>,
    last_registered: Option<i64>,
    /// Highest offset whose prefix is all done, not yet handed out by `take_commits`.
    ready: Option<i64>,
    /// Entries ever popped off the front of `pending`, and the index counted the same way of
    /// the entry found last: a sink answers a batch in order, so the next record it acks is
    /// usually the one after (found without a search).
    popped: u64,
    hint: u64,
}

/// A source handed out an offset at or below one it handed out before in the same partition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "stream `{stream}` partition {partition}: offset {offset} came after offset {last} \
     ({in_flight} record(s) of the partition in flight); offsets must increase within a \
     partition, so the run stops and nothing is committed past the records in flight"
)]
pub struct OffsetOrderError {
    pub stream: String,
    pub partition: i32,
    pub offset: i64,
    pub last: i64,
    pub in_flight: usize,
}

/// Tracks in-flight records of every partition of one pipeline.
#[derive(Default)]
pub struct Tracker {
    parts: Vec<Partition>,
    last: usize,
}

impl Tracker {
    fn index(&mut self, o: &Origin) -> Option<usize> {
        let hit = |p: &Partition| {
            p.partition == o.partition
                && (Arc::ptr_eq(&p.stream, &o.stream) || p.stream == o.stream)
        };
        if self.parts.get(self.last).is_some_and(hit) {
            return Some(self.last);
        }
        let i = self.parts.iter().position(hit)?;
        self.last = i;
        Some(i)
    }

    /// Records a record that came out of the source. An offset at or below the last one
    /// registered for its partition is refused: nothing is registered and nothing that is in
    /// flight is forgotten.
    pub fn register(&mut self, o: &Origin) -> Result<(), OffsetOrderError> {
        let i = match self.index(o) {
            Some(i) => i,
            None => {
                self.parts.push(Partition {
                    stream: o.stream.clone(),
                    partition: o.partition,
                    pending: VecDeque::new(),
                    last_registered: None,
                    ready: None,
                    popped: 0,
                    hint: 0,
                });
                self.last = self.parts.len() - 1;
                self.last
            }
        };
        let p = &mut self.parts[i];
        if let Some(last) = p.last_registered.filter(|&l| o.offset <= l) {
            return Err(OffsetOrderError {
                stream: o.stream.to_string(),
                partition: o.partition,
                offset: o.offset,
                last,
                in_flight: p.pending.len(),
            });
        }
        p.last_registered = Some(o.offset);
        p.pending.push_back((o.offset, 1));
        Ok(())
    }

    /// Where a registered record is: partition and index in its pending queue.
    fn find(&mut self, o: &Origin) -> Option<(usize, usize)> {
        let i = self.index(o)?;
        let p = &mut self.parts[i];
        // Records mostly finish in the order they were registered: try the front, then the
        // entry after the one found last.
        let next = (p.hint + 1).wrapping_sub(p.popped) as usize;
        let pos = if p.pending.front().is_some_and(|e| e.0 == o.offset) {
            0
        } else if p.pending.get(next).is_some_and(|e| e.0 == o.offset) {
            next
        } else {
            p.pending.binary_search_by_key(&o.offset, |e| e.0).ok()?
        };
        p.hint = p.popped + pos as u64;
        Some((i, pos))
    }

    /// A registered record waits for `n` more outcomes (it was routed to `n + 1` sinks).
    /// Called before any of them can answer.
    pub fn expect_more(&mut self, o: &Origin, n: u32) {
        if let Some((i, pos)) = self.find(o) {
            let e = &mut self.parts[i].pending[pos].1;
            if *e > 0 {
                *e += n;
            }
        }
    }

    /// One outcome for a record; it is done when none is awaited any more.
    pub fn ack(&mut self, o: &Origin) {
        let Some((i, pos)) = self.find(o) else { return };
        let p = &mut self.parts[i];
        let waits = &mut p.pending[pos].1;
        *waits = waits.saturating_sub(1);
        if pos == 0 && *waits == 0 {
            while let Some(&(off, 0)) = p.pending.front() {
                p.ready = Some(off);
                p.pending.pop_front();
                p.popped += 1;
            }
        }
    }

    /// Partitions whose committable position moved since the last call, with that position.
    pub fn take_commits(&mut self) -> Vec<Origin> {
        self.parts
            .iter_mut()
            .filter_map(|p| {
                p.ready
                    .take()
                    .map(|off| Origin::new(p.stream.clone(), p.partition, off))
            })
            .collect()
    }

    /// Records registered and not yet done, over all partitions.
    pub fn in_flight(&self) -> usize {
        self.parts.iter().map(|p| p.pending.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(p: i32, off: i64) -> Origin {
        Origin::new("t".into(), p, off)
    }

    #[test]
    fn commit_holds_at_the_first_gap() {
        let mut t = Tracker::default();
        for off in 0..10 {
            t.register(&o(0, off)).unwrap();
        }
        for off in [0, 1, 2, 3, 4, 6, 7, 8, 9] {
            t.ack(&o(0, off));
        }
        assert_eq!(t.take_commits(), vec![o(0, 4)]);
        assert!(t.take_commits().is_empty());
        t.ack(&o(0, 5));
        assert_eq!(t.take_commits(), vec![o(0, 9)]);
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn a_record_routed_to_several_sinks_waits_for_each() {
        let mut t = Tracker::default();
        for off in 0..3 {
            t.register(&o(0, off)).unwrap();
        }
        t.expect_more(&o(0, 0), 2);
        t.expect_more(&o(0, 1), 1);
        t.ack(&o(0, 0));
        t.ack(&o(0, 1));
        t.ack(&o(0, 2));
        assert!(t.take_commits().is_empty(), "0 waits for two more sinks");
        t.ack(&o(0, 0));
        t.ack(&o(0, 0));
        assert_eq!(t.take_commits(), vec![o(0, 0)], "1 waits for one more");
        t.ack(&o(0, 1));
        assert_eq!(t.take_commits(), vec![o(0, 2)]);
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn partitions_are_independent() {
        let mut t = Tracker::default();
        t.register(&o(0, 10)).unwrap();
        t.register(&o(1, 3)).unwrap();
        t.ack(&o(1, 3));
        assert_eq!(t.take_commits(), vec![o(1, 3)]);
        // A lower offset in another partition is no rewind.
        t.register(&o(1, 4)).unwrap();
        t.ack(&o(0, 10));
        assert_eq!(t.take_commits(), vec![o(0, 10)]);
    }

    #[test]
    fn a_repeated_or_lower_offset_is_refused_and_forgets_nothing() {
        let mut t = Tracker::default();
        for off in 3..6 {
            t.register(&o(0, off)).unwrap();
        }
        t.ack(&o(0, 3));
        for bad in [5, 4, 0] {
            let e = t.register(&o(0, bad)).unwrap_err();
            assert_eq!((e.partition, e.offset, e.last, e.in_flight), (0, bad, 5, 2));
            assert!(e
                .to_string()
                .contains(&format!("offset {bad} came after offset 5")));
        }
        // The records in flight before the refused ones still hold the commit.
        assert_eq!(t.take_commits(), vec![o(0, 3)]);
        t.ack(&o(0, 5));
        assert!(t.take_commits().is_empty(), "4 is still in flight");
        t.ack(&o(0, 4));
        assert_eq!(t.take_commits(), vec![o(0, 5)]);
        assert_eq!(t.in_flight(), 0);
        // Nothing in flight: still refused, a commit must never go backwards.
        assert!(t.register(&o(0, 5)).is_err());
        t.register(&o(0, 6)).unwrap();
    }

    /// Three sinks answer their own batches in order, interleaved with each other, over
    /// offsets with gaps: the commit is always the end of the longest done prefix, as a
    /// plain count of each record's outcomes says.
    #[test]
    fn interleaved_sinks_answering_in_batches_commit_what_is_done() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut t = Tracker::default();
        let mut waits: Vec<(i64, u32)> = Vec::new();
        let mut sinks: [Vec<i64>; 3] = Default::default();
        let mut off = 0;
        for _ in 0..5_000 {
            off += 1 + next(3) as i64;
            t.register(&o(0, off)).unwrap();
            let mask = 1 + next(7);
            let k = mask.count_ones();
            if k > 1 {
                t.expect_more(&o(0, off), k - 1);
            }
            for (j, sink) in sinks.iter_mut().enumerate() {
                if mask & (1 << j) != 0 {
                    sink.push(off);
                }
            }
            waits.push((off, k));
        }
        let mut done = 0;
        let mut committed = None;
        while sinks.iter().any(|s| !s.is_empty()) {
            let j = next(3) as usize;
            let n = (1 + next(300) as usize).min(sinks[j].len());
            for off in sinks[j].drain(..n) {
                t.ack(&o(0, off));
                let i = waits.binary_search_by_key(&off, |w| w.0).unwrap();
                waits[i].1 -= 1;
            }
            while waits.get(done).is_some_and(|w| w.1 == 0) {
                done += 1;
            }
            let expect = done.checked_sub(1).map(|i| waits[i].0);
            if let Some(c) = t.take_commits().pop() {
                committed = Some(c.offset);
            }
            assert_eq!(committed, expect);
        }
        assert_eq!(t.in_flight(), 0);
    }
}
