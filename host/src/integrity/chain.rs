//! Stamping records per chain, the chain state kept with the committed position, and the
//! signed digest log.
//!
//! A chain is (pipeline, sink, stream, partition). A record entering a sink's lane gets the
//! next sequence number of its chain and `hash = H(prev ‖ JCS(record without the stamp))`.
//! The state saved with a commit through offset X is the one after the last record stamped
//! at an offset <= X, so a restart from X stamps the records read again identically.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use ed25519_dalek::Signer;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};
use sluice_sdk::{Header, Origin, Record};

use super::jcs::{canonical, JcsError};
use super::jcs_text::Canonicaliser;
use super::{b64, hex, Keys};

/// The previous hash of a chain's first record.
pub const GENESIS: [u8; 32] = [0u8; 32];
/// The header carrying the stamp of a record whose value is not a JSON object.
pub const STAMP_HEADER: &str = "sluice.audit";
pub const ALG_SHA256: &str = "sha256";
pub const ALG_HMAC: &str = "hmac-sha256";

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ChainId {
    pub pipeline: String,
    pub sink: String,
    pub stream: String,
    pub partition: i32,
}

impl std::fmt::Display for ChainId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}",
            self.pipeline, self.sink, self.stream, self.partition
        )
    }
}

/// The stamp a record carries (in its `field`, or as JSON in the `sluice.audit` header).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    pub v: u32,
    pub chain: ChainId,
    pub seq: u64,
    /// The record's source offset within its partition.
    pub offset: i64,
    /// Hex of the previous record's hash (64 zeros for the first).
    pub prev: String,
    /// Hex of this record's hash.
    pub hash: String,
    pub alg: String,
    pub key_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum IntegrityError {
    #[error("digest log {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("canonical JSON: {0}")]
    Jcs(#[from] JcsError),
    #[error("saved chain state is corrupt: {0}")]
    State(String),
}

/// `H(prev ‖ canonical)`: SHA-256, or HMAC-SHA256 keyed with `mac`.
pub fn record_hash(prev: &[u8; 32], canonical: &[u8], mac: Option<&[u8]>) -> [u8; 32] {
    match mac {
        None => {
            let mut h = Sha256::new();
            h.update(prev);
            h.update(canonical);
            h.finalize().into()
        }
        Some(key) => {
            // HMAC takes keys of any length.
            let mut m = match <Hmac<Sha256> as Mac>::new_from_slice(key) {
                Ok(m) => m,
                Err(_) => return [0u8; 32],
            };
            m.update(prev);
            m.update(canonical);
            m.finalize().into_bytes().into()
        }
    }
}

/// A JSON object record's members.
pub type Object = Map<String, Value>;

/// What a record's hash is computed over: the JCS of its JSON object without `field`, or
/// the raw bytes when the value is not a JSON object. Returns the object too (stamp removed).
pub fn content(value: &[u8], field: &str) -> Result<(Vec<u8>, Option<Object>), JcsError> {
    match serde_json::from_slice::<Value>(value) {
        Ok(Value::Object(mut m)) => {
            m.shift_remove(field);
            let obj = Value::Object(m);
            let c = super::jcs::canonical_sized(&obj, value.len())?;
            match obj {
                Value::Object(m) => Ok((c, Some(m))),
                _ => Ok((c, None)),
            }
        }
        _ => Ok((value.to_vec(), None)),
    }
}

/// State of one chain.
#[derive(Debug, Clone)]
struct ChainState {
    /// Last stamped.
    seq: u64,
    last: [u8; 32],
    /// The source offset of the last stamped record (or of the position the state was
    /// restored at); `None` before the first.
    last_offset: Option<i64>,
    /// As of the committed position.
    committed_seq: u64,
    committed_hash: [u8; 32],
    /// Sequence the last digest covered.
    digested: u64,
    dead_since_digest: u64,
    /// Stamped, not yet committed: (offset, seq, hash, dead-lettered).
    pending: VecDeque<(i64, u64, [u8; 32], bool)>,
    /// The stamp text that is the same for every record of the chain, written at its first
    /// stamp in this run.
    text: Option<StampText>,
}

/// A chain's stamp text around the per-record numbers and hashes, in the member order of
/// [`Stamp`]'s serialisation.
#[derive(Debug, Clone)]
struct StampText {
    /// `"field":{"v":1,"chain":{...},"seq":`
    head: Vec<u8>,
    /// `","alg":"...","key_id":"..."}`
    tail: Vec<u8>,
}

impl StampText {
    fn new(field: &str, id: &ChainId, alg: &str, key_id: &str) -> Result<Self, serde_json::Error> {
        let mut head = serde_json::to_vec(field)?;
        head.extend_from_slice(b":{\"v\":1,\"chain\":");
        serde_json::to_writer(&mut head, id)?;
        head.extend_from_slice(b",\"seq\":");
        let mut tail = b"\",\"alg\":".to_vec();
        serde_json::to_writer(&mut tail, alg)?;
        tail.extend_from_slice(b",\"key_id\":");
        serde_json::to_writer(&mut tail, key_id)?;
        tail.push(b'}');
        Ok(StampText { head, tail })
    }

    /// Appends `"field":{stamp}`.
    fn write(&self, seq: u64, offset: i64, prev: &[u8; 32], hash: &[u8; 32], out: &mut Vec<u8>) {
        let mut n = itoa::Buffer::new();
        out.extend_from_slice(&self.head);
        out.extend_from_slice(n.format(seq).as_bytes());
        out.extend_from_slice(b",\"offset\":");
        out.extend_from_slice(n.format(offset).as_bytes());
        out.extend_from_slice(b",\"prev\":\"");
        push_hex(prev, out);
        out.extend_from_slice(b"\",\"hash\":\"");
        push_hex(hash, out);
        out.extend_from_slice(&self.tail);
    }
}

fn push_hex(bytes: &[u8; 32], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = [0u8; 64];
    for (pair, b) in text.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX[(b >> 4) as usize];
        pair[1] = HEX[(b & 0xf) as usize];
    }
    out.extend_from_slice(&text);
}

