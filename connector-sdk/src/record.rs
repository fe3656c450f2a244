use std::marker::PhantomData;
use std::sync::Arc;

use bytes::Bytes;

use crate::plugin::abi::{LentHeader, LentRecord, Slice};

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
///
/// It has the layout of the ABI's [`LentRecord`]: the host lends a batch of views to a plugin
/// sink as they are, and the plugin reads them in place, so crossing the boundary builds no
/// second array of descriptors on either side.
#[repr(transparent)]
#[derive(Clone, Copy)]
pub struct RecordRef<'a> {
    raw: LentRecord,
    _borrow: PhantomData<&'a [u8]>,
}

/// A flag of [`RecordRef`]s built in the host, never lent: `headers` points at the record's
/// own `[Header]` instead of at [`LentHeader`]s.
const OWNED_HEADERS: u32 = 1 << 31;

impl<'a> RecordRef<'a> {
    /// A view of lent descriptors.
    ///
    /// # Safety
    /// Every slice of `raw` (and of its headers) must be valid for `'a`, its stream name
    /// UTF-8, and its flags the ABI's only.
    pub(crate) unsafe fn lent(raw: &'a [LentRecord]) -> &'a [RecordRef<'a>] {
        // SAFETY: `RecordRef` is a transparent `LentRecord`; the rest is the caller's contract.
        unsafe { std::slice::from_raw_parts(raw.as_ptr().cast(), raw.len()) }
    }

    /// The descriptor as the ABI lays it out.
    pub(crate) fn raw(&self) -> &LentRecord {
        &self.raw
    }

    /// Whether the headers are the host's own and must be described before lending.
    pub(crate) fn owns_headers(&self) -> bool {
        self.raw.flags & OWNED_HEADERS != 0
    }

    /// The payload.
    pub fn value(&self) -> &'a [u8] {
        // SAFETY: valid for 'a by construction (`Record::view` or a lent batch).
        unsafe { self.raw.value.as_bytes() }
    }

    /// The message key, if the record has one (an empty key is still a key).
    pub fn key(&self) -> Option<&'a [u8]> {
        // SAFETY: as `value`.
        (self.raw.flags & LentRecord::KEY != 0).then(|| unsafe { self.raw.key.as_bytes() })
    }

    /// The headers, in their order.
    pub fn headers(&self) -> Headers<'a> {
        let (ptr, len) = (self.raw.headers, self.raw.header_count);
        if len == 0 || ptr.is_null() {
            return Headers::default();
        }
        // SAFETY: as `value`; the flag says which array `headers` points at.
        Headers(unsafe {
            if self.owns_headers() {
                HeadersRepr::Owned(std::slice::from_raw_parts(ptr.cast::<Header>(), len))
            } else {
                HeadersRepr::Lent(std::slice::from_raw_parts(ptr, len))
            }
        })
    }

    /// Event time in milliseconds since the Unix epoch, when the source knows it.
    pub fn timestamp(&self) -> Option<i64> {
        (self.raw.flags & LentRecord::TIMESTAMP != 0).then_some(self.raw.timestamp)
    }

    /// Where the record came from.
    pub fn origin(&self) -> OriginRef<'a> {
        // SAFETY: as `value`; the stream name is UTF-8 by construction (a `str` in the host,
        // checked when a plugin borrows a lent batch).
        let stream = unsafe { std::str::from_utf8_unchecked(self.raw.stream.as_bytes()) };
        OriginRef {
            stream,
            partition: self.raw.partition,
            offset: self.raw.offset,
        }
    }

    /// Parses the value as JSON.
    pub fn json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_slice(self.value())
    }

    /// Size used for byte-based batching, as [`Record::size`].
    pub fn size(&self) -> usize {
        self.value().len()
            + self.key().map_or(0, <[u8]>::len)
            + self
                .headers()
                .iter()
                .map(|h| h.key.len() + h.value.map_or(0, <[u8]>::len))
                .sum::<usize>()
    }

    /// An owned copy.
    pub fn to_record(&self) -> Record {
        let origin = self.origin();
        Record {
            key: self.key().map(Bytes::copy_from_slice),
            value: Bytes::copy_from_slice(self.value()),
            headers: self
                .headers()
                .iter()
                .map(|h| Header {
                    key: h.key.to_owned(),
                    value: h.value.map(Bytes::copy_from_slice),
                })
                .collect(),
            timestamp: self.timestamp(),
            origin: Origin::new(Arc::from(origin.stream), origin.partition, origin.offset),
            decode_error: None,
        }
    }
}

impl std::fmt::Debug for RecordRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordRef")
            .field("key", &self.key())
            .field("value", &self.value())
            .field("headers", &self.headers())
            .field("timestamp", &self.timestamp())
            .field("origin", &self.origin())
            .finish()
    }
}

impl PartialEq for RecordRef<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.value() == other.value()
            && self.key() == other.key()
            && self.timestamp() == other.timestamp()
            && self.origin() == other.origin()
            && self.headers() == other.headers()
    }
}

impl Record {
    /// The record as a sink reads it.
    pub fn view(&self) -> RecordRef<'_> {
        let mut flags = 0;
        if self.key.is_some() {
            flags |= LentRecord::KEY;
        }
        if self.timestamp.is_some() {
            flags |= LentRecord::TIMESTAMP;
        }
        let (headers, header_count) = if self.headers.is_empty() {
            (std::ptr::null(), 0)
        } else {
            flags |= OWNED_HEADERS;
            (
                self.headers.as_ptr().cast::<LentHeader>(),
                self.headers.len(),
            )
        };
        RecordRef {
            raw: LentRecord {
                value: Slice::new(&self.value),
                key: Slice::new(self.key.as_deref().unwrap_or_default()),
                stream: Slice::new(self.origin.stream.as_bytes()),
                headers,
                header_count,
                timestamp: self.timestamp.unwrap_or_default(),
                offset: self.origin.offset,
                partition: self.origin.partition,
                flags,
            },
            _borrow: PhantomData,
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
                // SAFETY: valid for 'a, as the `RecordRef` they came from.
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
