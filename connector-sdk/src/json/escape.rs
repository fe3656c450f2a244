//! Writing text as a JSON string, as `serde_json` and RFC 8785 (JCS) write it: `"` and `\`
//! escaped, the control characters as `\b \t \n \f \r` or `\u00xx` (lower-case hex), every
//! other character as itself.
//!
//! Sinks write whole records as strings (Datadog's `message`), where a `"` comes every few
//! bytes. On x86_64 with SSSE3 each sixteen bytes are written without a branch per escape:
//! when the only bytes to escape are `"` and `\`, a shuffle spreads each eight bytes over
//! eight plus one per escape and a backslash is put in each gap ([`spread`]). Elsewhere the
//! bytes to escape are found 64 at a time before any is written, and each run between two
//! of them is stored as whole sixteen-byte chunks whose surplus the next write overwrites.

const HEX: &[u8; 16] = b"0123456789abcdef";
const CHUNK: usize = 16;
/// Bytes whose escapes are found before any is written: four chunks, one `u64` of flags.
const BLOCK: usize = 64;

/// Appends `s` to `out` as a JSON string, quotes included.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    if b.len() < CHUNK {
        // Names, ids, short values: a byte at a time costs less than setting up chunks.
        out.reserve(b.len() + 2);
        out.push(b'"');
        for &c in b {
            match escape(c) {
                None => out.push(c),
                Some((seq, n)) => out.extend_from_slice(&seq[..n]),
            }
        }
        out.push(b'"');
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("ssse3") && std::is_x86_feature_detected!("popcnt") {
        // SAFETY: the CPU has both features, just checked.
        unsafe { spread::write(out, b) };
        return;
    }
    write_chunked(out, b);
}

/// [`write_str`] for a text of at least [`CHUNK`] bytes without SSSE3: runs between escapes
/// copied as whole chunks.
fn write_chunked(out: &mut Vec<u8>, b: &[u8]) {
    let start = out.len();
    // Room for the short escapes (two bytes a byte), the quotes and a chunk's overrun; a
    // `\u00xx` escape makes its own room.
    out.resize(start + 2 * b.len() + 2 + CHUNK, 0);
    out[start] = b'"';
    let mut w = Writer { out, j: start + 1 };
    // The first byte not yet written.
    let mut done = 0;
    for block in (0..b.len()).step_by(BLOCK) {
        let mut flags = 0u64;
        for (k, at) in (block..b.len().min(block + BLOCK))
            .step_by(CHUNK)
            .enumerate()
        {
            flags |= u64::from(escapes(&load(b, at))) << (k * CHUNK);
        }
        while flags != 0 {
            let at = block + flags.trailing_zeros() as usize;
            flags &= flags - 1;
            w.plain(b, done, at);
            w.escape(b[at]);
            done = at + 1;
        }
    }
    w.plain(b, done, b.len());
    let j = w.j;
    out[j] = b'"';
    out.truncate(j + 1);
}

#[cfg(target_arch = "x86_64")]
mod spread {
    //! Sixteen bytes at a time, a table-driven shuffle per eight of them.
    use super::{escape, load, CHUNK};
    use std::arch::x86_64::*;

    /// For each mask of the bytes of an eight-byte group that need a backslash before them:
    /// the `pshufb` pattern that spreads the group over 8 + one byte per escape (0x80, a
    /// zero, in each gap), and the backslashes that fill the gaps.
    struct Spread {
        shuffle: [[u8; 16]; 256],
        backslashes: [[u8; 16]; 256],
    }

    static SPREAD: Spread = build();

    const fn build() -> Spread {
        let mut t = Spread {
            shuffle: [[0x80; 16]; 256],
            backslashes: [[0; 16]; 256],
        };
        let mut m = 0;
        while m < 256 {
            let (mut k, mut p) = (0, 0);
            while k < 8 {
                if m & (1 << k) != 0 {
                    t.backslashes[m][p] = b'\\';
                    p += 1;
                }
                t.shuffle[m][p] = k as u8;
                p += 1;
                k += 1;
            }
            m += 1;
        }
        t
    }