impl ChainState {
    fn at(seq: u64, hash: [u8; 32]) -> Self {
        ChainState {
            seq,
            last: hash,
            last_offset: None,
            committed_seq: seq,
            committed_hash: hash,
            digested: seq,
            dead_since_digest: 0,
            pending: VecDeque::new(),
            text: None,
        }
    }
}

/// A chain's state as saved in the offset store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedChain {
    pub sink: String,
    pub stream: String,
    pub partition: i32,
    pub seq: u64,
    pub hash: String,
}

/// One digest entry (a line of `<pipeline>.digests`, in JCS form).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestEntry {
    pub v: u32,
    pub chain: ChainId,
    pub first_seq: u64,
    pub last_seq: u64,
    pub last_hash: String,
    pub records: u64,
    pub dead_lettered: u64,
    pub time: String,
    pub prev_digest: String,
    pub key_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sig: Option<String>,
}

impl DigestEntry {
    /// The bytes signed: the JCS of the entry without `sig`.
    pub fn signed_bytes(&self) -> Result<Vec<u8>, IntegrityError> {
        let mut unsigned = self.clone();
        unsigned.sig = None;
        let v =
            serde_json::to_value(&unsigned).map_err(|e| IntegrityError::State(e.to_string()))?;
        Ok(canonical(&v)?)
    }
}

/// Every chain of one pipeline run; shared by the sinks' lanes, the dead-letter writers and
/// the commit step.
pub struct Book {
    pipeline: String,
    chains: BTreeMap<ChainId, ChainState>,
    /// Keys per sink name.
    keys: BTreeMap<String, Keys>,
    dirty: bool,
    /// The chain of the last record stamped, found again without building its id.
    last: Option<ChainId>,
    canon: Canonicaliser,
    /// The last record's canonical content (its capacity is reused).
    content: Vec<u8>,
}

impl Book {
    /// A book resuming the chains saved with the committed position.
    pub fn new(
        pipeline: &str,
        keys: BTreeMap<String, Keys>,
        saved: Option<&Value>,
    ) -> Result<Self, IntegrityError> {
        let mut chains = BTreeMap::new();
        if let Some(v) = saved {
            let list: Vec<SavedChain> = serde_json::from_value(v.clone())
                .map_err(|e| IntegrityError::State(e.to_string()))?;
            for c in list {
                let hash = super::decode_key(&c.hash).map_err(|_| {
                    IntegrityError::State("a chain hash is not 32 bytes of hex".into())
                })?;
                let id = ChainId {
                    pipeline: pipeline.to_string(),
                    sink: c.sink,
                    stream: c.stream,
                    partition: c.partition,
                };
                chains.insert(id, ChainState::at(c.seq, hash));
            }
        }
        Ok(Book {
            pipeline: pipeline.to_string(),
            chains,
            keys,
            dirty: false,
            last: None,
            canon: Canonicaliser::default(),
            content: Vec::new(),
        })
    }

