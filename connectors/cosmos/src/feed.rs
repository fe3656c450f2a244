//! One change-feed request for one partition key range, and the slicing of its answer.

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::client::Client;
use crate::config::Mode;
use crate::position::Resume;
use crate::response::{self, Verdict};

/// One changed document (or, in all-versions mode, one change envelope) of a page.
#[derive(Debug, Clone)]
pub struct Doc {
    /// The item's JSON exactly as received: a slice of the page body, not a copy.
    pub value: Bytes,
    /// The document `id` (for a delete, the id of the previous image).
    pub key: Option<Bytes>,
    /// `_lsn` (or `metadata.lsn`): the change's logical sequence number.
    pub lsn: Option<i64>,
    /// `_ts` (or `metadata.crts`) in milliseconds.
    pub timestamp: Option<i64>,
    /// Set when the item is not the object the mode promises.
    pub error: Option<Box<str>>,
    /// Already delivered before this page was read (see `position::Skip`).
    pub skipped: bool,
}

/// The answer to one request.
#[derive(Debug)]
pub enum Fetched {
    /// `200`: changes, and the continuation for the next request.
    Page {
        etag: String,
        docs: Vec<Doc>,
        /// The range's latest LSN on the server (`lsn` header), when given.
        latest_lsn: Option<i64>,
    },
    /// `304`: nothing new since the continuation; the etag to use next, when given.
    NotModified {
        etag: Option<String>,
        latest_lsn: Option<i64>,
    },
}

/// Reads one page of `range_id`'s change feed from `resume`.
pub async fn fetch(
    client: &Client,
    range_id: &str,
    resume: &Resume,
    max_items: u32,
    mode: Mode,
) -> Result<Fetched, Verdict> {
    let what = format!("reading the change feed of range {range_id}");
    let headers = request_headers(range_id, resume, max_items, mode)
        .map_err(|m| Verdict::Fatal(format!("{what}: {m}")))?;
    let resp = client
        .get_feed("docs", headers)
        .await
        .map_err(|e| response::transport(e, &what))?;
    let etag = resp.header("etag").map(str::to_string);
    let latest_lsn = resp.header("lsn").and_then(|l| l.trim().parse().ok());
    match resp.status {
        StatusCode::NOT_MODIFIED => Ok(Fetched::NotModified { etag, latest_lsn }),
        StatusCode::OK => {
            let etag = etag.ok_or_else(|| {
                Verdict::Transient(format!("{what}: a 200 answer without an etag"))
            })?;
            let docs = parse_page(&resp.body, mode)
                .map_err(|e| Verdict::Transient(format!("{what}: unreadable page: {e}")))?;
            Ok(Fetched::Page {
                etag,
                docs,
                latest_lsn,
            })
        }
        _ => Err(response::classify(&resp, &what, client.endpoint().as_str())),
    }
}

fn request_headers(
    range_id: &str,
    resume: &Resume,
    max_items: u32,
    mode: Mode,
) -> Result<HeaderMap, String> {
    let mut h = HeaderMap::new();
    match mode {
        Mode::LatestVersion => {
            h.insert("a-im", HeaderValue::from_static("Incremental feed"));
        }
        Mode::AllVersionsAndDeletes => {
            h.insert("a-im", HeaderValue::from_static("Full-Fidelity Feed"));
            h.insert(
                "x-ms-cosmos-changefeed-wire-format-version",
                HeaderValue::from_static("2021-09-15"),
            );
        }
    }
    h.insert(
        "x-ms-documentdb-partitionkeyrangeid",
        HeaderValue::from_str(range_id).map_err(|_| format!("bad range id `{range_id}`"))?,
    );
    h.insert("x-ms-max-item-count", HeaderValue::from(max_items));
    match resume {
        Resume::Beginning => {}
        Resume::Now => {
            h.insert("if-none-match", HeaderValue::from_static("*"));
        }
        Resume::Since(t) => {
            let v = HeaderValue::from_str(&httpdate::fmt_http_date(*t))
                .map_err(|e| format!("start time: {e}"))?;
            h.insert("if-modified-since", v);
        }
        Resume::Etag(e) => {
            let v = HeaderValue::from_str(e).map_err(|_| format!("unusable etag `{e}`"))?;
            h.insert("if-none-match", v);
        }
    }
    Ok(h)
}

#[derive(Deserialize)]
struct PageBody<'a> {
    #[serde(rename = "Documents", borrow)]
    documents: Vec<&'a RawValue>,
}

/// The fields of a document the source needs; everything else is skipped unparsed.
#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(rename = "_lsn")]
    lsn: Option<i64>,
    #[serde(rename = "_ts")]
    ts: Option<i64>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    current: Option<Fields<'a>>,
    #[serde(borrow)]
    previous: Option<Fields<'a>>,
    metadata: Option<Metadata>,
}

