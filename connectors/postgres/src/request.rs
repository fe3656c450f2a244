//! Building what one send writes: the records parsed where columns read fields, one row per
//! record (refused records get their outcome here), duplicate upsert keys folded; and the
//! batch's outcomes once the rows are written.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use sluice_sdk::{Outcome, Outcomes, RecordRef};

use crate::config::{Mode, OnConflict, Settings};
use crate::encoder::{self, ColumnPlan, Rows};
use crate::fields::Outline;

/// A batch encoded as rows, before a connection is taken: with concurrency > 1 the next
/// batch is encoded while this one is written.
pub struct RowBatch<'a> {
    pub rows: Rows<'a>,
    /// Row -> index of its record.
    pub row_record: Vec<usize>,
    /// Rows to write, in order.
    pub live: Vec<u32>,
    /// (record, row whose outcome it shares).
    superseded: Vec<(usize, u32)>,
}

/// Parses the records when a column reads fields; a record that is not a JSON object is
/// rejected.
pub fn parse<'a>(
    plan: &[ColumnPlan],
    records: &[RecordRef<'a>],
    outcomes: &mut Outcomes,
) -> Vec<Option<Outline<'a>>> {
    if !encoder::needs_json(plan) {
        return Vec::new();
    }
    records
        .iter()
        .enumerate()
        .map(|(i, r)| match Outline::parse(r.value()) {
            Ok(v) => Some(v),
            Err(e) => {
                outcomes.set(
                    i,
                    Outcome::reject(
                        "postgres.record.invalid_json",
                        format!("the record cannot fill the table's columns: {e}"),
                    ),
                );
                None
            }
        })
        .collect()
}

impl<'a> RowBatch<'a> {
    /// The rows of the records not refused yet; a record refused here gets its outcome.
    pub fn build(
        s: &Settings,
        plan: &[ColumnPlan],
        records: &[RecordRef<'a>],
        parsed: &[Option<Outline<'a>>],
        outcomes: &mut Outcomes,
    ) -> Self {
        let ncols = plan.len();
        let mut rows = Rows {
            ncols,
            cells: Vec::with_capacity(records.len() * ncols),
        };
        let mut row_record: Vec<usize> = Vec::with_capacity(records.len());
        for (i, r) in records.iter().enumerate() {
            if outcomes.is_set(i) {
                continue;
            }
            let v = parsed.get(i).and_then(Option::as_ref);
            let start = rows.cells.len();
            encoder::push_row(&mut rows.cells, plan, r, v);
            // An upsert identifies rows by their key; a row without it would be inserted anew at
            // every replay (NULLs never conflict), and de-duplication below would take it for
            // another record's row.
            if s.mode == Mode::Upsert && rows.key_of(row_record.len(), &s.key).contains(&None) {
                rows.cells.truncate(start);
                outcomes.set(
                    i,
                    Outcome::reject(
                        "postgres.missing_key",
                        format!(
                            "the record has no value for the key column(s) {}",
                            key_names(s)
                        ),
                    ),
                );
                continue;
            }
            row_record.push(i);
        }
        // ON CONFLICT DO UPDATE refuses to touch one row twice in a statement (21000), so
        // within a batch only the last record of each key is written; the earlier ones share
        // its outcome.
        let mut superseded: Vec<(usize, u32)> = Vec::new();
        let live: Vec<u32> = if s.mode == Mode::Upsert && s.on_conflict == OnConflict::Update {
            let mut seen: HashMap<Vec<Option<&[u8]>>, u32> =
                HashMap::with_capacity(row_record.len());
            let mut keep = Vec::with_capacity(row_record.len());
            for row in (0..row_record.len() as u32).rev() {
                match seen.entry(rows.key_of(row as usize, &s.key)) {
                    Entry::Occupied(e) => superseded.push((row_record[row as usize], *e.get())),
                    Entry::Vacant(e) => {
                        e.insert(row);
                        keep.push(row);
                    }
                }
            }
            keep.reverse();
            keep
        } else {
            (0..row_record.len() as u32).collect()
        };
        RowBatch {
            rows,
            row_record,
            live,
            superseded,
        }
    }

    /// Final outcomes: superseded records follow the record that replaced them.
    pub fn finish(&self, mut outcomes: Outcomes) -> Vec<Outcome> {
        for &(record, winner) in &self.superseded {
            let follows = match outcomes.get(self.row_record[winner as usize]) {
                Some(Outcome::Delivered) => Outcome::Delivered,
                _ => Outcome::Retry(
                    "a later record with the same key was refused; retrying this one alone"
                        .to_string(),
                ),
            };
            outcomes.set(record, follows);
        }
        outcomes.finish()
    }
}

/// The key columns, for messages: `event_id` or `tenant_id, event_id`.
fn key_names(s: &Settings) -> String {
    s.key
        .iter()
        .map(|&k| format!("`{}`", s.columns[k].0))
        .collect::<Vec<_>>()
        .join(", ")
}