    pub fn has_sink(&self, sink: &str) -> bool {
        self.keys.contains_key(sink)
    }

    fn id(&self, sink: &str, o: &Origin) -> ChainId {
        ChainId {
            pipeline: self.pipeline.clone(),
            sink: sink.to_string(),
            stream: o.stream.to_string(),
            partition: o.partition,
        }
    }

    /// Stamps a record for `sink` (the next in its chain).
    ///
    /// A JSON object is canonicalised from its text and keeps its text, the stamp appended
    /// before the closing brace. One that already has the stamp member, repeats a name or
    /// spans lines (a JSON-lines output needs one line per record), and any text the text
    /// canonicaliser leaves alone, goes through [`content`]: parsed, canonicalised from the
    /// tree and written out again compact.
    pub fn stamp(&mut self, sink: &str, r: &mut Record) -> Result<(), IntegrityError> {
        let Some(keys) = self.keys.get(sink) else {
            return Ok(());
        };
        let mut bytes = std::mem::take(&mut self.content);
        bytes.clear();
        let text_path = match self.canon.object(&r.value, &keys.field, &mut bytes) {
            Ok(top)
                if top.excluded.is_none()
                    && !top.duplicates
                    && memchr::memchr2(b'\n', b'\r', &r.value).is_none() =>
            {
                Some(top)
            }
            _ => None,
        };
        let obj = match text_path {
            Some(_) => None,
            None => {
                let (c, obj) = content(&r.value, &keys.field)?;
                bytes = c;
                obj
            }
        };
        let mac = keys.mac.as_deref();
        let state = |e: serde_json::Error| IntegrityError::State(e.to_string());
        let same = self.last.as_ref().is_some_and(|id| {
            id.partition == r.origin.partition && id.sink == sink && *id.stream == *r.origin.stream
        });
        if !same {
            let id = self.id(sink, &r.origin);
            self.chains
                .entry(id.clone())
                .or_insert_with(|| ChainState::at(0, GENESIS));
            self.last = Some(id);
        }
        let gone = || IntegrityError::State("the chain stamped last is gone".into());
        let id = self.last.as_ref().ok_or_else(gone)?;
        let chain = self.chains.get_mut(id).ok_or_else(gone)?;
        let hash = record_hash(&chain.last, &bytes, mac);
        let prev = chain.last;
        chain.seq += 1;
        chain.last = hash;
        chain.last_offset = Some(r.origin.offset);
        chain
            .pending
            .push_back((r.origin.offset, chain.seq, hash, false));
        let seq = chain.seq;
        let alg = if mac.is_some() { ALG_HMAC } else { ALG_SHA256 };
        let text = match chain.text.take() {
            Some(t) => t,
            None => StampText::new(&keys.field, id, alg, &keys.key_id).map_err(state)?,
        };
        match (text_path, obj) {
            (Some(top), _) => {
                // The members as written, then the stamp: `{...,"field":{stamp}}`.
                let v = &r.value;
                let start = v.len() - v.trim_ascii_start().len();
                let mut out = Vec::with_capacity(v.len() + 400);
                out.extend_from_slice(&v[start..top.close]);
                if top.members > 0 {
                    out.push(b',');
                }
                text.write(seq, r.origin.offset, &prev, &hash, &mut out);
                out.push(b'}');
                r.value = Bytes::from(out);
            }
            (None, Some(m)) => {
                // The members re-serialised, then the stamp.
                let mut out = Vec::with_capacity(r.value.len() + 400);
                serde_json::to_writer(&mut out, &m).map_err(state)?;
                out.pop();
                if !m.is_empty() {
                    out.push(b',');
                }
                text.write(seq, r.origin.offset, &prev, &hash, &mut out);
                out.push(b'}');
                r.value = Bytes::from(out);
            }
            (None, None) => {
                let stamp = Stamp {
                    v: 1,
                    chain: id.clone(),
                    seq,
                    offset: r.origin.offset,
                    prev: hex(&prev),
                    hash: hex(&hash),
                    alg: alg.into(),
                    key_id: keys.key_id.clone(),
                };
                let stamp_value = serde_json::to_value(&stamp).map_err(state)?;
                r.headers.retain(|h| h.key != STAMP_HEADER);
                r.headers.push(Header {
                    key: STAMP_HEADER.into(),
                    value: Some(Bytes::from(stamp_value.to_string())),
                });
            }
        }
        chain.text = Some(text);
        self.content = bytes;
        Ok(())
    }

