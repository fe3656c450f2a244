use std::sync::Arc;

use bytes::Bytes;

/// One event moving through a pipeline.
///
/// The value is kept as the raw bytes the source read (usually JSON); it is parsed only when a
/// transform or a sink needs fields, so a pipeline without transforms never re-serialises.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// Message key, if the source system has one (Kafka key, Cosmos document id).
    pub key: Option<Bytes>,
    /// The payload.
    pub value: Bytes,
    /// Headers carried from the source (Kafka headers); kept byte for byte.
    pub headers: Vec<Header>,
    /// Event time in milliseconds since the Unix epoch, when the source knows it.
    pub timestamp: Option<i64>,
    /// Where the record came from; the unit of offset tracking.
    pub origin: Origin,
    /// Set by a source when the bytes could not be decoded in the configured format (not JSON,
    /// an Avro datum that does not match its schema). The host sends such a record to the
    /// dead-letter queue with stage [`crate::Stage::Conversion`] instead of to the sink, so the
    /// source keeps its position and nothing is dropped.
    pub decode_error: Option<Box<str>>,
}

impl Record {
    /// A record with a value and an origin, and nothing else.
    pub fn new(value: impl Into<Bytes>, origin: Origin) -> Self {
        Record {
            key: None,
            value: value.into(),
            headers: Vec::new(),
            timestamp: None,
            origin,
            decode_error: None,
        }
    }

    /// Parses the value as JSON.
    pub fn json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_slice(&self.value)
    }

    /// Size used for byte-based batching: value, key and header bytes.
    pub fn size(&self) -> usize {
        self.value.len()
            + self.key.as_ref().map_or(0, |k| k.len())
            + self
                .headers
                .iter()
                .map(|h| h.key.len() + h.value.as_ref().map_or(0, |v| v.len()))
                .sum::<usize>()
    }

    /// First header with this name.
    pub fn header(&self, key: &str) -> Option<&Header> {
        self.headers.iter().find(|h| h.key == key)
    }
}

/// A record header (Kafka semantics: a name and an optional byte value; names may repeat).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub key: String,
    pub value: Option<Bytes>,
}

impl Header {
    pub fn new(key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        Header {
            key: key.into(),
            value: Some(value.into()),
        }
    }
}

/// Where a record came from.
///
/// `stream` + `partition` name an ordered sequence (a Kafka topic partition, a file, a Cosmos
/// partition key range); `offset` increases strictly within it. The host commits per
/// (stream, partition) the highest offset below which every record is done.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    pub stream: Arc<str>,
    pub partition: i32,
    pub offset: i64,
}

impl Origin {
    pub fn new(stream: Arc<str>, partition: i32, offset: i64) -> Self {
        Origin {
            stream,
            partition,
            offset,
        }
    }
}
