//! `sluice verify`: reads a stamped output back (through a [`RecordReader`]), the DLQ and the
//! digest log, and reports what does not check out, per chain.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde::Serialize;
use serde_json::Value;

use super::chain::{digest_hash, ChainId, DigestEntry, GENESIS, STAMP_HEADER};
use super::intake::{Hex, Intake, Seen};
use super::jcs::canonical;
use super::read::file::FileReader;
use super::read::{ReadError, RecordReader};
use super::{decode_key, hex};

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("--public-key: {0}")]
    Key(String),
}

/// What `sluice verify` checks: the stamped records from one reader, the DLQ, the digests.
pub struct Inputs {
    pub records: Box<dyn RecordReader>,
    pub dlq: Option<PathBuf>,
    /// The digest log, or a copy of it (one digest entry per entry read).
    pub digests: Box<dyn RecordReader>,
    pub public_keys: Vec<String>,
    pub mac_keys: Vec<String>,
    pub field: String,
    /// The sink whose output this is (`--sink`); inferred from the records when absent.
    pub sink: Option<String>,
    /// Show a progress spinner on stderr (only when it is a terminal).
    pub progress: bool,
}

/// One finding.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Finding {
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    pub detail: String,
}

#[derive(Debug, Default, Serialize)]
pub struct ChainReport {
    pub chain: String,
    pub records_seen: u64,
    pub dead_lettered_seen: u64,
    pub identical_duplicates: u64,
    pub first_break: Option<u64>,
    pub findings: Vec<Finding>,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub ok: bool,
    pub chains: Vec<ChainReport>,
    /// Findings that belong to no chain (unstamped records, digests).
    pub findings: Vec<Finding>,
    pub digests: u64,
    /// Digest entries read again (a copy's redelivery), not counted in `digests`.
    pub repeated_digests: u64,
}

pub(super) fn finding(
    kind: &'static str,
    seq: Option<u64>,
    offset: Option<i64>,
    detail: String,
) -> Finding {
    Finding {
        kind,
        seq,
        offset,
        detail,
    }
}

/// A DLQ letter's record value and its `sluice.audit` header, when it has one (the file DLQ
/// keeps headers with `value` as text or `value_base64`).
fn stamped_by_header(letter: &Value) -> Option<(Vec<u8>, Vec<u8>)> {
    use base64::Engine;
    let bytes = |text: Option<&Value>, b64: Option<&Value>| -> Option<Vec<u8>> {
        match (text.and_then(Value::as_str), b64.and_then(Value::as_str)) {
            (Some(t), _) => Some(t.as_bytes().to_vec()),
            (None, Some(b)) => base64::engine::general_purpose::STANDARD.decode(b).ok(),
            (None, None) => None,
        }
    };
    let header = letter
        .get("headers")?
        .as_array()?
        .iter()
        .find(|h| h.get("key").and_then(Value::as_str) == Some(STAMP_HEADER))?;
    let stamp = bytes(header.get("value"), header.get("value_base64"))?;
    let value = bytes(letter.get("value"), letter.get("value_base64"))?;
    Some((value, stamp))
}

