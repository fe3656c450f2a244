//! `sluice verify`'s reading of one stored record: the stamp and whether the content matches
//! its hash, kept per chain in a few fixed-size fields (a million records are held until
//! their chain is checked).
//!
//! A record is canonicalised from its text ([`Canonicaliser`]) and only its stamp member is
//! deserialised, borrowing its strings; a record the text path leaves alone (not JSON, no
//! stamp, a stamp that does not deserialise that way) is parsed into a `Value` and judged
//! as such, which also names what is wrong with it.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::chain::{record_hash, ChainId, Stamp, ALG_HMAC, GENESIS};
use super::decode_key;
use super::jcs::canonical;
use super::jcs_text::{Canonicaliser, TopLevel};
use super::read::At;
use super::verify::{finding, Report};

/// The value of each lower-case hex digit; 0xff for every other byte.
static HEX_DIGIT: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// A stamp's `prev` or `hash`: 32 bytes when written as the 64 lower-case hex digits
/// stamping writes, else the text as it is (compared as text, as the stamp format says).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hex {
    Bytes([u8; 32]),
    Text(Box<str>),
}

impl Hex {
    pub fn parse(text: &str) -> Self {
        if let Ok(digits) = <&[u8; 64]>::try_from(text.as_bytes()) {
            let mut out = [0u8; 32];
            // A byte that is not a lower-case hex digit sets the high bits of `bad`.
            let mut bad = 0u8;
            for (o, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
                let (h, l) = (HEX_DIGIT[pair[0] as usize], HEX_DIGIT[pair[1] as usize]);
                bad |= h | l;
                *o = h << 4 | (l & 0xf);
            }
            if bad & 0xf0 == 0 {
                return Hex::Bytes(out);
            }
        }
        Hex::Text(text.into())
    }

    /// The 32 bytes it decodes to (other spellings through [`decode_key`], as keys are).
    fn bytes(&self) -> Option<[u8; 32]> {
        match self {
            Hex::Bytes(b) => Some(*b),
            Hex::Text(t) => decode_key(t).ok(),
        }
    }

    /// Whether it is written as `text`.
    pub fn is(&self, text: &str) -> bool {
        match self {
            Hex::Bytes(b) => Hex::parse(text) == Hex::Bytes(*b),
            Hex::Text(t) => **t == *text,
        }
    }
}

/// A stamp as read, without its chain (the records are kept per chain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compact {
    pub v: u32,
    pub seq: u64,
    pub offset: i64,
    pub prev: Hex,
    pub hash: Hex,
    pub hmac: bool,
    /// `alg` and `key_id`, as indexes into [`Intake`]'s names.
    alg: u32,
    key_id: u32,
}

/// One record read.
#[derive(Debug)]
pub struct Seen {
    pub stamp: Compact,
    /// `SHA-256(prev ‖ content)`: with the same stamp (so the same `prev`), equal exactly
    /// when the contents are, which tells identical duplicates from different ones. `None`
    /// when that is the stamp's own `hash` (a SHA-256 stamp that checks out), which keeps a
    /// million records' state 24 bytes a record smaller.
    pub digest: Option<Box<[u8; 32]>>,
    /// The content hashes to the stamp's `hash` (with one of the MAC keys for HMAC stamps).
    pub hash_ok: bool,
    /// Where the record was read (`line 12`, `row id=5`).
    pub at: At,
    /// The reader's order lane (a Kafka partition); 0 elsewhere.
    pub lane: i32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChainRef<'a> {
    #[serde(borrow)]
    pipeline: Cow<'a, str>,
    #[serde(borrow)]
    sink: Cow<'a, str>,
    #[serde(borrow)]
    stream: Cow<'a, str>,
    partition: i32,
}

impl ChainRef<'_> {
    fn is(&self, id: &ChainId) -> bool {
        self.partition == id.partition
            && self.sink == id.sink
            && self.stream == id.stream
            && self.pipeline == id.pipeline
    }

    fn to_id(&self) -> ChainId {
        ChainId {
            pipeline: self.pipeline.to_string(),
            sink: self.sink.to_string(),
            stream: self.stream.to_string(),
            partition: self.partition,
        }
    }
}

/// [`Stamp`] with its strings borrowed from the record where it has no escapes. Unknown
/// members are refused (the record then takes the `Value` path): parsing this is what checks
/// the stamp's text on the text path, which needs the stamp's shape to be known.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StampRef<'a> {
    v: u32,
    #[serde(borrow)]
    chain: ChainRef<'a>,
    seq: u64,
    offset: i64,
    #[serde(borrow)]
    prev: Cow<'a, str>,
    #[serde(borrow)]
    hash: Cow<'a, str>,
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(borrow)]
    key_id: Cow<'a, str>,
}