    /// Notes that `sink` dead-lettered a record it had stamped.
    pub fn dead_lettered(&mut self, sink: &str, o: &Origin) {
        let id = self.id(sink, o);
        if let Some(c) = self.chains.get_mut(&id) {
            if let Some(e) = c.pending.iter_mut().find(|e| e.0 == o.offset) {
                e.3 = true;
            }
        }
    }

    /// The tracker committed through these origins: every chain of their partitions takes
    /// the state of its last record stamped at or below the offset.
    pub fn advance(&mut self, through: &[Origin]) {
        for o in through {
            for (id, c) in self.chains.iter_mut() {
                if id.partition != o.partition || *id.stream != *o.stream {
                    continue;
                }
                while let Some(&(off, seq, hash, dead)) = c.pending.front() {
                    if off > o.offset {
                        break;
                    }
                    c.pending.pop_front();
                    c.committed_seq = seq;
                    c.committed_hash = hash;
                    c.dead_since_digest += u64::from(dead);
                    self.dirty = true;
                }
            }
        }
    }

    /// The note to commit with `stream`/`partition`'s position (for a source that keeps
    /// notes upstream): the committed state of the partition's chains, as saved in the store.
    pub fn note(&self, stream: &str, partition: i32) -> Option<String> {
        let list = self.committed(|id| id.partition == partition && id.stream == stream);
        (!list.is_empty())
            .then(|| serde_json::to_string(&list).ok())
            .flatten()
    }

    /// A partition (re)assigned to this process resumes upstream at `offset` (the next record
    /// to read): its chains take the state committed with that position (`note`), unless
    /// this run has already stamped up to it (a partition handed back to the same process
    /// continues where its records in flight left it). Nothing committed yet: the chains
    /// start over. A position committed without a note (by a run without `integrity:`)
    /// keeps the state this run has, and is reported.
    pub fn resume(
        &mut self,
        stream: &str,
        partition: i32,
        offset: Option<i64>,
        note: Option<&str>,
    ) -> Result<(), IntegrityError> {
        let restored: Vec<SavedChain> = match (offset, note) {
            (Some(_), Some(n)) => serde_json::from_str(n).map_err(|e| {
                IntegrityError::State(format!(
                    "the note committed with {stream}/{partition} is not chain state: {e}"
                ))
            })?,
            (Some(offset), None) => {
                tracing::warn!(stream, partition, offset, "integrity: the position committed upstream has no chain state (written without integrity:); the chains continue from the state saved locally");
                return Ok(());
            }
            (None, _) => Vec::new(),
        };
        // Stamped up to the resume point in this run: the records after it follow on.
        let ahead = |c: &ChainState| match (c.last_offset, offset) {
            (Some(l), Some(o)) => l >= o - 1,
            (Some(_), None) => true,
            (None, _) => false,
        };
        self.chains
            .retain(|id, c| !(id.partition == partition && id.stream == stream) || ahead(c));
        for c in restored {
            let hash = super::decode_key(&c.hash)
                .map_err(|_| IntegrityError::State("a chain hash is not 32 bytes of hex".into()))?;
            let id = ChainId {
                pipeline: self.pipeline.clone(),
                sink: c.sink,
                stream: stream.to_string(),
                partition,
            };
            self.chains.entry(id).or_insert_with(|| {
                let mut state = ChainState::at(c.seq, hash);
                state.last_offset = offset.map(|o| o - 1);
                state
            });
        }
        Ok(())
    }

    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// The state to save with the committed position.
    pub fn saved(&self) -> Value {
        serde_json::to_value(self.committed(|_| true)).unwrap_or(Value::Null)
    }

