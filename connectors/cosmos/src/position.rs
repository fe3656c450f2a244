//! Where a range reader stands, and the checkpoint text that brings it back there.
//!
//! A page can only be re-read from the continuation it was fetched with, so a position inside
//! a page is "that continuation, minus the documents already done". Done documents are named
//! by LSN rather than by count: in latest-version mode a document updated after it was read
//! leaves its old place in the page (it comes back later with a new LSN), which would shift a
//! count. Documents of one transaction share an LSN, so a position in the middle of one also
//! lists the ids done at that LSN. Counting is kept only for documents without `_lsn`.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::feed::Doc;
use crate::ranges::PkRange;

/// What a change-feed request continues from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// No `If-None-Match`: the whole retained history.
    Beginning,
    /// `If-None-Match: *`.
    Now,
    /// `If-Modified-Since`.
    Since(SystemTime),
    /// `If-None-Match: <etag>`, sent exactly as received.
    Etag(String),
}

/// Documents at the start of the next page(s) that were already delivered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Skip {
    /// Documents with a lower LSN are done; at this LSN, see `ids`.
    pub lsn: Option<i64>,
    /// When empty every document at `lsn` is done; else only these (a transaction cut in two).
    pub ids: Vec<String>,
    /// The first documents without `_lsn` that are done.
    pub count: u32,
}

impl Skip {
    /// Marks the documents of a page that were already done. Returns what still applies to
    /// the pages after it.
    pub fn apply(&self, docs: &mut [Doc]) -> Skip {
        let mut count = self.count;
        let mut past = false;
        for d in docs.iter_mut() {
            match (d.lsn, self.lsn) {
                (Some(lsn), Some(l)) if lsn < l => d.skipped = true,
                (Some(lsn), Some(l)) if lsn == l => {
                    d.skipped = self.ids.is_empty()
                        || d.key
                            .as_deref()
                            .is_some_and(|k| self.ids.iter().any(|i| i.as_bytes() == k));
                }
                (Some(_), Some(_)) => past = true,
                (None, _) if count > 0 => {
                    count -= 1;
                    d.skipped = true;
                }
                _ => {}
            }
        }
        if past || self.lsn.is_none() {
            Skip {
                count,
                ..Skip::default()
            }
        } else {
            Skip {
                count,
                ..self.clone()
            }
        }
    }

    /// The position right after `docs[upto]`, for a page fetched from `from`: every document
    /// up to it, and every one marked skipped, is done.
    pub fn after(docs: &[Doc], upto: usize, from: &Skip) -> Skip {
        let Some(done) = docs.get(upto) else {
            return from.clone();
        };
        match done.lsn {
            Some(l) => {
                let in_group = |d: &&Doc| d.lsn == Some(l);
                let whole_group = docs
                    .iter()
                    .enumerate()
                    .filter(|(_, d)| in_group(d))
                    .all(|(i, d)| i <= upto || d.skipped);
                let ids = if whole_group {
                    Vec::new()
                } else {
                    docs.iter()
                        .enumerate()
                        .filter(|(i, d)| in_group(d) && (*i <= upto || d.skipped))
                        .filter_map(|(_, d)| d.key.as_deref())
                        .map(|k| String::from_utf8_lossy(k).into_owned())
                        .collect()
                };
                Skip {
                    lsn: Some(l),
                    ids,
                    count: 0,
                }
            }
            None => Skip {
                // Counted from the start of the page, skipped documents included.
                count: docs[..=upto].iter().filter(|d| d.lsn.is_none()).count() as u32,
                ..from.clone()
            },
        }
    }
}

/// A reader's position: the continuation of the next request and what to skip in its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub resume: Resume,
    pub skip: Skip,
}

impl Cursor {
    pub fn new(resume: Resume) -> Self {
        Cursor {
            resume,
            skip: Skip::default(),
        }
    }
}

