//! A replay's cursor: the set of letter positions already replayed, as compact half-open
//! ranges. A set rather than a single position, so letters a filter (`--kind`) left out stay
//! to be replayed later while those replayed are never sent twice.
//!
//! A letter spans `[position, next)`: a file letter its line's bytes, a Kafka letter
//! `[offset, offset + 1)`. Letters replayed one after another therefore merge into one range,
//! and the saved form stays a few characters however many letters it covers:
//! `0-81920,90000-91234` (decimal, `start-end` with `end` exclusive, comma-separated).

use std::fmt;

/// A saved cursor that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("replay cursor `{text}` is corrupt: {message}")]
pub struct CursorError {
    pub text: String,
    pub message: String,
}

/// Disjoint, non-adjacent half-open ranges in increasing order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeSet {
    ranges: Vec<(i64, i64)>,
}

impl RangeSet {
    /// Adds `[start, end)`, merging with the ranges it touches or overlaps.
    pub fn insert(&mut self, start: i64, end: i64) {
        if end <= start {
            return;
        }
        // Letters are mostly replayed in order: extending the last range is the common case.
        if let Some(last) = self.ranges.last_mut() {
            if last.0 <= start && start <= last.1 {
                last.1 = last.1.max(end);
                return;
            }
            if last.1 < start {
                self.ranges.push((start, end));
                return;
            }
        } else {
            self.ranges.push((start, end));
            return;
        }
        // The first range that ends at or after `start` (touching counts).
        let i = self.ranges.partition_point(|r| r.1 < start);
        // Past the last range that starts at or before `end`.
        let j = self.ranges.partition_point(|r| r.0 <= end);
        if i == j {
            self.ranges.insert(i, (start, end));
            return;
        }
        let merged = (start.min(self.ranges[i].0), end.max(self.ranges[j - 1].1));
        self.ranges.splice(i..j, [merged]);
    }

    /// Whether `pos` lies in one of the ranges.
    pub fn contains(&self, pos: i64) -> bool {
        let i = self.ranges.partition_point(|r| r.1 <= pos);
        self.ranges.get(i).is_some_and(|r| r.0 <= pos)
    }

    /// Where the run of ranges covering `from` ends: every position in `[from, result)` is in
    /// the set (`from` itself when it is not). A Kafka DLQ's consumer group commits there.
    pub fn covered_from(&self, from: i64) -> i64 {
        let i = self.ranges.partition_point(|r| r.1 <= from);
        match self.ranges.get(i) {
            Some(r) if r.0 <= from => r.1,
            _ => from,
        }
    }

    /// Parses the saved form ([`fmt::Display`]); the empty string is the empty set.
    pub fn parse(text: &str) -> Result<Self, CursorError> {
        let err = |message: String| CursorError {
            text: text.to_string(),
            message,
        };
        let mut set = RangeSet::default();
        let mut last_end = i64::MIN;
        for part in text.split(',').filter(|p| !p.trim().is_empty()) {
            let (a, b) = part
                .trim()
                .split_once('-')
                .ok_or_else(|| err(format!("`{part}` is not start-end")))?;
            let start: i64 = a
                .parse()
                .map_err(|_| err(format!("`{a}` is not a position")))?;
            let end: i64 = b
                .parse()
                .map_err(|_| err(format!("`{b}` is not a position")))?;
            if end <= start || start < last_end {
                return Err(err(format!(
                    "`{part}` is empty or out of order; ranges must increase"
                )));
            }
            last_end = end;
            set.insert(start, end);
        }
        Ok(set)
    }
}

impl fmt::Display for RangeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (a, b)) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{a}-{b}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ranges: &[(i64, i64)]) -> RangeSet {
        let mut s = RangeSet::default();
        for &(a, b) in ranges {
            s.insert(a, b);
        }
        s
    }

    #[test]
    fn letters_in_order_make_one_range() {
        let s = set(&[(0, 10), (10, 25), (25, 40)]);
        assert_eq!(s.to_string(), "0-40");
        assert!(s.contains(0) && s.contains(39));
        assert!(!s.contains(40) && !s.contains(-1));
    }

    #[test]
    fn gaps_stay_and_fill_in_any_order() {
        let mut s = set(&[(0, 10), (20, 30), (40, 50)]);
        assert_eq!(s.to_string(), "0-10,20-30,40-50");
        assert!(!s.contains(10) && !s.contains(35));
        s.insert(30, 40);
        assert_eq!(s.to_string(), "0-10,20-50");
        s.insert(10, 20);
        assert_eq!(s.to_string(), "0-50");
        // Before everything, overlapping, inside, repeated.
        let mut s = set(&[(100, 110), (200, 210)]);
        s.insert(5, 7);
        s.insert(105, 205);
        s.insert(101, 102);
        s.insert(5, 7);
        assert_eq!(s.to_string(), "5-7,100-210");
        s.insert(0, 300);
        assert_eq!(s.to_string(), "0-300");
        s.insert(3, 3);
        assert_eq!(s.to_string(), "0-300");
    }

    #[test]
    fn covered_from_is_the_contiguous_prefix() {
        let s = set(&[(0, 10), (12, 20)]);
        assert_eq!(s.covered_from(0), 10);
        assert_eq!(s.covered_from(5), 10);
        assert_eq!(s.covered_from(10), 10);
        assert_eq!(s.covered_from(12), 20);
        assert_eq!(RangeSet::default().covered_from(7), 7);
    }

    #[test]
    fn the_saved_form_round_trips_and_rejects_nonsense() {
        for text in ["", "0-1", "0-10,20-30,40-50"] {
            assert_eq!(RangeSet::parse(text).unwrap().to_string(), text);
        }
        // Adjacent saved ranges merge.
        assert_eq!(RangeSet::parse("0-5,5-9").unwrap().to_string(), "0-9");
        for bad in ["x", "1-", "5-2", "0-10,5-20", "3"] {
            let e = RangeSet::parse(bad).unwrap_err();
            assert!(e.to_string().contains("corrupt"), "{e}");
        }
    }
}