    /// Writes `b` (at least [`CHUNK`] bytes) as a JSON string at the end of `out`.
    ///
    /// # Safety
    /// The CPU must have SSSE3 and POPCNT.
    #[target_feature(enable = "ssse3,popcnt")]
    pub(super) unsafe fn write(out: &mut Vec<u8>, b: &[u8]) {
        let start = out.len();
        // Two bytes a byte (a `\u00xx` escape makes its own room), the quotes, and what
        // the stores of the last chunk write past its end: two halves of sixteen.
        out.resize(start + 2 * b.len() + 2 + 2 * CHUNK, 0);
        out[start] = b'"';
        let mut j = start + 1;
        let mut i = 0;
        while i < b.len() {
            let n = (b.len() - i).min(CHUNK);
            // Past the end the chunk is padded with spaces, which need no escape.
            let chunk = load(b, i);
            let x = _mm_loadu_si128(chunk.as_ptr().cast());
            let low = _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_min_epu8(x, _mm_set1_epi8(0x1f)), x));
            if low != 0 {
                // A control character: its escape may be six bytes, a byte at a time.
                for &c in &b[i..i + n] {
                    match escape(c) {
                        None => {
                            out[j] = c;
                            j += 1;
                        }
                        Some((seq, len)) => {
                            if len > 2 {
                                out.resize(out.len() + 4, 0);
                            }
                            out[j..j + 6].copy_from_slice(&seq);
                            j += len;
                        }
                    }
                }
                i += n;
                continue;
            }
            let m = _mm_movemask_epi8(_mm_or_si128(
                _mm_cmpeq_epi8(x, _mm_set1_epi8(b'"' as i8)),
                _mm_cmpeq_epi8(x, _mm_set1_epi8(b'\\' as i8)),
            )) as usize;
            // The room invariant (two bytes a byte left plus two chunks) holds here, so each
            // sixteen-byte store lies inside `out`.
            let dst = &mut out[j..j + 2 * CHUNK];
            let (lo, hi) = (m & 0xff, m >> 8);
            let first = _mm_or_si128(
                _mm_shuffle_epi8(x, _mm_loadu_si128(SPREAD.shuffle[lo].as_ptr().cast())),
                _mm_loadu_si128(SPREAD.backslashes[lo].as_ptr().cast()),
            );
            _mm_storeu_si128(dst.as_mut_ptr().cast(), first);
            let at = 8 + lo.count_ones() as usize;
            let second = _mm_or_si128(
                _mm_shuffle_epi8(
                    _mm_srli_si128::<8>(x),
                    _mm_loadu_si128(SPREAD.shuffle[hi].as_ptr().cast()),
                ),
                _mm_loadu_si128(SPREAD.backslashes[hi].as_ptr().cast()),
            );
            _mm_storeu_si128(dst[at..at + CHUNK].as_mut_ptr().cast(), second);
            // Only the chunk's real bytes count; the padding's spaces are overwritten next.
            j += n + m.count_ones() as usize;
            i += n;
        }
        out[j] = b'"';
        out.truncate(j + 1);
    }
}

/// The output being written, `j` its first free byte. Invariant: at least two bytes per input
/// byte left, plus [`CHUNK`] + 1, lie between `j` and the end.
struct Writer<'a> {
    out: &'a mut Vec<u8>,
    j: usize,
}

impl Writer<'_> {
    /// Copies `b[from..to]` (no byte of which needs escaping), a chunk at a time: the last
    /// chunk is stored whole and its surplus overwritten by what follows.
    #[inline(always)]
    fn plain(&mut self, b: &[u8], mut from: usize, to: usize) {
        while from < to {
            let n = (to - from).min(CHUNK);
            self.out[self.j..self.j + CHUNK].copy_from_slice(&load(b, from));
            self.j += n;
            from += n;
        }
    }

    #[inline(always)]
    fn escape(&mut self, c: u8) {
        let Some((seq, n)) = escape(c) else {
            return;
        };
        if n > 2 {
            // Four bytes beyond the two this byte was given.
            self.out.resize(self.out.len() + 4, 0);
        }
        // All six bytes, in the room the invariant keeps: one fixed-size store.
        let j = self.j;
        self.out[j..j + 6].copy_from_slice(&seq);
        self.j += n;
    }
}

/// The escape of `c` and its length, `None` for a byte written as itself.
#[inline(always)]
fn escape(c: u8) -> Option<([u8; 6], usize)> {
    let short = match c {
        b'"' => b'"',
        b'\\' => b'\\',
        0x08 => b'b',
        b'\t' => b't',
        b'\n' => b'n',
        0x0c => b'f',
        b'\r' => b'r',
        0x00..=0x1f => {
            let hex = |d: u8| HEX[usize::from(d)];
            return Some(([b'\\', b'u', b'0', b'0', hex(c >> 4), hex(c & 0xf)], 6));
        }
        _ => return None,
    };
    Some(([b'\\', short, 0, 0, 0, 0], 2))
}

