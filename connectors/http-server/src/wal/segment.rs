//! The on-disk format of the write-ahead log.
//!
//! The log is a sequence of entries at increasing byte offsets, split into segment files named
//! after the offset of their first byte (`00000000000000000000.wal`), so an offset names one
//! entry across all segments. An entry is a 16-byte header followed by the event's bytes:
//!
//! ```text
//! len: u32 LE   length of the payload
//! crc: u32 LE   CRC-32 (IEEE) of the received-at time and the payload
//! ts:  i64 LE   received-at time, milliseconds since the Unix epoch
//! payload       the event as it was accepted (JSON)
//! ```

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Bytes before an entry's payload.
pub const HEADER_BYTES: usize = 16;
/// Longest payload an entry may hold; a longer length in a header is corruption.
pub const MAX_PAYLOAD: usize = 64 * 1024 * 1024;

const SUFFIX: &str = ".wal";

/// Appends one entry (header and payload) to `buf`.
pub fn encode(buf: &mut Vec<u8>, ts_ms: i64, payload: &[u8]) {
    let ts = ts_ms.to_le_bytes();
    let mut h = crc32fast::Hasher::new();
    h.update(&ts);
    h.update(payload);
    buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(&h.finalize().to_le_bytes());
    buf.extend_from_slice(&ts);
    buf.extend_from_slice(payload);
}

/// Bytes an entry with this payload takes in the log.
pub fn entry_len(payload: usize) -> u64 {
    (HEADER_BYTES + payload) as u64
}

/// One entry read back from a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A whole entry whose checksum matches: the payload's range in the buffer and its time.
    Entry {
        payload: std::ops::Range<usize>,
        ts_ms: i64,
    },
    /// The buffer ends inside the entry (its header or payload).
    Partial,
    /// The checksum does not match or the length is impossible.
    Bad(&'static str),
}

/// Decodes the entry at the start of `buf`.
pub fn decode(buf: &[u8]) -> Decoded {
    let Some(Header { len, crc, ts_ms }) = header(buf) else {
        return Decoded::Partial;
    };
    if len > MAX_PAYLOAD {
        return Decoded::Bad(TOO_LONG);
    }
    if buf.len() < HEADER_BYTES + len {
        return Decoded::Partial;
    }
    let mut h = crc32fast::Hasher::new();
    h.update(&buf[8..HEADER_BYTES + len]);
    if h.finalize() != crc {
        return Decoded::Bad("checksum mismatch");
    }
    Decoded::Entry {
        payload: HEADER_BYTES..HEADER_BYTES + len,
        ts_ms,
    }
}

const TOO_LONG: &str = "length over the largest entry";

/// An entry's header, as written (not checked against the payload).
struct Header {
    len: usize,
    crc: u32,
    ts_ms: i64,
}

fn header(buf: &[u8]) -> Option<Header> {
    let h: &[u8; HEADER_BYTES] = buf.get(..HEADER_BYTES)?.try_into().ok()?;
    let [l0, l1, l2, l3, c0, c1, c2, c3, t @ ..] = *h;
    Some(Header {
        len: u32::from_le_bytes([l0, l1, l2, l3]) as usize,
        crc: u32::from_le_bytes([c0, c1, c2, c3]),
        ts_ms: i64::from_le_bytes(t),
    })
}

/// Where [`walk`] stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum Walked {
    /// At the entry starting at this byte, the first `stop` accepted.
    Found(u64),
    /// At this entry boundary: `limit`, or the start of an entry that runs past it.
    End(u64),
    /// The header at this byte gives an impossible length.
    Bad(u64, &'static str),
}

