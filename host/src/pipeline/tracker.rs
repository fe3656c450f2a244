//! Per-partition contiguous offset tracking.
//!
//! A position may be committed only when the record at it and every earlier record of the
//! same partition are done (delivered, filtered out or dead-lettered). A failure at offset 5
//! holds the commit at 4 even when 6..9 succeeded.

use std::collections::VecDeque;
use std::sync::Arc;

use sluice_sdk::Origin;

struct Partition {
    stream: Arc<str>,
    partition: i32,
    /// Registered, not yet committable records, in offset order, with their done flag.
    pending: VecDeque<(i64, bool)>,
    last_registered: Option<i64>,
    /// Highest offset whose prefix is all done, not yet handed out by `take_commits`.
    ready: Option<i64>,
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

    /// Records a record that came out of the source. Offsets increase per partition; a lower
    /// one means the source rewound (a Kafka partition re-assigned after a rebalance): the
    /// old in-flight entries are forgotten, since upstream will deliver them again.
    pub fn register(&mut self, o: &Origin) {
        let i = match self.index(o) {
            Some(i) => i,
            None => {
                self.parts.push(Partition {
                    stream: o.stream.clone(),
                    partition: o.partition,
                    pending: VecDeque::new(),
                    last_registered: None,
                    ready: None,
                });
                self.last = self.parts.len() - 1;
                self.last
            }
        };
        let p = &mut self.parts[i];
        if p.last_registered.is_some_and(|l| o.offset <= l) {
            p.pending.clear();
            p.ready = None;
        }
        p.last_registered = Some(o.offset);
        p.pending.push_back((o.offset, false));
    }

    /// Marks a record done.
    pub fn ack(&mut self, o: &Origin) {
        let Some(i) = self.index(o) else { return };
        let p = &mut self.parts[i];
        // Records mostly finish in the order they were registered: try the front first.
        let pos = if p.pending.front().is_some_and(|e| e.0 == o.offset) {
            0
        } else {
            match p.pending.binary_search_by_key(&o.offset, |e| e.0) {
                Ok(pos) => pos,
                Err(_) => return,
            }
        };
        p.pending[pos].1 = true;
        if pos == 0 {
            while let Some(&(off, true)) = p.pending.front() {
                p.ready = Some(off);
                p.pending.pop_front();
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
            t.register(&o(0, off));
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
    fn partitions_are_independent_and_rewind_resets() {
        let mut t = Tracker::default();
        t.register(&o(0, 10));
        t.register(&o(1, 3));
        t.ack(&o(1, 3));
        assert_eq!(t.take_commits(), vec![o(1, 3)]);
        // Rewind of partition 0 to 5 forgets offset 10.
        t.register(&o(0, 5));
        t.ack(&o(0, 10));
        assert!(t.take_commits().is_empty());
        t.ack(&o(0, 5));
        assert_eq!(t.take_commits(), vec![o(0, 5)]);
    }
}
