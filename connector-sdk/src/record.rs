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
    /// Set by a source whose check found the value JSON ([`Record::mark_json_checked`]), so
    /// a sink that embeds the value as JSON need not check it again.
    pub json_checked: JsonChecked,
}

/// The value a source found to be JSON. It holds a reference to those bytes, so they cannot
/// be freed and their place reused: a value replaced since (by a transform) never passes for
/// checked, and is checked again by whoever needs JSON. Records compare equal whatever it
/// holds.
#[derive(Clone, Default)]
pub struct JsonChecked(Option<Bytes>);

impl PartialEq for JsonChecked {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for JsonChecked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "checked"
        } else {
            "unchecked"
        })
    }
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
            json_checked: JsonChecked::default(),
        }
    }

    /// Records that the current value is one JSON text (`crate::json::check` passed).
    pub fn mark_json_checked(&mut self) {
        self.json_checked = JsonChecked(Some(self.value.clone()));
    }

    /// Whether the current value is the one a source found to be JSON.
    pub fn is_checked_json(&self) -> bool {
        self.json_checked
            .0
            .as_ref()
            .is_some_and(|b| b.as_ptr() == self.value.as_ptr() && b.len() == self.value.len())
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

    /// The origin, borrowed.
    pub fn view(&self) -> OriginRef<'_> {
        OriginRef {
            stream: &self.stream,
            partition: self.partition,
            offset: self.offset,
        }
    }
}

/// A record as a sink reads it: borrowed for the length of one send.
///
/// Sinks get records by reference rather than owning them, so a batch reaches a sink with no
/// copy and no reference count per record, built in or through a plugin. A sink that must
/// keep something beyond the send copies it ([`RecordRef::to_record`]).
#[derive(Clone, Copy, Debug)]
pub struct RecordRef<'a> {
    pub(crate) key: Option<&'a [u8]>,
    pub(crate) value: &'a [u8],
    pub(crate) headers: Headers<'a>,
    pub(crate) timestamp: Option<i64>,
    pub(crate) origin: OriginRef<'a>,
    /// The value is known to be JSON ([`Record::is_checked_json`]).
    pub(crate) checked_json: bool,
}

/// Views compare by content: whether the value was known to be JSON does not count.
impl PartialEq for RecordRef<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
            && self.value == other.value
            && self.headers == other.headers
            && self.timestamp == other.timestamp
            && self.origin == other.origin
    }
}

impl<'a> RecordRef<'a> {
    /// A view of a value from `origin`, with no key, headers or timestamp.
    pub fn new(value: &'a [u8], origin: OriginRef<'a>) -> Self {
        RecordRef {
            key: None,
            value,
            headers: Headers::default(),
            timestamp: None,
            origin,
            checked_json: false,
        }
    }

    /// Whether the value is one JSON text: known from the source's check, else checked now.
    pub fn is_json(&self) -> bool {
        self.checked_json || crate::json::is_json(self.value)
    }

    /// Whether a source found the value to be JSON ([`Record::is_checked_json`]), so a reader
    /// may skip to the parts it needs without validating the rest.
    pub fn is_checked_json(&self) -> bool {
        self.checked_json
    }

    /// [`RecordRef::is_json`], saying why not.
    pub fn check_json(&self) -> Result<(), crate::json::NotJson> {
        if self.checked_json {
            return Ok(());
        }
        crate::json::check(self.value)
    }

    /// The same view with this key.
    pub fn with_key(self, key: Option<&'a [u8]>) -> Self {
        RecordRef { key, ..self }
    }

    /// The same view with these headers.
    pub fn with_headers(self, headers: Headers<'a>) -> Self {
        RecordRef { headers, ..self }
    }

    /// The same view with this timestamp.
    pub fn with_timestamp(self, timestamp: Option<i64>) -> Self {
        RecordRef { timestamp, ..self }
    }

    /// The payload.
    pub fn value(&self) -> &'a [u8] {
        self.value
    }

    /// The message key, if the record has one (an empty key is still a key).
    pub fn key(&self) -> Option<&'a [u8]> {
        self.key
    }

    /// The headers, in their order.
    pub fn headers(&self) -> Headers<'a> {
        self.headers
    }

    /// Event time in milliseconds since the Unix epoch, when the source knows it.
    pub fn timestamp(&self) -> Option<i64> {
        self.timestamp
    }

    /// Where the record came from.
    pub fn origin(&self) -> OriginRef<'a> {
        self.origin
    }

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
        let origin = self.origin;
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
            origin: Origin::new(Arc::from(origin.stream), origin.partition, origin.offset),
            decode_error: None,
            json_checked: JsonChecked::default(),
        }
    }
}