/// Walks the entry headers of a segment from byte `from` (an entry boundary) up to byte
/// `limit`, until `stop(byte, received-at ms)` accepts an entry. Only the headers are read:
/// checksums are checked when the entries themselves are read.
pub fn walk(
    file: &File,
    from: u64,
    limit: u64,
    mut stop: impl FnMut(u64, i64) -> bool,
) -> io::Result<Walked> {
    let mut buf = vec![0u8; 1024 * 1024];
    let mut pos = from;
    while pos < limit {
        let want = buf.len().min((limit - pos) as usize);
        let n = read_at(file, &mut buf[..want], pos)?;
        let mut at = 0usize;
        while let Some(h) = buf[..n].get(at..).and_then(header) {
            let byte = pos + at as u64;
            if h.len > MAX_PAYLOAD {
                return Ok(Walked::Bad(byte, TOO_LONG));
            }
            if byte + entry_len(h.len) > limit {
                return Ok(Walked::End(byte));
            }
            if stop(byte, h.ts_ms) {
                return Ok(Walked::Found(byte));
            }
            at += HEADER_BYTES + h.len;
        }
        if at == 0 {
            // Not even a header left before the end of the file or the limit.
            return Ok(Walked::End(pos));
        }
        pos += at as u64;
    }
    Ok(Walked::End(pos.min(limit)))
}

/// The file of the segment whose first byte is at `base`.
pub fn path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}{SUFFIX}"))
}

/// The bases of the segments in `dir`, in order. Other files are ignored.
pub fn list(dir: &Path) -> io::Result<Vec<u64>> {
    let mut bases = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(base) = name
            .strip_suffix(SUFFIX)
            .filter(|n| n.len() == 20)
            .and_then(|n| n.parse::<u64>().ok())
        {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

/// Reads up to `buf.len()` bytes at `pos`, fewer only at the end of the file.
pub fn read_at(file: &File, buf: &mut [u8], pos: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], pos + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Where the valid entries of a segment end.
#[derive(Debug, PartialEq, Eq)]
pub enum Scan {
    /// Every byte from `from` belongs to a valid entry.
    Clean { len: u64 },
    /// Valid entries end at `valid`; what follows (up to the file's `len`) is no valid entry
    /// and nothing valid comes after it: the remains of an interrupted write.
    Torn { valid: u64, len: u64 },
    /// The entry at `at` is bad (`why`) yet valid entries follow it: corruption.
    Corrupt { at: u64, why: &'static str },
}

/// Checks the entries of a segment file from byte `from` (an entry boundary) to its end.
pub fn scan(file: &File, from: u64) -> io::Result<Scan> {
    let len = file.metadata()?.len();
    let mut pos = from;
    let mut buf = vec![0u8; 1024 * 1024];
    while pos < len {
        let n = read_at(file, &mut buf, pos)?;
        let mut at = 0usize;
        loop {
            match decode(&buf[at..n]) {
                Decoded::Entry { payload, .. } => at += payload.end,
                Decoded::Partial => {
                    if at == 0 {
                        if n < buf.len() {
                            // Not even one entry fits in what is left of the file.
                            return Ok(Scan::Torn { valid: pos, len });
                        }
                        // An entry longer than the buffer: grow and read again.
                        buf.resize(buf.len() * 2, 0);
                    }
                    break;
                }
                Decoded::Bad(why) => {
                    let bad = pos + at as u64;
                    return Ok(match valid_entry_after(file, bad, len)? {
                        true => Scan::Corrupt { at: bad, why },
                        false => Scan::Torn { valid: bad, len },
                    });
                }
            }
        }
        pos += at as u64;
    }
    Ok(Scan::Clean { len })
}

/// Whether a valid entry starts anywhere after the bad entry at `bad`: at the end its own
/// header claims, or at any later byte (its length may be the damaged part).
fn valid_entry_after(file: &File, bad: u64, len: u64) -> io::Result<bool> {
    let rest = (len - bad) as usize;
    let mut buf = vec![0u8; rest];
    let n = read_at(file, &mut buf, bad)?;
    buf.truncate(n);
    for start in 1..buf.len() {
        if let Decoded::Entry { .. } = decode(&buf[start..]) {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_round_trips_and_a_flipped_bit_is_caught() {
        let mut buf = Vec::new();
        encode(&mut buf, 42, b"{\"a\":1}");
        assert_eq!(buf.len() as u64, entry_len(7));
        assert_eq!(
            decode(&buf),
            Decoded::Entry {
                payload: 16..23,
                ts_ms: 42
            }
        );
        assert_eq!(decode(&buf[..20]), Decoded::Partial);
        buf[18] ^= 1;
        assert_eq!(decode(&buf), Decoded::Bad("checksum mismatch"));
    }
}
