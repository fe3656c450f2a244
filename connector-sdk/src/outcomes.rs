//! A batch's answer, built one record (or one request) at a time.
//!
//! A sink sends a batch as one or more requests and reads each answer; [`Verdict`] is what an
//! answer means for the records it covers, and [`Outcomes`] collects one [`Outcome`] per
//! record in whatever order the answers come, then hands the host exactly one per record.
//!
//! ```
//! use sluice_sdk::{Outcome, Outcomes, Rejection};
//!
//! let mut outcomes = Outcomes::new(4);
//! outcomes.reject(1, Rejection { kind: "x.bad".into(), message: "no".into() });
//! outcomes.set_each([0, 2], &Outcome::Delivered);
//! outcomes.fill_unset(&Outcome::Unavailable("the second request met a 503".into()));
//! let answer = outcomes.finish();
//! assert_eq!(answer.len(), 4);
//! assert!(matches!(answer[3], Outcome::Unavailable(_)));
//! ```

use crate::{Outcome, Rejection, SinkError};

/// What one answer of the destination means for the records it covers.
#[derive(Debug)]
pub enum Verdict<T = ()> {
    /// Taken. `T` carries what else the answer says (an ack id, a bulk answer to read per
    /// item).
    Delivered(T),
    /// Refused for good: every record it covers is dead-lettered with this reason.
    Rejected(Rejection),
    /// Nothing was taken, for a reason about the destination rather than the records.
    Failed(SinkError),
}

/// One slot per record of a batch, filled as answers come in.
#[derive(Debug, Default)]
pub struct Outcomes {
    slots: Vec<Option<Outcome>>,
}

/// What a record with no outcome at [`Outcomes::finish`] gets: tried again, never lost.
const NO_ANSWER: &str = "the sink gave no answer for this record";

impl Outcomes {
    /// `len` records, none answered yet.
    pub fn new(len: usize) -> Self {
        Outcomes {
            slots: vec![None; len],
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Record `i`'s outcome (a later call for the same record wins).
    pub fn set(&mut self, i: usize, outcome: Outcome) {
        self.slots[i] = Some(outcome);
    }

    pub fn delivered(&mut self, i: usize) {
        self.set(i, Outcome::Delivered);
    }

    pub fn reject(&mut self, i: usize, rejection: Rejection) {
        self.set(i, Outcome::Reject(rejection));
    }

    /// The same outcome for several records.
    pub fn set_each(&mut self, records: impl IntoIterator<Item = usize>, outcome: &Outcome) {
        for i in records {
            self.slots[i] = Some(outcome.clone());
        }
    }

    /// Every record not answered yet gets `outcome` (the rest of a batch after an outage).
    pub fn fill_unset(&mut self, outcome: &Outcome) {
        for slot in self.slots.iter_mut().filter(|s| s.is_none()) {
            *slot = Some(outcome.clone());
        }
    }

    /// A batch sent in several requests met `error` after `sent` requests were taken. With
    /// nothing taken yet, or a fatal error, the whole batch fails with it. Otherwise the
    /// taken records keep their outcomes and the rest met an outage: they go back to the host,
    /// resent without counting an attempt against them (never the earlier requests again,
    /// which for a destination without ids would duplicate what it took).
    pub fn stop_at(mut self, sent: usize, error: SinkError) -> Result<Vec<Outcome>, SinkError> {
        if sent == 0 || matches!(error, SinkError::Fatal(_)) {
            return Err(error);
        }
        self.fill_unset(&Outcome::Unavailable(error.to_string()));
        Ok(self.finish())
    }

    /// Record `i`'s outcome so far.
    pub fn get(&self, i: usize) -> Option<&Outcome> {
        self.slots[i].as_ref()
    }

    pub fn is_set(&self, i: usize) -> bool {
        self.slots[i].is_some()
    }

    /// One outcome per record, in order; a record nobody answered is retried.
    pub fn finish(self) -> Vec<Outcome> {
        self.slots
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Outcome::Retry(NO_ANSWER.into())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_answers_win_and_missing_ones_are_retried() {
        let mut o = Outcomes::new(3);
        assert_eq!(o.len(), 3);
        o.set(0, Outcome::Unavailable("x".into()));
        o.delivered(0);
        assert!(o.is_set(0) && !o.is_set(1));
        assert_eq!(o.get(0), Some(&Outcome::Delivered));
        o.reject(
            2,
            Rejection {
                kind: "k".into(),
                message: "m".into(),
            },
        );
        let answer = o.finish();
        assert_eq!(answer[0], Outcome::Delivered);
        assert!(matches!(&answer[1], Outcome::Retry(m) if m == NO_ANSWER));
        assert!(matches!(&answer[2], Outcome::Reject(r) if r.kind == "k"));
        assert!(Outcomes::new(0).is_empty());
    }
}
