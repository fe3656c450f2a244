//! Partition key ranges: the unit a change feed is read by.

use std::sync::Arc;

use reqwest::header::{HeaderMap, HeaderValue};
use serde::Deserialize;

use crate::client::Client;
use crate::response::{self, Verdict};

/// One physical partition key range as `GET .../pkranges` lists it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct PkRange {
    /// Stable, unique per container; goes into `x-ms-documentdb-partitionkeyrangeid`.
    pub id: String,
    /// Effective partition key span `[min, max)` (hex strings; `""` and `"FF"` are the ends).
    #[serde(rename = "minInclusive", default)]
    pub min: String,
    #[serde(rename = "maxExclusive", default)]
    pub max: String,
    /// Ids this range was split or merged from, oldest first.
    #[serde(default)]
    pub parents: Vec<String>,
}

impl PkRange {
    /// True when `other`'s span lies within this one's.
    pub fn contains(&self, other: &PkRange) -> bool {
        span_contains(&self.min, &self.max, &other.min, &other.max)
    }
}

/// `[min, max)` contains `[omin, omax)`. EPKs are hex strings and compare as text; `"FF"` as
/// a maximum is the end of the key space.
pub fn span_contains(min: &str, max: &str, omin: &str, omax: &str) -> bool {
    let upper = |s: &str| s.to_ascii_uppercase();
    let end_ok = upper(max) == "FF" || upper(omax) <= upper(max);
    upper(min) <= upper(omin) && end_ok
}

/// A range as the source tracks it.
#[derive(Debug)]
pub struct RangeInfo {
    pub range: PkRange,
    pub id: Arc<str>,
    /// `<container>/<range id>`: the record's origin stream.
    pub stream: Arc<str>,
    /// The record's origin partition, see [`partition_of`].
    pub partition: i32,
}

impl RangeInfo {
    pub fn new(container: &str, range: PkRange) -> Self {
        RangeInfo {
            id: range.id.as_str().into(),
            stream: format!("{container}/{}", range.id).into(),
            partition: partition_of(&range.id),
            range,
        }
    }
}

/// The origin partition of the range with id `id` (also the partition of its checkpoints):
/// the id when it is a number (it always is on Azure), else a stable hash of it.
pub fn partition_of(id: &str) -> i32 {
    id.parse::<i32>()
        .ok()
        .filter(|p| *p >= 0)
        .unwrap_or_else(|| stable_hash(id))
}

/// FNV-1a, folded to a non-negative i32 (not randomised between runs, unlike std's hasher).
fn stable_hash(s: &str) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (h & 0x7fff_ffff) as i32
}

#[derive(Deserialize)]
struct RangesPage {
    #[serde(rename = "PartitionKeyRanges", default)]
    ranges: Vec<PkRange>,
}

/// Upper bound on pages, against a service that keeps answering with a continuation.
const MAX_PAGES: usize = 10_000;

/// Lists every current range of the container, following `x-ms-continuation`.
pub async fn list(client: &Client) -> Result<Vec<PkRange>, Verdict> {
    const WHAT: &str = "listing partition key ranges";
    let mut out = Vec::new();
    let mut continuation: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut headers = HeaderMap::new();
        if let Some(c) = continuation.as_deref() {
            let v = HeaderValue::from_str(c)
                .map_err(|_| Verdict::Fatal(format!("{WHAT}: unusable continuation `{c}`")))?;
            headers.insert("x-ms-continuation", v);
        }
        let resp = client
            .get_feed("pkranges", headers)
            .await
            .map_err(|e| response::transport(e, WHAT))?;
        if resp.status != reqwest::StatusCode::OK {
            return Err(response::classify(&resp, WHAT, client.endpoint().as_str()));
        }
        let page: RangesPage = serde_json::from_slice(&resp.body)
            .map_err(|e| Verdict::Transient(format!("{WHAT}: unreadable answer: {e}")))?;
        out.extend(page.ranges);
        continuation = resp
            .header("x-ms-continuation")
            .filter(|c| !c.is_empty())
            .map(str::to_string);
        if continuation.is_none() {
            // A range can appear twice when the listing moved under a split; keep the first.
            let mut seen = std::collections::HashSet::new();
            out.retain(|r: &PkRange| seen.insert(r.id.clone()));
            return Ok(out);
        }
    }
    Err(Verdict::Fatal(format!(
        "{WHAT}: more than {MAX_PAGES} pages; the service keeps sending a continuation"
    )))
}

/// The ranges that replace `gone` after a split: those naming it as a parent, else those whose
/// span lies within its span.
pub fn children_of<'a>(gone: &PkRange, current: &'a [PkRange]) -> Vec<&'a PkRange> {
    let by_parent: Vec<&PkRange> = current
        .iter()
        .filter(|r| r.id != gone.id && r.parents.contains(&gone.id))
        .collect();
    if !by_parent.is_empty() {
        return by_parent;
    }
    current
        .iter()
        .filter(|r| r.id != gone.id && gone.contains(r))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(id: &str, min: &str, max: &str, parents: &[&str]) -> PkRange {
        PkRange {
            id: id.into(),
            min: min.into(),
            max: max.into(),
            parents: parents.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn children_by_parent_or_span() {
        let gone = r("0", "", "80", &[]);
        let cur = [
            r("2", "", "40", &["0"]),
            r("3", "40", "80", &["0"]),
            r("1", "80", "FF", &[]),
        ];
        let ids: Vec<_> = children_of(&gone, &cur).iter().map(|r| &r.id).collect();
        assert_eq!(ids, ["2", "3"]);
        let cur = [
            r("2", "", "40", &[]),
            r("3", "40", "80", &[]),
            r("1", "80", "FF", &[]),
        ];
        let ids: Vec<_> = children_of(&gone, &cur).iter().map(|r| &r.id).collect();
        assert_eq!(ids, ["2", "3"]);
    }

    #[test]
    fn partitions() {
        assert_eq!(RangeInfo::new("c", r("12", "", "FF", &[])).partition, 12);
        let h = RangeInfo::new("c", r("abc", "", "FF", &[])).partition;
        assert!(h >= 0);
        assert_eq!(h, RangeInfo::new("c", r("abc", "", "FF", &[])).partition);
        assert_eq!(
            &*RangeInfo::new("ctl", r("3", "", "FF", &[])).stream,
            "ctl/3"
        );
    }
}