impl<'a> From<&'a Stamp> for StampRef<'a> {
    fn from(s: &'a Stamp) -> Self {
        StampRef {
            v: s.v,
            chain: ChainRef {
                pipeline: Cow::Borrowed(&s.chain.pipeline),
                sink: Cow::Borrowed(&s.chain.sink),
                stream: Cow::Borrowed(&s.chain.stream),
                partition: s.chain.partition,
            },
            seq: s.seq,
            offset: s.offset,
            prev: Cow::Borrowed(&s.prev),
            hash: Cow::Borrowed(&s.hash),
            alg: Cow::Borrowed(&s.alg),
            key_id: Cow::Borrowed(&s.key_id),
        }
    }
}

/// The records read so far, per chain, in the order read.
pub struct Intake {
    field: String,
    macs: Vec<String>,
    canon: Canonicaliser,
    content: Vec<u8>,
    /// The few distinct `alg` and `key_id` values.
    names: Vec<String>,
    /// (record, from the DLQ) per chain.
    pub chains: BTreeMap<ChainId, Vec<(Seen, bool)>>,
    /// The chain of the last record, found again without building its id.
    last: Option<ChainId>,
    /// The size of what is read, when known: the first chain is given room for all of it
    /// at once (most outputs hold one chain), rather than doubling its way there with a
    /// copy and fresh pages at each step.
    expected_bytes: Option<u64>,
}

impl Intake {
    pub fn new(field: &str, macs: &[String]) -> Self {
        Intake {
            field: field.to_string(),
            macs: macs.to_vec(),
            canon: Canonicaliser::default(),
            content: Vec::new(),
            names: Vec::new(),
            chains: BTreeMap::new(),
            last: None,
            expected_bytes: None,
        }
    }

    /// The size of the records to be read, in bytes (a file's length).
    pub fn expect_bytes(&mut self, bytes: Option<u64>) {
        self.expected_bytes = bytes;
    }

    /// Reads one stored record (`dead`: from the DLQ); what is wrong with it alone goes to
    /// `report`.
    pub fn take(&mut self, value: &[u8], at: At, lane: i32, dead: bool, report: &mut Report) {
        let at = if dead {
            At::Other(format!("DLQ {at}"))
        } else {
            at
        };
        self.content.clear();
        let stamp = match self.canon.object(value, &self.field, &mut self.content) {
            Ok(TopLevel {
                excluded: Some(span),
                ..
            }) => serde_json::from_slice::<StampRef>(&value[span]).ok(),
            _ => None,
        };
        match stamp {
            Some(stamp) => self.keep(&stamp, value.len(), at, lane, dead),
            None => self.take_parsed(value, at, lane, dead, report),
        }
    }

    /// Reads one stored record whose stamp came beside it (`header`, the `sluice.audit`
    /// header): a value that is not a JSON object is hashed as its bytes, as it was stamped.
    /// A JSON object carries its stamp in `field`, and the header is not looked at.
    pub fn take_with_header(
        &mut self,
        value: &[u8],
        header: &[u8],
        at: At,
        lane: i32,
        dead: bool,
        report: &mut Report,
    ) {
        if matches!(serde_json::from_slice::<Value>(value), Ok(Value::Object(_))) {
            return self.take(value, at, lane, dead, report);
        }
        let at = if dead {
            At::Other(format!("DLQ {at}"))
        } else {
            at
        };
        match serde_json::from_slice::<StampRef>(header) {
            Ok(stamp) => {
                self.content.clear();
                self.content.extend_from_slice(value);
                self.keep(&stamp, value.len(), at, lane, dead);
            }
            Err(_) => report.findings.push(finding(
                "bad_stamp",
                None,
                None,
                format!("{at}: the `sluice.audit` header is not in the stamp format (forged?)"),
            )),
        }
    }

    /// The `Value` path: any record, with findings for those that are not stamped records.
    fn take_parsed(&mut self, value: &[u8], at: At, lane: i32, dead: bool, report: &mut Report) {
        let field = &self.field;
        let mut v: Value = match serde_json::from_slice(value) {
            Ok(v) => v,
            Err(_) => {
                report.findings.push(finding(
                    "unreadable_record",
                    None,
                    None,
                    format!("{at} is not JSON"),
                ));
                return;
            }
        };
        let Some(stamp) = v.as_object_mut().and_then(|m| m.remove(field)) else {
            report.findings.push(finding(
                "unstamped_record",
                None,
                None,
                format!("{at} has no `{field}` stamp (inserted?)"),
            ));
            return;
        };
        let stamp: Stamp = match serde_json::from_value(stamp) {
            Ok(s) => s,
            Err(_) => {
                report.findings.push(finding(
                    "bad_stamp",
                    None,
                    None,
                    format!("{at}: the stamp is not in the stamp format (forged?)"),
                ));
                return;
            }
        };
        match canonical(&v) {
            Ok(c) => {
                self.content = c;
                self.keep(&StampRef::from(&stamp), value.len(), at, lane, dead);
            }
            Err(e) => report.findings.push(finding(
                "unreadable_record",
                Some(stamp.seq),
                Some(stamp.offset),
                format!("{at}: {e}"),
            )),
        }
    }