#[derive(Deserialize)]
struct Metadata {
    lsn: Option<i64>,
    crts: Option<i64>,
}

/// Splits a `{"Documents":[...]}` body into one slice per item and reads its id and LSN.
pub fn parse_page(body: &Bytes, mode: Mode) -> Result<Vec<Doc>, serde_json::Error> {
    let page: PageBody<'_> = serde_json::from_slice(body)?;
    let mut docs = Vec::with_capacity(page.documents.len());
    for raw in page.documents {
        let value = sub_bytes(body, raw.get().as_bytes());
        let parsed = match mode {
            Mode::LatestVersion => {
                serde_json::from_str::<Fields<'_>>(raw.get()).map(|f| (f.id, f.lsn, f.ts))
            }
            Mode::AllVersionsAndDeletes => {
                serde_json::from_str::<Envelope<'_>>(raw.get()).map(|e| {
                    let meta = e.metadata.unwrap_or(Metadata {
                        lsn: None,
                        crts: None,
                    });
                    // A delete has no current image (or an empty one): its id is in previous.
                    let cur = e.current.as_ref();
                    let prev = e.previous.as_ref();
                    let id = cur.and_then(|d| d.id).or(prev.and_then(|d| d.id));
                    let lsn = meta.lsn.or(cur.and_then(|d| d.lsn));
                    (id, lsn, meta.crts.or(cur.and_then(|d| d.ts)))
                })
            }
        };
        docs.push(match parsed {
            Ok((id, lsn, ts)) => Doc {
                value,
                key: id.and_then(|raw| id_bytes(body, raw)),
                lsn,
                timestamp: ts.map(|s| s.saturating_mul(1000)),
                error: None,
                skipped: false,
            },
            Err(e) => Doc {
                value,
                key: None,
                lsn: None,
                timestamp: None,
                error: Some(format!("change-feed item is not a document: {e}").into()),
                skipped: false,
            },
        });
    }
    Ok(docs)
}

/// The id's text: a slice of the body when it needs no unescaping, else a decoded copy.
fn id_bytes(body: &Bytes, raw: &RawValue) -> Option<Bytes> {
    let text = raw.get();
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    if !inner.contains('\\') {
        return Some(sub_bytes(body, inner.as_bytes()));
    }
    serde_json::from_str::<String>(text).ok().map(Bytes::from)
}

/// `part` as a `Bytes` sharing `body`'s buffer when it lies within it (it always does when
/// parsed from it), else a copy.
fn sub_bytes(body: &Bytes, part: &[u8]) -> Bytes {
    let start = (part.as_ptr() as usize).wrapping_sub(body.as_ptr() as usize);
    match start.checked_add(part.len()) {
        Some(end) if start <= body.len() && end <= body.len() => body.slice(start..end),
        _ => Bytes::copy_from_slice(part),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_documents_without_copying() {
        let body = Bytes::from_static(
            br#"{"_rid":"x","Documents":[{"id":"a1","pk":"p","_lsn":7,"_ts":1700000000, "n": {"x":[1,2]}},{"id":"b\"2","_lsn":8}],"_count":2}"#,
        );
        let docs = parse_page(&body, Mode::LatestVersion).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(
            &docs[0].value[..],
            br#"{"id":"a1","pk":"p","_lsn":7,"_ts":1700000000, "n": {"x":[1,2]}}"#
        );
        // The value points into the body.
        let off = docs[0].value.as_ptr() as usize - body.as_ptr() as usize;
        assert!(off < body.len());
        assert_eq!(docs[0].key.as_deref(), Some(&b"a1"[..]));
        assert_eq!(docs[0].lsn, Some(7));
        assert_eq!(docs[0].timestamp, Some(1_700_000_000_000));
        assert_eq!(docs[1].key.as_deref(), Some(&b"b\"2"[..]));
    }

    #[test]
    fn envelopes_and_bad_items() {
        let body = Bytes::from_static(
            br#"{"Documents":[{"current":{},"previous":{"id":"gone","_lsn":3},"metadata":{"operationType":"delete","lsn":9,"crts":5}}, 17]}"#,
        );
        let docs = parse_page(&body, Mode::AllVersionsAndDeletes).unwrap();
        assert_eq!(docs[0].lsn, Some(9));
        assert_eq!(docs[0].timestamp, Some(5000));
        assert_eq!(docs[0].key.as_deref(), Some(&b"gone"[..]));
        assert!(docs[1].error.is_some());
        assert_eq!(&docs[1].value[..], b"17");
    }
}
