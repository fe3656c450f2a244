use std::sync::Arc;

use bytes::Bytes;

use crate::plugin::abi::LentHeader;

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

/// A record as a sink reads it: borrowed for the length of one send.
///
/// Sinks get records by reference rather than owning them so that the host can lend a plugin
/// sink its own memory, with no copy and no reference count per record. A sink that must keep
/// something beyond the send copies it ([`RecordRef::to_record`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RecordRef<'a> {
    pub key: Option<&'a [u8]>,
    pub value: &'a [u8],
    pub headers: Headers<'a>,
    pub timestamp: Option<i64>,
    pub origin: OriginRef<'a>,
}

impl<'a> RecordRef<'a> {
    /// Parses the value as JSON.
    pub fn json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_slice(self.value)
    }

    /// Size used for byte-based batching, as [`Record::size`].
    pub fn size(&self) -> usize {
        self.value.len()
            + self.key.map_or(0, <[u8]>::len)
            + self
                .headers
                .iter()
                .map(|h| h.key.len() + h.value.map_or(0, <[u8]>::len))
                .sum::<usize>()
    }

    /// An owned copy.
    pub fn to_record(&self) -> Record {
        Record {
            key: self.key.map(Bytes::copy_from_slice),
            value: Bytes::copy_from_slice(self.value),
            headers: self
                .headers
                .iter()
                .map(|h| Header {
                    key: h.key.to_owned(),
                    value: h.value.map(Bytes::copy_from_slice),
                })
                .collect(),
            timestamp: self.timestamp,
            origin: Origin::new(
                Arc::from(self.origin.stream),
                self.origin.partition,
                self.origin.offset,
            ),
            decode_error: None,
        }
    }
}

impl Record {
    /// The record as a sink reads it.
    pub fn view(&self) -> RecordRef<'_> {
        RecordRef {
            key: self.key.as_deref(),
            value: &self.value,
            headers: Headers(HeadersRepr::Owned(&self.headers)),
            timestamp: self.timestamp,
            origin: OriginRef {
                stream: &self.origin.stream,
                partition: self.origin.partition,
                offset: self.origin.offset,
            },
        }
    }
}

/// Views of every record, in order: what a sink's `send` takes.
pub fn views(records: &[Record]) -> Vec<RecordRef<'_>> {
    records.iter().map(Record::view).collect()
}

/// [`Origin`], borrowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OriginRef<'a> {
    pub stream: &'a str,
    pub partition: i32,
    pub offset: i64,
}

/// A header, borrowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderRef<'a> {
    pub key: &'a str,
    pub value: Option<&'a [u8]>,
}

/// The headers of a [`RecordRef`], in their order; names may repeat.
#[derive(Clone, Copy)]
pub struct Headers<'a>(HeadersRepr<'a>);

#[derive(Clone, Copy)]
enum HeadersRepr<'a> {
    Owned(&'a [Header]),
    /// Lent by the host to a plugin. The host lends names of `String`s, so they are UTF-8;
    /// one that were not would read as empty, never as undefined behaviour.
    Lent(&'a [LentHeader]),
}

impl<'a> Headers<'a> {
    /// Headers lent across the plugin boundary.
    ///
    /// # Safety
    /// Every header's slices must be valid for `'a`.
    pub(crate) unsafe fn lent(headers: &'a [LentHeader]) -> Self {
        Headers(HeadersRepr::Lent(headers))
    }

    pub fn len(&self) -> usize {
        match self.0 {
            HeadersRepr::Owned(h) => h.len(),
            HeadersRepr::Lent(h) => h.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn iter(&self) -> HeadersIter<'a> {
        HeadersIter(match self.0 {
            HeadersRepr::Owned(h) => IterRepr::Owned(h.iter()),
            HeadersRepr::Lent(h) => IterRepr::Lent(h.iter()),
        })
    }

    /// First header with this name.
    pub fn get(&self, key: &str) -> Option<HeaderRef<'a>> {
        self.iter().find(|h| h.key == key)
    }
}

impl Default for Headers<'_> {
    /// No headers.
    fn default() -> Self {
        Headers(HeadersRepr::Owned(&[]))
    }
}

impl std::fmt::Debug for Headers<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl PartialEq for Headers<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

/// Iterator over [`Headers`].
pub struct HeadersIter<'a>(IterRepr<'a>);

enum IterRepr<'a> {
    Owned(std::slice::Iter<'a, Header>),
    Lent(std::slice::Iter<'a, LentHeader>),
}

impl<'a> Iterator for HeadersIter<'a> {
    type Item = HeaderRef<'a>;

    fn next(&mut self) -> Option<HeaderRef<'a>> {
        match &mut self.0 {
            IterRepr::Owned(it) => it.next().map(|h| HeaderRef {
                key: &h.key,
                value: h.value.as_deref(),
            }),
            IterRepr::Lent(it) => it.next().map(|h| {
                // SAFETY: `Headers::lent`'s contract: valid for 'a.
                let (key, value) = unsafe { (h.key.as_bytes(), h.value.as_bytes()) };
                HeaderRef {
                    key: std::str::from_utf8(key).unwrap_or_default(),
                    value: (h.has_value != 0).then_some(value),
                }
            }),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.0 {
            IterRepr::Owned(it) => it.size_hint(),
            IterRepr::Lent(it) => it.size_hint(),
        }
    }
}

impl ExactSizeIterator for HeadersIter<'_> {}