    /// Checks the record's hash at once (its content is in `self.content`) and files it
    /// under its chain.
    fn keep(&mut self, stamp: &StampRef, len: usize, at: At, lane: i32, dead: bool) {
        let seen = Seen::new(stamp, &self.content, at, lane, &self.macs, &mut self.names);
        let same = self.last.as_ref().is_some_and(|id| stamp.chain.is(id));
        if !same {
            self.last = Some(stamp.chain.to_id());
        }
        if let Some(id) = &self.last {
            match self.chains.get_mut(id) {
                Some(list) => list.push((seen, dead)),
                None => {
                    let room = match self.expected_bytes.take() {
                        // Lines of about this one's length, and their newlines.
                        Some(bytes) => (bytes / (len as u64 + 1)).min(1 << 26) as usize,
                        None => 0,
                    };
                    let mut list = Vec::with_capacity(room.max(1));
                    list.push((seen, dead));
                    self.chains.insert(id.clone(), list);
                }
            }
        }
    }
}

impl Seen {
    fn new(
        stamp: &StampRef,
        content: &[u8],
        at: At,
        lane: i32,
        macs: &[String],
        names: &mut Vec<String>,
    ) -> Self {
        let prev = Hex::parse(&stamp.prev);
        let hash = Hex::parse(&stamp.hash);
        let prev_bytes = prev.bytes().unwrap_or(GENESIS);
        let want = hash.bytes();
        let hmac = stamp.alg == ALG_HMAC;
        let digest = record_hash(&prev_bytes, content, None);
        let hash_ok = if hmac {
            macs.iter()
                .any(|k| Some(record_hash(&prev_bytes, content, Some(k.as_bytes()))) == want)
        } else {
            Some(digest) == want
        };
        let digest = (hmac || !hash_ok).then(|| Box::new(digest));
        Seen {
            stamp: Compact {
                v: stamp.v,
                seq: stamp.seq,
                offset: stamp.offset,
                prev,
                hash,
                hmac,
                alg: name_index(names, &stamp.alg),
                key_id: name_index(names, &stamp.key_id),
            },
            digest,
            hash_ok,
            at,
            lane,
        }
    }

    /// For tests: a record with this stamp and content.
    #[cfg(test)]
    pub fn of(stamp: &Stamp, content: &[u8], at: &str, macs: &[String]) -> Self {
        Seen::new(
            &StampRef::from(stamp),
            content,
            At::Other(at.to_string()),
            0,
            macs,
            &mut Vec::new(),
        )
    }
}

fn name_index(names: &mut Vec<String>, name: &str) -> u32 {
    let i = match names.iter().position(|n| n == name) {
        Some(i) => i,
        None => {
            names.push(name.to_string());
            names.len() - 1
        }
    };
    i as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_keeps_the_spelling_it_was_written_in() {
        let lower = "ab".repeat(32);
        assert_eq!(Hex::parse(&lower), Hex::Bytes([0xab; 32]));
        let upper = "AB".repeat(32);
        assert!(matches!(Hex::parse(&upper), Hex::Text(_)));
        assert_ne!(Hex::parse(&upper), Hex::parse(&lower));
        assert_eq!(Hex::parse(&upper).bytes(), Some([0xab; 32]));
        assert!(Hex::parse(&lower).is(&lower) && !Hex::parse(&lower).is(&upper));
        assert!(Hex::parse("x").is("x") && Hex::parse("x").bytes().is_none());
    }

    #[test]
    fn the_text_and_value_paths_read_a_record_alike() {
        let stamp = |seq: u64| {
            format!(
                r#"{{"v":1,"chain":{{"pipeline":"p","sink":"s","stream":"t\u00e9","partition":0}},"seq":{seq},"offset":7,"prev":"{}","hash":"{}","alg":"sha256","key_id":"k"}}"#,
                "0".repeat(64),
                "1".repeat(64)
            )
        };
        let mut a = Intake::new("_audit", &[]);
        let mut report = Report::default();
        // Text path; then a repeated stamp member the borrowed stamp rejects: `Value` path.
        let fast = format!(r#"{{"b":1,"_audit":{},"a":"x"}}"#, stamp(1));
        a.take(fast.as_bytes(), At::Line(1), 0, false, &mut report);
        let slow = format!(
            r#"{{"b":1,"_audit":{},"a":"x"}}"#,
            stamp(1).replace("\"v\":1", "\"v\":1,\"v\":1")
        );
        a.take(slow.as_bytes(), At::Line(2), 0, false, &mut report);
        assert!(report.findings.is_empty(), "{:?}", report.findings);
        let list = &a.chains.values().next().unwrap();
        assert_eq!(a.chains.len(), 1);
        assert_eq!(a.chains.keys().next().unwrap().stream, "t\u{e9}");
        assert_eq!(list[0].0.stamp, list[1].0.stamp);
        assert_eq!(list[0].0.digest, list[1].0.digest);

        for (text, kind) in [
            ("not json", "unreadable_record"),
            (r#"{"a":1}"#, "unstamped_record"),
            (r#"{"_audit":{"v":1}}"#, "bad_stamp"),
        ] {
            let mut report = Report::default();
            a.take(text.as_bytes(), At::Line(3), 0, false, &mut report);
            assert_eq!(report.findings[0].kind, kind);
        }
    }
}