    /// The committed state of the chains `which` selects.
    fn committed(&self, which: impl Fn(&ChainId) -> bool) -> Vec<SavedChain> {
        self.chains
            .iter()
            .filter(|(id, _)| which(id))
            .map(|(id, c)| SavedChain {
                sink: id.sink.clone(),
                stream: id.stream.clone(),
                partition: id.partition,
                seq: c.committed_seq,
                hash: hex(&c.committed_hash),
            })
            .collect()
    }

    /// The digests of the chains that advanced since the last ones, unsigned and unlinked,
    /// with the sink each belongs to.
    pub fn take_digests(&mut self, time: &str) -> Vec<DigestEntry> {
        self.dirty = false;
        let mut out = Vec::new();
        for (id, c) in self.chains.iter_mut() {
            if c.committed_seq <= c.digested {
                continue;
            }
            let Some(keys) = self.keys.get(&id.sink) else {
                continue;
            };
            out.push(DigestEntry {
                v: 1,
                chain: id.clone(),
                first_seq: c.digested + 1,
                last_seq: c.committed_seq,
                last_hash: hex(&c.committed_hash),
                records: c.committed_seq - c.digested,
                dead_lettered: c.dead_since_digest,
                time: time.to_string(),
                prev_digest: String::new(),
                key_id: keys.key_id.clone(),
                sig: None,
            });
            c.digested = c.committed_seq;
            c.dead_since_digest = 0;
        }
        out
    }

    pub fn keys(&self, sink: &str) -> Option<&Keys> {
        self.keys.get(sink)
    }
}

/// The append-only digest log `data_dir/integrity/<pipeline>.digests`.
pub struct DigestLog {
    path: PathBuf,
    file: File,
    prev: [u8; 32],
}

/// SHA-256 of a digest line (the entry's JCS with `sig`), which the next entry links to.
pub fn digest_hash(line: &[u8]) -> [u8; 32] {
    Sha256::digest(line).into()
}

impl DigestLog {
    pub fn path_for(data_dir: &Path, pipeline: &str) -> PathBuf {
        let name = crate::offsets::file_name(pipeline);
        let stem = name.strip_suffix(".json").unwrap_or(&name);
        data_dir.join("integrity").join(format!("{stem}.digests"))
    }