impl Record {
    /// The record as a sink reads it.
    pub fn view(&self) -> RecordRef<'_> {
        RecordRef {
            key: self.key.as_deref(),
            value: &self.value,
            headers: Headers::from(&self.headers[..]),
            timestamp: self.timestamp,
            origin: self.origin.view(),
            checked_json: self.is_checked_json(),
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

/// The headers of a [`RecordRef`], in their order; names may repeat. Either a record's own
/// [`Header`]s or headers borrowed from elsewhere (a batch a plugin was lent).
#[derive(Clone, Copy)]
pub struct Headers<'a>(HeadersRepr<'a>);

#[derive(Clone, Copy)]
enum HeadersRepr<'a> {
    Owned(&'a [Header]),
    Borrowed(&'a [HeaderRef<'a>]),
}

impl<'a> From<&'a [Header]> for Headers<'a> {
    fn from(headers: &'a [Header]) -> Self {
        Headers(HeadersRepr::Owned(headers))
    }
}

impl<'a> From<&'a [HeaderRef<'a>]> for Headers<'a> {
    fn from(headers: &'a [HeaderRef<'a>]) -> Self {
        Headers(HeadersRepr::Borrowed(headers))
    }
}

impl<'a> Headers<'a> {
    pub fn len(&self) -> usize {
        match self.0 {
            HeadersRepr::Owned(h) => h.len(),
            HeadersRepr::Borrowed(h) => h.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn iter(&self) -> HeadersIter<'a> {
        HeadersIter(match self.0 {
            HeadersRepr::Owned(h) => IterRepr::Owned(h.iter()),
            HeadersRepr::Borrowed(h) => IterRepr::Borrowed(h.iter()),
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
    Borrowed(std::slice::Iter<'a, HeaderRef<'a>>),
}

impl<'a> Iterator for HeadersIter<'a> {
    type Item = HeaderRef<'a>;

    fn next(&mut self) -> Option<HeaderRef<'a>> {
        match &mut self.0 {
            IterRepr::Owned(it) => it.next().map(|h| HeaderRef {
                key: &h.key,
                value: h.value.as_deref(),
            }),
            IterRepr::Borrowed(it) => it.next().copied(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.0 {
            IterRepr::Owned(it) => it.size_hint(),
            IterRepr::Borrowed(it) => it.size_hint(),
        }
    }
}

impl ExactSizeIterator for HeadersIter<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_reads_back_the_record_and_copies_out_equal() {
        let mut r = Record::new(&b"{\"a\":1}"[..], Origin::new("s".into(), 2, 7));
        r.key = Some(Bytes::new());
        r.timestamp = Some(5);
        r.headers = vec![
            Header::new("trace", &b"abc"[..]),
            Header {
                key: "empty".into(),
                value: None,
            },
        ];
        let v = r.view();
        assert_eq!(v.key(), Some(&b""[..]), "an empty key is still a key");
        assert_eq!(v.headers().get("trace").unwrap().value, Some(&b"abc"[..]));
        assert_eq!(v.headers().get("empty").unwrap().value, None);
        assert_eq!(v.size(), r.size());
        assert_eq!(v.to_record(), r);

        let borrowed = [
            HeaderRef {
                key: "trace",
                value: Some(b"abc"),
            },
            HeaderRef {
                key: "empty",
                value: None,
            },
        ];
        let built = RecordRef::new(b"{\"a\":1}", r.origin.view())
            .with_key(Some(b""))
            .with_timestamp(Some(5))
            .with_headers(Headers::from(&borrowed[..]));
        assert_eq!(built, v, "owned and borrowed headers compare alike");
    }

    /// A value a source checked is not checked again; a value replaced since is.
    #[test]
    fn a_checked_value_is_known_json_until_it_is_replaced() {
        let origin = Origin::new("s".into(), 0, 0);
        let mut r = Record::new(&b"{\"a\":1}"[..], origin.clone());
        assert!(!r.is_checked_json());
        assert!(r.view().is_json(), "checked on the spot");
        // Marking skips the check (here over bytes that are not JSON, to show it).
        let mut lie = Record::new(&b"not json"[..], origin.clone());
        lie.mark_json_checked();
        assert!(lie.is_checked_json());
        assert!(lie.view().is_json());
        assert!(lie.view().check_json().is_ok());
        // A transform's new value, even of the same length at a new place, is checked again.
        lie.value = Bytes::from(b"not JSON".to_vec());
        assert!(!lie.is_checked_json());
        assert!(!lie.view().is_json());
        assert!(lie.view().check_json().is_err());
        // A slice of the checked bytes is another value too.
        r.mark_json_checked();
        r.value = r.value.slice(0..3);
        assert!(!r.is_checked_json());
        assert_eq!(
            r,
            Record::new(&b"{\"a"[..], origin),
            "the mark does not count in =="
        );
    }
}