pub fn verify(mut inp: Inputs) -> Result<Report, VerifyError> {
    let mut keys = Vec::new();
    for k in &inp.public_keys {
        let b = decode_key(k).map_err(|e| VerifyError::Key(e.to_string()))?;
        keys.push(VerifyingKey::from_bytes(&b).map_err(|e| VerifyError::Key(e.to_string()))?);
    }
    let mut report = Report::default();
    let field = inp.field.clone();
    let ordered = inp.records.ordered();

    let mut intake = Intake::new(&inp.field, &inp.mac_keys);
    intake.expect_bytes(inp.records.size_hint());
    let bar = inp.progress.then(|| {
        let bar =
            indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
        bar.set_message(format!("records from {}", inp.records.describe()));
        bar
    });
    let mut n = 0u64;
    while let Some(e) = inp.records.next_entry()? {
        match &e.stamp {
            Some(h) => intake.take_with_header(&e.value, h, e.at, e.lane, false, &mut report),
            None => intake.take(&e.value, e.at, e.lane, false, &mut report),
        }
        n += 1;
        if let Some(b) = &bar {
            if n.is_multiple_of(1024) {
                b.set_position(n);
            }
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if let Some(d) = &inp.dlq {
        let mut dlq = FileReader::open(d)?;
        while let Some(e) = dlq.next_entry()? {
            let Ok(letter) = serde_json::from_slice::<Value>(&e.value) else {
                continue;
            };
            if let Some((value, header)) = stamped_by_header(&letter) {
                intake.take_with_header(&value, &header, e.at, 0, true, &mut report);
            } else if let Some(v) = letter.get("value").and_then(Value::as_str) {
                if v.contains(&format!("\"{field}\"")) {
                    intake.take(v.as_bytes(), e.at, 0, true, &mut report);
                }
            }
        }
    }

    // Digests: signature, link, and the furthest each chain reached. Entries link per
    // pipeline (a Kafka copy may hold several pipelines' logs); an entry identical to one
    // already read is a copy sent again after a crash, and is skipped.
    let mut claimed: BTreeMap<ChainId, Vec<DigestEntry>> = BTreeMap::new();
    let mut prev: BTreeMap<String, [u8; 32]> = BTreeMap::new();
    let mut read_already: BTreeSet<[u8; 32]> = BTreeSet::new();
    while let Some(entry) = inp.digests.next_entry()? {
        let (l, at) = (&entry.value, &entry.at);
        let e: DigestEntry = match serde_json::from_slice(l) {
            Ok(e) => e,
            Err(_) => {
                report.digests += 1;
                report.findings.push(finding(
                    "bad_digest",
                    None,
                    None,
                    format!("digest {at} is not a digest entry"),
                ));
                continue;
            }
        };
        let line_hash = serde_json::to_value(&e)
            .ok()
            .and_then(|v| canonical(&v).ok())
            .map(|c| digest_hash(&c))
            .unwrap_or_else(|| digest_hash(l));
        if !read_already.insert(line_hash) {
            report.repeated_digests += 1;
            continue;
        }
        report.digests += 1;
        let last = prev
            .insert(e.chain.pipeline.clone(), line_hash)
            .unwrap_or(GENESIS);
        if e.prev_digest != hex(&last) {
            report.findings.push(finding(
                "digest_chain_broken",
                None,
                None,
                format!("digest {at} does not link to the entry before it"),
            ));
        }
        let sig_ok = match (e.sig.as_deref().map(decode_sig), e.signed_bytes()) {
            (Some(Some(sig)), Ok(bytes)) => keys.iter().any(|k| k.verify(&bytes, &sig).is_ok()),
            _ => false,
        };
        if !sig_ok {
            report.findings.push(finding(
                "bad_digest_signature",
                Some(e.last_seq),
                None,
                format!(
                    "digest {at} (chain {}, key {}): the signature does not verify with any given public key",
                    e.chain, e.key_id
                ),
            ));
            continue;
        }
        claimed.entry(e.chain.clone()).or_default().push(e);
    }
    let mut chains = intake.chains;
    // The output holds one sink's records: the digests of other sinks' (and pipelines')
    // chains were checked above but are not compared with it. The sink is `--sink`, else
    // the one the records name; with no record at all every claimed chain is compared.
    let scope: BTreeSet<(String, String)> = match &inp.sink {
        Some(sink) => claimed
            .keys()
            .chain(chains.keys())
            .filter(|c| c.sink == *sink)
            .map(|c| (c.pipeline.clone(), c.sink.clone()))
            .collect(),
        None => chains
            .keys()
            .map(|c| (c.pipeline.clone(), c.sink.clone()))
            .collect(),
    };
    let in_scope =
        |c: &ChainId| scope.is_empty() || scope.contains(&(c.pipeline.clone(), c.sink.clone()));
    let ids: BTreeSet<ChainId> = chains
        .keys()
        .chain(claimed.keys().filter(|c| in_scope(c)))
        .cloned()
        .collect();
    for id in ids {
        let seen = chains.remove(&id).unwrap_or_default();
        let digests = claimed.remove(&id).unwrap_or_default();
        report
            .chains
            .push(check_chain(&id, seen, &digests, &inp.mac_keys, ordered));
    }
    report.ok = report.findings.is_empty() && report.chains.iter().all(|c| c.findings.is_empty());
    Ok(report)
}

fn decode_sig(text: &str) -> Option<Signature> {
    use base64::Engine as _;
    let b = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    let b: [u8; 64] = b.try_into().ok()?;
    Some(Signature::from_bytes(&b))
}

/// Checks one chain's records, in the order read; `ordered` says whether that order is the
/// write order (per lane), so that `reordered` can be judged.
fn check_chain(
    id: &ChainId,
    seen: Vec<(Seen, bool)>,
    digests: &[DigestEntry],
    macs: &[String],
    ordered: bool,
) -> ChainReport {
    let mut r = ChainReport {
        chain: id.to_string(),
        ..Default::default()
    };
    // seq -> the first record seen with it (its index in `seen`).
    let mut by_seq: BTreeMap<u64, usize> = BTreeMap::new();
    // The furthest sequence read so far, per lane.
    let mut max_seen: BTreeMap<i32, u64> = BTreeMap::new();
    for (i, (s, dead)) in seen.iter().enumerate() {
        let dead = *dead;
        let seq = s.stamp.seq;
        if dead {
            r.dead_lettered_seen += 1;
        } else {
            r.records_seen += 1;
        }
        if !s.hash_ok {
            let why = if s.stamp.hmac && macs.is_empty() {
                "HMAC stamp and no --mac-key given"
            } else {
                "the record does not match its hash (altered)"
            };
            r.findings.push(finding(
                "altered",
                Some(seq),
                Some(s.stamp.offset),
                format!("{}: {why}", s.at),
            ));
        }
        if let Some(first) = by_seq.get(&seq).map(|&f| &seen[f].0) {
            if first.stamp == s.stamp && first.digest == s.digest {
                r.identical_duplicates += 1;
            } else {
                r.findings.push(finding(
                    "conflicting_duplicate",
                    Some(seq),
                    Some(s.stamp.offset),
                    format!(
                        "{}: a second, different record with sequence {seq} (first at {}): inserted or forged",
                        s.at, first.at
                    ),
                ));
            }
            continue;
        }
        if !dead && ordered {
            let max = max_seen.entry(s.lane).or_default();
            if seq < *max {
                r.findings.push(finding(
                    "reordered",
                    Some(seq),
                    Some(s.stamp.offset),
                    format!("{}: sequence {seq} after {max}", s.at),
                ));
            }
            *max = (*max).max(seq);
        }
        by_seq.insert(seq, i);
    }
    // Links between consecutive sequences.
    let mut prev_seq: Option<(u64, &Hex)> = None;
    for (seq, &i) in &by_seq {
        let s = &seen[i].0;
        match &prev_seq {
            Some((p, hash)) if *p + 1 == *seq && **hash != s.stamp.prev => {
                r.findings.push(finding(
                    "broken_link",
                    Some(*seq),
                    Some(s.stamp.offset),
                    format!(
                        "{}: its previous hash is not record {p}'s hash (forged or inserted)",
                        s.at
                    ),
                ));
            }
            None if *seq == 1 && s.stamp.prev != Hex::Bytes(GENESIS) => {
                r.findings.push(finding(
                    "broken_link",
                    Some(1),
                    Some(s.stamp.offset),
                    "the first record does not start the chain".into(),
                ));
            }
            _ => {}
        }
        prev_seq = Some((*seq, &s.stamp.hash));
    }
    // Missing ranges, from 1 to the furthest seen or claimed.
    let claimed_last = digests.iter().map(|d| d.last_seq).max().unwrap_or(0);
    let seen_last = by_seq.keys().next_back().copied().unwrap_or(0);
    let mut missing: Vec<(u64, u64)> = Vec::new();
    let mut expect = 1u64;
    for seq in by_seq.keys() {
        if *seq > expect {
            missing.push((expect, seq - 1));
        }
        expect = seq + 1;
    }
    for (a, b) in &missing {
        r.findings.push(finding(
            "missing",
            Some(*a),
            None,
            format!("sequences {a}..={b} missing ({} records)", b - a + 1),
        ));
    }
    if claimed_last > seen_last {
        r.findings.push(finding(
            "tail_cut_off",
            Some(seen_last + 1),
            None,
            format!(
                "the digests say the chain reached {claimed_last}; the output ends at {seen_last} ({} records cut off)",
                claimed_last - seen_last
            ),
        ));
    }
    for d in digests {
        if let Some(s) = by_seq.get(&d.last_seq).map(|&i| &seen[i].0) {
            if !s.stamp.hash.is(&d.last_hash) {
                r.findings.push(finding(
                    "digest_mismatch",
                    Some(d.last_seq),
                    Some(s.stamp.offset),
                    format!(
                        "the signed digest's hash for sequence {} differs from the record's",
                        d.last_seq
                    ),
                ));
            }
        }
    }
    r.findings.sort_by_key(|f| f.seq.unwrap_or(0));
    r.first_break = r.findings.iter().filter_map(|f| f.seq).min();
    r
}

/// The human summary.
pub fn summary(rep: &Report) -> String {
    use std::fmt::Write as _;
    let mut t = String::new();
    for c in &rep.chains {
        let _ = writeln!(
            t,
            "chain {}: {} records, {} dead-lettered, {} identical duplicates{}",
            c.chain,
            c.records_seen,
            c.dead_lettered_seen,
            c.identical_duplicates,
            c.first_break
                .map(|b| format!(", first break at sequence {b}"))
                .unwrap_or_default()
        );
        for f in &c.findings {
            let _ = writeln!(t, "  {}: {}", f.kind, f.detail);
        }
    }
    for f in &rep.findings {
        let _ = writeln!(t, "{}: {}", f.kind, f.detail);
    }
    let _ = writeln!(
        t,
        "{} digests; {}",
        rep.digests,
        if rep.ok {
            "OK: everything checks out"
        } else {
            "FAILED: findings above"
        }
    );
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::integrity::chain::{content, Book, Stamp, ALG_HMAC};
    use crate::integrity::Keys;
    use ed25519_dalek::SigningKey;
    use sluice_sdk::{Origin, Record};

    #[test]
    fn a_dead_letter_stamped_in_a_header_gives_back_its_bytes_and_stamp() {
        let letter = serde_json::json!({
            "value_base64": "AAEC/w==",
            "headers": [
                {"key": "trace", "value": "x"},
                {"key": STAMP_HEADER, "value": "{\"seq\":1}"}
            ],
        });
        let (value, stamp) = stamped_by_header(&letter).unwrap();
        assert_eq!(value, [0, 1, 2, 255]);
        assert_eq!(stamp, br#"{"seq":1}"#);
        let no_header =
            serde_json::json!({"value": "{}", "headers": [{"key": "trace", "value": "x"}]});
        assert!(stamped_by_header(&no_header).is_none());
    }
    use std::sync::Arc;

    /// Stamped lines of one chain: (stamp, canonical content).
    fn stamps(n: i64) -> Vec<(Stamp, Vec<u8>)> {
        let signing = SigningKey::from_bytes(&[3u8; 32]);
        let keys = std::collections::BTreeMap::from([(
            "s".to_string(),
            Keys {
                key_id: "k".into(),
                signing,
                mac: None,
                field: "_audit".into(),
            },
        )]);
        let mut book = Book::new("p", keys, None).unwrap();
        (0..n)
            .map(|i| {
                let mut r =
                    Record::new(format!(r#"{{"i":{i}}}"#), Origin::new(Arc::from("t"), 0, i));
                book.stamp("s", &mut r).unwrap();
                let v: Value = serde_json::from_slice(&r.value).unwrap();
                let stamp: Stamp = serde_json::from_value(v["_audit"].clone()).unwrap();
                let (content, _) = content(&r.value, "_audit").unwrap();
                (stamp, content)
            })
            .collect()
    }

    fn stamped(n: i64) -> Vec<(Seen, bool)> {
        stamps(n)
            .iter()
            .enumerate()
            .map(|(i, (stamp, content))| {
                (
                    Seen::of(stamp, content, &format!("line {}", i + 1), &[]),
                    false,
                )
            })
            .collect()
    }

    fn id() -> ChainId {
        ChainId {
            pipeline: "p".into(),
            sink: "s".into(),
            stream: "t".into(),
            partition: 0,
        }
    }

    fn kinds(r: &ChainReport) -> Vec<&'static str> {
        r.findings.iter().map(|f| f.kind).collect()
    }

    #[test]
    fn replays_are_counted_and_tampering_is_named() {
        // A restart sends 3..5 again: identical duplicates, no finding.
        let mut seen = stamped(6);
        let again: Vec<(Seen, bool)> = stamped(6).into_iter().skip(3).collect();
        seen.extend(again);
        let r = check_chain(&id(), seen, &[], &[], true);
        assert!(r.findings.is_empty(), "{:?}", r.findings);
        assert_eq!((r.records_seen, r.identical_duplicates), (9, 3));

        // Changed content.
        let mut seen = stamped(4);
        seen[2].0 = Seen::of(&stamps(4)[2].0, br#"{"i":99}"#, "line 3", &[]);
        let r = check_chain(&id(), seen, &[], &[], true);
        assert_eq!(kinds(&r), ["altered"]);
        assert_eq!(r.first_break, Some(3));

        // Deleted and swapped.
        let mut seen = stamped(6);
        seen.remove(1);
        seen.swap(2, 3);
        let r = check_chain(&id(), seen, &[], &[], true);
        assert_eq!(kinds(&r), ["missing", "reordered"]);

        // Order holds per lane (a Kafka partition): records of one chain spread over two
        // lanes are in order; a reader without write order judges none.
        let mut seen = stamped(6);
        for (i, s) in seen.iter_mut().enumerate() {
            s.0.lane = (i % 2) as i32;
        }
        let r = check_chain(&id(), seen, &[], &[], true);
        assert!(r.findings.is_empty(), "{:?}", r.findings);
        let mut seen = stamped(6);
        seen.swap(1, 4);
        let r = check_chain(&id(), seen, &[], &[], false);
        assert!(r.findings.is_empty(), "{:?}", r.findings);

        // An HMAC stamp with no MAC key is not taken on trust.
        let mut seen = stamped(1);
        let mut stamp = stamps(1)[0].0.clone();
        stamp.alg = ALG_HMAC.into();
        seen[0].0 = Seen::of(&stamp, br#"{"i":0}"#, "line 1", &[]);
        let r = check_chain(&id(), seen, &[], &[], true);
        assert_eq!(kinds(&r), ["altered"]);
    }
}