    /// Opens the log for appending; a line torn by a crash at its end is cut off.
    pub fn open(data_dir: &Path, pipeline: &str) -> Result<Self, IntegrityError> {
        let path = Self::path_for(data_dir, pipeline);
        let io = |source| IntegrityError::Io {
            path: path.clone(),
            source,
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        sluice_sdk::fs::create_private_dir(dir).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        let mut text = Vec::new();
        file.read_to_end(&mut text).map_err(io)?;
        let complete = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        if complete < text.len() {
            file.set_len(complete as u64).map_err(io)?;
            file.seek(SeekFrom::End(0)).map_err(io)?;
        }
        let prev = text[..complete]
            .split(|b| *b == b'\n')
            .rfind(|l| !l.is_empty())
            .map_or(GENESIS, digest_hash);
        Ok(DigestLog { path, file, prev })
    }

    /// Signs, links, appends and fsyncs the entries; returns the lines written (each with its
    /// newline), for the copy.
    pub fn append(
        &mut self,
        entries: Vec<DigestEntry>,
        book: &Book,
    ) -> Result<Vec<Vec<u8>>, IntegrityError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let mut buf = Vec::new();
        let mut lines = Vec::new();
        for mut e in entries {
            let Some(keys) = book.keys(&e.chain.sink) else {
                continue;
            };
            e.prev_digest = hex(&self.prev);
            let sig = keys.signing.sign(&e.signed_bytes()?);
            e.sig = Some(b64(&sig.to_bytes()));
            let v = serde_json::to_value(&e).map_err(|x| IntegrityError::State(x.to_string()))?;
            let line = canonical(&v)?;
            self.prev = digest_hash(&line);
            buf.extend_from_slice(&line);
            buf.push(b'\n');
            let mut l = line;
            l.push(b'\n');
            lines.push(l);
        }
        let io = |source| IntegrityError::Io {
            path: self.path.clone(),
            source,
        };
        self.file.write_all(&buf).map_err(io)?;
        self.file.sync_all().map_err(io)?;
        Ok(lines)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use std::sync::Arc;

    fn keys(mac: Option<&str>) -> BTreeMap<String, Keys> {
        let signing = SigningKey::from_bytes(&[9u8; 32]);
        BTreeMap::from([(
            "default".to_string(),
            Keys {
                key_id: super::super::key_id_of(&signing.verifying_key()),
                signing,
                mac: mac.map(|m| m.as_bytes().to_vec()),
                field: "_audit".into(),
            },
        )])
    }

    fn rec(n: i64) -> Record {
        Record::new(
            format!(r#"{{"n":{n},"b":"x"}}"#),
            Origin::new(Arc::from("s"), 0, n * 10),
        )
    }

    fn stamp_of(r: &Record) -> Stamp {
        let v: Value = serde_json::from_slice(&r.value).unwrap();
        serde_json::from_value(v["_audit"].clone()).unwrap()
    }

    #[test]
    fn stamps_link_and_restart_from_the_committed_state_restamps_identically() {
        let mut book = Book::new("p", keys(None), None).unwrap();
        let mut first = Vec::new();
        for n in 0..5 {
            let mut r = rec(n);
            book.stamp("default", &mut r).unwrap();
            first.push(r);
        }
        let stamps: Vec<Stamp> = first.iter().map(stamp_of).collect();
        assert_eq!(stamps[0].prev, hex(&GENESIS));
        for w in stamps.windows(2) {
            assert_eq!(w[1].prev, w[0].hash);
            assert_eq!(w[1].seq, w[0].seq + 1);
        }
        // The hash covers the record without its stamp, in JCS form.
        let (c, _) = content(&first[1].value, "_audit").unwrap();
        assert_eq!(c, br#"{"b":"x","n":1}"#);
        let prev = super::super::decode_key(&stamps[0].hash).unwrap();
        assert_eq!(hex(&record_hash(&prev, &c, None)), stamps[1].hash);

        // Committed through offset 25 (records 0, 10, 20): the saved state is record 2's.
        book.advance(&[Origin::new(Arc::from("s"), 0, 25)]);
        let saved = book.saved();
        assert_eq!(saved[0]["seq"], 3);
        let digests = book.take_digests("t");
        assert_eq!(digests.len(), 1);
        assert_eq!((digests[0].first_seq, digests[0].last_seq), (1, 3));
        assert_eq!(digests[0].last_hash, stamps[2].hash);

        let mut again = Book::new("p", keys(None), Some(&saved)).unwrap();
        for n in 3..5 {
            let mut r = rec(n);
            again.stamp("default", &mut r).unwrap();
            assert_eq!(r.value, first[n as usize].value);
        }
    }

    #[test]
    fn a_resumed_partition_takes_the_state_committed_with_its_position_unless_ahead() {
        let mut book = Book::new("p", keys(None), None).unwrap();
        let mut first = Vec::new();
        for n in 0..5 {
            let mut r = rec(n);
            book.stamp("default", &mut r).unwrap();
            first.push(r);
        }
        // Committed through record 2 (offset 20): the note is its state.
        book.advance(&[Origin::new(Arc::from("s"), 0, 20)]);
        let note = book.note("s", 0).unwrap();
        assert!(book.note("s", 1).is_none());

        // Another process resumes at offset 21 with that note: records 3 and 4 restamp
        // exactly as the first time.
        let mut other = Book::new("p", keys(None), None).unwrap();
        other.resume("s", 0, Some(21), Some(&note)).unwrap();
        for n in 3..5 {
            let mut r = rec(n);
            other.stamp("default", &mut r).unwrap();
            assert_eq!(r.value, first[n as usize].value);
        }
        // Handed back to this process, which stamped up to 40 already: it carries on.
        book.resume("s", 0, Some(21), Some(&note)).unwrap();
        let mut r = rec(5);
        book.stamp("default", &mut r).unwrap();
        assert_eq!(stamp_of(&r).seq, 6);
        // Another member went further (committed at 51): its note wins.
        let mut r6 = rec(6);
        other.stamp("default", &mut r6).unwrap();
        other.advance(&[Origin::new(Arc::from("s"), 0, 60)]);
        let later = other.note("s", 0).unwrap();
        book.resume("s", 0, Some(61), Some(&later)).unwrap();
        let mut r7 = rec(7);
        book.stamp("default", &mut r7).unwrap();
        let s7 = stamp_of(&r7);
        assert_eq!((s7.seq, s7.prev.as_str()), (7, stamp_of(&r6).hash.as_str()));
        // Nothing committed: a fresh chain; a note that is not chain state is an error.
        let mut fresh = Book::new("p", keys(None), None).unwrap();
        fresh.resume("s", 0, None, None).unwrap();
        let mut r = rec(0);
        fresh.stamp("default", &mut r).unwrap();
        assert_eq!(stamp_of(&r).seq, 1);
        assert!(fresh.resume("s", 0, Some(5), Some("not json")).is_err());
    }

    #[test]
    fn a_mac_key_changes_the_hash_and_non_json_goes_to_a_header() {
        let mut plain = Book::new("p", keys(None), None).unwrap();
        let mut keyed = Book::new("p", keys(Some("k")), None).unwrap();
        let (mut a, mut b) = (rec(1), rec(1));
        plain.stamp("default", &mut a).unwrap();
        keyed.stamp("default", &mut b).unwrap();
        assert_ne!(stamp_of(&a).hash, stamp_of(&b).hash);
        assert_eq!(stamp_of(&b).alg, ALG_HMAC);

        let mut raw = Record::new("not json", Origin::new(Arc::from("s"), 0, 1));
        plain.stamp("default", &mut raw).unwrap();
        assert_eq!(raw.value.as_ref(), b"not json");
        let h = raw.headers.iter().find(|h| h.key == STAMP_HEADER).unwrap();
        let s: Stamp = serde_json::from_slice(h.value.as_ref().unwrap()).unwrap();
        assert_eq!(s.seq, 2);
    }

    /// The stamp appended as text is `Stamp`'s serialisation; the record keeps its text on
    /// the text path, and is written out again where the `Value` path is taken; either way
    /// the hash covers `content`.
    #[test]
    fn stamps_are_appended_as_text_over_the_same_content() {
        let mut book = Book::new("p", keys(None), None).unwrap();
        let cases: [(&str, Option<&str>); 6] = [
            (
                r#" {"b": "\u00e9", "a":1.0} "#,
                Some(r#"{"b": "\u00e9", "a":1.0,"#),
            ),
            ("{}", Some("{")),
            (r#"{"a":1,"_audit":{"seq":9}}"#, Some(r#"{"a":1,"#)),
            (r#"{"a":1,"a":2}"#, Some(r#"{"a":2,"#)),
            ("{\"a\":\n1}", Some(r#"{"a":1,"#)),
            (r#"{"a":1e400}"#, None),
        ];
        for (n, (text, kept)) in cases.into_iter().enumerate() {
            let mut r = Record::new(text.to_string(), Origin::new(Arc::from("s"), 0, n as i64));
            let before = book.chains.values().next().map_or(GENESIS, |c| c.last);
            book.stamp("default", &mut r).unwrap();
            let out = std::str::from_utf8(&r.value).unwrap();
            match kept {
                Some(prefix) => {
                    assert!(out.starts_with(prefix), "{out}");
                    let stamp = stamp_of(&r);
                    let mut want = serde_json::to_string(&stamp).unwrap();
                    want.insert_str(0, r#""_audit":"#);
                    want.push('}');
                    assert!(out.ends_with(&want), "{out}");
                    let (c, _) = content(text.as_bytes(), "_audit").unwrap();
                    assert_eq!(hex(&record_hash(&before, &c, None)), stamp.hash);
                    assert_eq!(stamp.prev, hex(&before));
                }
                None => assert_eq!(out, text),
            }
        }
    }

    #[test]
    fn digest_log_links_entries_and_cuts_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut book = Book::new("p", keys(None), None).unwrap();
        let mut r = rec(1);
        book.stamp("default", &mut r).unwrap();
        book.dead_lettered("default", &r.origin);
        book.advance(&[r.origin.clone()]);
        let mut log = DigestLog::open(dir.path(), "p").unwrap();
        log.append(book.take_digests("t"), &book).unwrap();
        let path = DigestLog::path_for(dir.path(), "p");
        let text = std::fs::read_to_string(&path).unwrap();
        let e: DigestEntry = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(e.dead_lettered, 1);
        assert_eq!(e.prev_digest, hex(&GENESIS));
        std::fs::write(&path, format!("{text}{{\"torn")).unwrap();
        let log = DigestLog::open(dir.path(), "p").unwrap();
        assert_eq!(log.prev, digest_hash(text.trim().as_bytes()));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    }
}