/// The checkpoint text: compact JSON, with the range's span and lineage so that after a split
/// the children of a range can find it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stored {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// RFC 1123 start time, before the first etag of a point-in-time start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// `If-None-Match: *` before the first etag of a start from now.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub now: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lsn: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skip: u32,
    /// The range's span `[min, max)`.
    #[serde(default)]
    pub min: String,
    #[serde(default)]
    pub max: String,
    /// The range's ancestors, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Stored {
    pub fn new(cursor: &Cursor, range: &PkRange) -> Self {
        let mut s = Stored {
            lsn: cursor.skip.lsn,
            ids: cursor.skip.ids.clone(),
            skip: cursor.skip.count,
            min: range.min.clone(),
            max: range.max.clone(),
            parents: range.parents.clone(),
            ..Stored::default()
        };
        match &cursor.resume {
            Resume::Beginning => {}
            Resume::Now => s.now = true,
            Resume::Since(t) => s.since = Some(httpdate::fmt_http_date(*t)),
            Resume::Etag(e) => s.etag = Some(e.clone()),
        }
        s
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        serde_json::from_str(text).map_err(|e| format!("unreadable checkpoint `{text}`: {e}"))
    }

    pub fn to_text(&self) -> String {
        // Serializing a plain struct of strings and numbers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn cursor(&self) -> Result<Cursor, String> {
        let resume = match (&self.etag, &self.since, self.now) {
            (Some(e), _, _) => Resume::Etag(e.clone()),
            (None, Some(t), _) => Resume::Since(
                httpdate::parse_http_date(t).map_err(|e| format!("checkpoint time `{t}`: {e}"))?,
            ),
            (None, None, true) => Resume::Now,
            (None, None, false) => Resume::Beginning,
        };
        Ok(Cursor {
            resume,
            skip: Skip {
                lsn: self.lsn,
                ids: self.ids.clone(),
                count: self.skip,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn doc(id: &str, lsn: Option<i64>) -> Doc {
        Doc {
            value: Bytes::new(),
            key: Some(Bytes::copy_from_slice(id.as_bytes())),
            lsn,
            timestamp: None,
            error: None,
            skipped: false,
        }
    }

    #[test]
    fn skip_by_lsn_survives_an_update_that_moved_a_document() {
        // First read: a(5) b(6) c(7); a and b done. Then a is updated (lsn 20): a re-read from
        // the same continuation gives b(6) c(7) a(20) and must deliver c and the new a.
        let mut docs = vec![doc("a", Some(5)), doc("b", Some(6)), doc("c", Some(7))];
        let s = Skip::after(&docs, 1, &Skip::default());
        assert_eq!(s.lsn, Some(6));
        assert!(s.ids.is_empty());
        docs = vec![doc("b", Some(6)), doc("c", Some(7)), doc("a", Some(20))];
        let rest = s.apply(&mut docs);
        let out: Vec<bool> = docs.iter().map(|d| d.skipped).collect();
        assert_eq!(out, [true, false, false]);
        assert_eq!(rest, Skip::default());
    }

    #[test]
    fn position_inside_a_transaction_lists_ids() {
        let docs = vec![doc("x", Some(9)), doc("y", Some(9)), doc("z", Some(9))];
        let s = Skip::after(&docs, 1, &Skip::default());
        assert_eq!(s.lsn, Some(9));
        assert_eq!(s.ids, ["x", "y"]);
        let mut again = vec![doc("y", Some(9)), doc("x", Some(9)), doc("z", Some(9))];
        s.apply(&mut again);
        let out: Vec<bool> = again.iter().map(|d| d.skipped).collect();
        assert_eq!(out, [true, true, false]);
        // The whole group done: no ids needed.
        assert!(Skip::after(&docs, 2, &Skip::default()).ids.is_empty());
    }

    #[test]
    fn skip_carries_over_until_a_later_lsn_is_seen() {
        let s = Skip {
            lsn: Some(10),
            ..Skip::default()
        };
        let mut page = vec![doc("a", Some(8)), doc("b", Some(10))];
        let rest = s.apply(&mut page);
        assert!(page.iter().all(|d| d.skipped));
        assert_eq!(rest, s);
        let mut page = vec![doc("c", Some(11))];
        assert_eq!(rest.apply(&mut page), Skip::default());
        assert!(!page[0].skipped);
    }

    #[test]
    fn count_fallback_without_lsn() {
        let docs = vec![doc("a", None), doc("b", None), doc("c", None)];
        let s = Skip::after(&docs, 1, &Skip::default());
        assert_eq!(s.count, 2);
        let mut again = docs.clone();
        s.apply(&mut again);
        assert_eq!(
            again.iter().map(|d| d.skipped).collect::<Vec<_>>(),
            [true, true, false]
        );
    }

    #[test]
    fn stored_round_trip() {
        let range = PkRange {
            id: "4".into(),
            min: "".into(),
            max: "3F".into(),
            parents: vec!["0".into()],
        };
        let c = Cursor {
            resume: Resume::Etag("\"42\"".into()),
            skip: Skip {
                lsn: Some(57),
                ids: vec!["a".into()],
                count: 0,
            },
        };
        let text = Stored::new(&c, &range).to_text();
        assert_eq!(
            text,
            r#"{"etag":"\"42\"","lsn":57,"ids":["a"],"min":"","max":"3F","parents":["0"]}"#
        );
        assert_eq!(Stored::parse(&text).unwrap().cursor().unwrap(), c);
        let since = Cursor::new(Resume::Since(
            SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_718_093_551),
        ));
        let s = Stored::new(&since, &range);
        assert_eq!(s.since.as_deref(), Some("Tue, 11 Jun 2024 08:12:31 GMT"));
        assert_eq!(s.cursor().unwrap(), since);
        assert!(Stored::parse("{\"etag\":1}").is_err());
    }
}
