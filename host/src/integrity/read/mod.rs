//! Readers of stamped records for `sluice verify`: each yields the stored values one by one,
//! in the order the store keeps them, with a location to name in findings.

#[cfg(feature = "elasticsearch")]
pub mod elasticsearch;
pub mod file;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "postgres")]
pub mod postgres;

/// One stored record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The record as stored (JSON text).
    pub value: Vec<u8>,
    /// Where it is, for findings: `line 12`, `row id=5`, `partition 3 offset 17`.
    pub at: At,
    /// Records are in write order within a lane only (a Kafka partition); readers with one
    /// order use lane 0.
    pub lane: i32,
    /// The stamp carried beside the record (a Kafka message's `sluice.audit` header), for a
    /// value that is not a JSON object and so cannot carry it in a member.
    pub stamp: Option<Vec<u8>>,
}

/// Where a record was read. `verify` keeps it with every record until the record's chain is
/// checked, so a line number stays a number rather than becoming a string per record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum At {
    Line(u64),
    Other(String),
}

impl std::fmt::Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            At::Line(n) => write!(f, "line {n}"),
            At::Other(text) => f.write_str(text),
        }
    }
}

impl From<String> for At {
    fn from(text: String) -> Self {
        At::Other(text)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read {what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("PostgreSQL: {0}")]
    Postgres(String),
    #[error("Kafka: {0}")]
    Kafka(String),
    #[error("Elasticsearch: {0}")]
    Elasticsearch(String),
}

/// A source of stored records.
pub trait RecordReader {
    /// The next record, `None` at the end.
    fn next_entry(&mut self) -> Result<Option<Entry>, ReadError>;

    /// True when the read order is the write order (within each lane), so `reordered` can
    /// be reported; false for stores that keep no write order.
    fn ordered(&self) -> bool {
        true
    }

    /// What is read, for messages (`out.jsonl`, `table audit`).
    fn describe(&self) -> String;

    /// How many bytes of records there are, when known beforehand (a file's length).
    fn size_hint(&self) -> Option<u64> {
        None
    }
}