/// The chunk of `b` at `at`; past the end, padded with spaces (which need no escape).
#[inline(always)]
fn load(b: &[u8], at: usize) -> [u8; CHUNK] {
    match b.get(at..).and_then(<[u8]>::first_chunk) {
        Some(whole) => *whole,
        None => load_tail(b, at),
    }
}

#[cold]
#[inline(never)]
fn load_tail(b: &[u8], at: usize) -> [u8; CHUNK] {
    let mut chunk = [b' '; CHUNK];
    let rest = &b[at.min(b.len())..];
    chunk[..rest.len()].copy_from_slice(rest);
    chunk
}

/// The bytes of `chunk` a JSON string must escape: `"`, `\` and those below 0x20.
#[inline(always)]
fn escapes(chunk: &[u8; CHUNK]) -> u16 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is part of x86_64; the unaligned load reads the chunk's 16 bytes.
        // `min(x, 0x1f) == x` is an unsigned `x <= 0x1f`.
        unsafe {
            let x = _mm_loadu_si128(chunk.as_ptr().cast());
            let low = _mm_cmpeq_epi8(_mm_min_epu8(x, _mm_set1_epi8(0x1f)), x);
            _mm_movemask_epi8(_mm_or_si128(
                _mm_or_si128(
                    _mm_cmpeq_epi8(x, _mm_set1_epi8(b'"' as i8)),
                    _mm_cmpeq_epi8(x, _mm_set1_epi8(b'\\' as i8)),
                ),
                low,
            )) as u16
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        escapes_bytewise(chunk)
    }
}

/// [`escapes`] a byte at a time: elsewhere than x86_64, and the reference its SSE2 form is
/// tested against.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn escapes_bytewise(chunk: &[u8; CHUNK]) -> u16 {
    chunk.iter().enumerate().fold(0, |m, (k, &c)| {
        m | (u16::from(c == b'"' || c == b'\\' || c < 0x20) << k)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serde(s: &str) -> Vec<u8> {
        serde_json::to_vec(s).unwrap()
    }

    /// What `write_str` writes after a prefix, checked to be what the portable path writes
    /// as well (the machine running the tests may take the SSSE3 one).
    fn ours(s: &str) -> Vec<u8> {
        let mut out = b"prefix".to_vec();
        write_str(&mut out, s);
        assert_eq!(&out[..6], b"prefix");
        let ours = out.split_off(6);
        if s.len() >= CHUNK {
            let mut chunked = b"prefix".to_vec();
            write_chunked(&mut chunked, s.as_bytes());
            assert_eq!(chunked.split_off(6), ours, "{s:?}");
        }
        ours
    }

    #[test]
    fn chunk_flags_agree_with_the_bytewise_form() {
        for chunk in crate::json::test_chunks() {
            assert_eq!(escapes(&chunk), escapes_bytewise(&chunk), "{chunk:?}");
        }
    }

    #[test]
    fn writes_what_serde_json_writes() {
        let record = r#"{"event_id":"e-1","user":{"name":"Zoë \"Z\" O'Brien","path":"C:\\tmp"},"n":[1,2.5e3,null],"note":"tab	and
newline"}"#;
        for s in [
            "",
            "plain",
            "\"",
            "\\",
            "exactly sixteen!",
            "sixteen bytes + \"",
            "\u{0}\u{1}\u{7}\u{8}\u{9}\u{a}\u{b}\u{c}\u{d}\u{1b}\u{1f}\u{7f}",
            "é ü ✓ 😀 \u{80} \u{ffff}",
            record,
        ] {
            assert_eq!(ours(s), serde(s), "{s:?}");
        }
    }

    /// Every mix of plain bytes, escapes and multi-byte characters at every offset and
    /// length around the chunk size.
    #[test]
    fn agrees_with_serde_json_on_generated_texts() {
        generated(&[
            "a", "\"", "\\", "\n", "\u{1}", "\u{1f}", "é", "😀", " ", "\u{7f}",
        ]);
        // Without control characters, every chunk takes the shuffle where there is one.
        generated(&["a", "\"", "\\", "é", "😀", " ", "\u{7f}", "{", ":"]);
    }

    fn generated(pieces: &[&str]) {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..80 {
            for _ in 0..40 {
                let mut s = String::new();
                for _ in 0..len {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    s.push_str(pieces[(seed % pieces.len() as u64) as usize]);
                }
                assert_eq!(ours(&s), serde(&s), "{s:?}");
            }
        }
    }
}
