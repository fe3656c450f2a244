//! The last top-level member of one name in a text a check found to be JSON, found by a
//! substring search for the quoted name instead of by walking every member: a sink that
//! reads one field of every record (`splunk_hec`'s `time_field`) pays a vector search, and
//! for a nested object bitmaps of its brackets (a few vector compares per sixteen bytes),
//! not a branch per member.

use std::ops::Range;

use memchr::memmem;

use super::{quotes, scan_members, skip_value, skip_ws, MemberSpans, Plain};

const WORDS: usize = quotes::MAX_LEN / 64;

/// Finds the last top-level member of one name, as `serde_json` keeps the last of a repeated
/// name.
#[derive(Debug, Clone)]
pub struct MemberFinder {
    name: Box<[u8]>,
    /// The name between quotes, as a key is written when it has no escapes.
    quoted: memmem::Finder<'static>,
    /// The name has a byte a key must escape: only the member walk can find it.
    walk_only: bool,
}

impl MemberFinder {
    pub fn new(name: &str) -> MemberFinder {
        let quoted = [b"\"", name.as_bytes(), b"\""].concat();
        MemberFinder {
            name: name.as_bytes().into(),
            quoted: memmem::Finder::new(&quoted).into_owned(),
            walk_only: name.bytes().any(|c| c == b'"' || c == b'\\' || c < 0x20),
        }
    }

    /// In `bytes`, a text a check found to be JSON: the span of the value of the last
    /// top-level member of the name, `Some(None)` when the object has none, and `None` when
    /// the text is not one object or has a key with an escape, as [`scan_members`] answers
    /// `false` (`spans` is its scratch, for texts the bitmaps do not cover).
    ///
    /// On a text that is not JSON the answer means nothing (but is memory-safe).
    pub fn find(&self, bytes: &[u8], spans: &mut MemberSpans) -> Option<Option<Range<usize>>> {
        if !self.walk_only {
            let open = skip_ws(bytes, 0);
            if bytes.get(open) != Some(&b'{') {
                return None;
            }
            // A flat object (the usual event) has no bracket after its first and so no
            // member below the top; a backslash may escape a quote, left to the walk.
            match memchr::memchr3(b'{', b'[', b'\\', &bytes[open + 1..]) {
                None => return self.last_key(bytes, |_| true),
                Some(_) => {
                    if let Some(maps) = Maps::new(bytes) {
                        return self.last_key(bytes, |at| maps.depth(at) == 1);
                    }
                }
            }
        }
        if !scan_members(bytes, spans) {
            return None;
        }
        Some(
            spans
                .iter()
                .rev()
                .find(|(k, _)| bytes[k.clone()] == *self.name)
                .map(|(_, v)| v.clone()),
        )
    }

    /// [`find`](Self::find) in an object without backslashes, so every quote opens or
    /// closes a string and the name's quoted form is how its key is written; `top_level`
    /// tells whether a position lies directly in the outer object.
    fn last_key(
        &self,
        bytes: &[u8],
        top_level: impl Fn(usize) -> bool,
    ) -> Option<Option<Range<usize>>> {
        let quoted = self.name.len() + 2;
        // The last match that is a top-level key; forwards, as the search is fastest so.
        let mut last = None;
        for at in self.quoted.find_iter(bytes) {
            // Without backslashes, JSON has no quote inside a string and no letter right
            // after one, so the match is a whole string: a key when a colon follows.
            let colon = skip_ws(bytes, at + quoted);
            if bytes.get(colon) == Some(&b':') && top_level(at) {
                last = Some(colon);
            }
        }
        let Some(colon) = last else {
            return Some(None);
        };
        let start = skip_ws(bytes, colon + 1);
        let end = skip_value(bytes, start, &Plain)?;
        Some(Some(start..end))
    }
}

/// Where a text's brackets open and close outside its strings, one bit a byte.
struct Maps {
    opens: [u64; WORDS],
    closes: [u64; WORDS],
}

impl Maps {
    /// `None` for a text longer than the maps or with a backslash (a quote may be escaped).
    fn new(b: &[u8]) -> Option<Maps> {
        if b.len() > quotes::MAX_LEN {
            return None;
        }
        let mut maps = Maps {
            opens: [0; WORDS],
            closes: [0; WORDS],
        };
        let mut inside = 0u64;
        let mut backslashes = 0u16;
        let mut word = |w: usize, chunks: [&[u8; 16]; 4]| {
            let (mut quotes, mut opens, mut closes) = (0u64, 0u64, 0u64);
            for (k, chunk) in chunks.into_iter().enumerate() {
                let f = flags(chunk);
                backslashes |= f.backslashes;
                quotes |= u64::from(f.quotes) << (k * 16);
                opens |= u64::from(f.opens) << (k * 16);
                closes |= u64::from(f.closes) << (k * 16);
            }
            // Each string's bytes from its opening quote up to its closing one (excluded):
            // the quotes' running parity, carried from word to word.
            let strings = prefix_xor(quotes) ^ inside;
            inside = 0u64.wrapping_sub(strings >> 63);
            maps.opens[w] = opens & !strings;
            maps.closes[w] = closes & !strings;
        };
        let mut words = b.chunks_exact(64);
        for (w, bytes) in words.by_ref().enumerate() {
            let chunk = |k: usize| bytes[k * 16..].first_chunk::<16>();
            if let (Some(c0), Some(c1), Some(c2), Some(c3)) =
                (chunk(0), chunk(1), chunk(2), chunk(3))
            {
                word(w, [c0, c1, c2, c3]);
            }
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            // Padded with spaces, which are none of the bytes flagged.
            let mut tail = [b' '; 64];
            tail[..rest.len()].copy_from_slice(rest);
            let chunk = |k: usize| <&[u8; 16]>::try_from(&tail[k * 16..k * 16 + 16]);
            if let (Ok(c0), Ok(c1), Ok(c2), Ok(c3)) = (chunk(0), chunk(1), chunk(2), chunk(3)) {
                word(b.len() / 64, [c0, c1, c2, c3]);
            }
        }
        if backslashes != 0 {
            return None;
        }
        Some(maps)
    }

    /// How many brackets are open at `at`.
    fn depth(&self, at: usize) -> i64 {
        let (w, below) = (at / 64, (1u64 << (at % 64)) - 1);
        let count = |words: &[u64; WORDS]| {
            words[..w]
                .iter()
                .map(|x| i64::from(x.count_ones()))
                .sum::<i64>()
                + i64::from((words[w] & below).count_ones())
        };
        count(&self.opens) - count(&self.closes)
    }
}

/// The bytes of sixteen that matter to [`Maps`], one bit each.
struct Flags {
    quotes: u16,
    backslashes: u16,
    /// `{` and `[`.
    opens: u16,
    /// `}` and `]`.
    closes: u16,
}

#[inline(always)]
fn flags(chunk: &[u8; 16]) -> Flags {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is part of x86_64; the unaligned load reads the chunk's 16 bytes.
        // `[` and `]` are `{` and `}` with bit 0x20 clear, so one compare of `x | 0x20`
        // finds both of a pair.
        unsafe {
            let x = _mm_loadu_si128(chunk.as_ptr().cast());
            let folded = _mm_or_si128(x, _mm_set1_epi8(0x20));
            let eq = |v: __m128i, c: u8| {
                _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(c as i8))) as u16
            };
            Flags {
                quotes: eq(x, b'"'),
                backslashes: eq(x, b'\\'),
                opens: eq(folded, b'{'),
                closes: eq(folded, b'}'),
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        flags_bytewise(chunk)
    }
}

/// [`flags`] a byte at a time: elsewhere than x86_64, and the reference its SSE2 form is
/// tested against.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn flags_bytewise(chunk: &[u8; 16]) -> Flags {
    let bits = |f: fn(u8) -> bool| {
        chunk
            .iter()
            .enumerate()
            .fold(0u16, |m, (k, &c)| m | (u16::from(f(c)) << k))
    };
    Flags {
        quotes: bits(|c| c == b'"'),
        backslashes: bits(|c| c == b'\\'),
        opens: bits(|c| c == b'{' || c == b'['),
        closes: bits(|c| c == b'}' || c == b']'),
    }
}

/// Bit `i` of the result is the parity of bits `0..=i` of `x`.
fn prefix_xor(mut x: u64) -> u64 {
    for shift in [1, 2, 4, 8, 16, 32] {
        x ^= x << shift;
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the member walk answers, the reference.
    fn walked(bytes: &[u8], name: &str) -> Option<Option<Range<usize>>> {
        let mut spans = MemberSpans::new();
        if !scan_members(bytes, &mut spans) {
            return None;
        }
        Some(
            spans
                .iter()
                .rev()
                .find(|(k, _)| &bytes[k.clone()] == name.as_bytes())
                .map(|(_, v)| v.clone()),
        )
    }

    fn found<'a>(bytes: &'a str, name: &str) -> Option<Option<&'a str>> {
        let mut spans = MemberSpans::new();
        let got = MemberFinder::new(name).find(bytes.as_bytes(), &mut spans);
        assert_eq!(got, walked(bytes.as_bytes(), name), "{bytes} {name}");
        got.map(|v| v.map(|r| &bytes[r]))
    }

    #[test]
    fn finds_the_last_top_level_member() {
        let t = "ts";
        assert_eq!(
            found(r#"{"a":1,"ts":"2026-01-01T00:00:00Z"}"#, t),
            Some(Some(r#""2026-01-01T00:00:00Z""#))
        );
        assert_eq!(found(r#" { "ts" : 17 , "b" : [ ] } "#, t), Some(Some("17")));
        assert_eq!(
            found(r#"{"ts":1,"x":2,"ts":3}"#, t),
            Some(Some("3")),
            "the last of a repeated name"
        );
        assert_eq!(
            found(r#"{"ts":{"ts":1},"y":[{"ts":2}]}"#, t),
            Some(Some(r#"{"ts":1}"#))
        );
        assert_eq!(
            found(r#"{"ts":[1,{"a":"]"}],"n":null}"#, t),
            Some(Some(r#"[1,{"a":"]"}]"#))
        );
        assert_eq!(found(r#"{"ts":true}"#, t), Some(Some("true")));
    }

    #[test]
    fn nested_members_and_strings_are_not_members() {
        let t = "ts";
        assert_eq!(found(r#"{"a":{"ts":1},"b":[{"ts":2}]}"#, t), Some(None));
        assert_eq!(
            found(r#"{"a":"ts","b":"{\"ts\":1}"}"#, t),
            Some(None),
            "escaped: walked"
        );
        assert_eq!(found(r#"{"a":"ts: {x}","ts2":1,"t":2}"#, t), Some(None));
        assert_eq!(
            found(r#"{"a":"{","ts":5}"#, t),
            Some(Some("5")),
            "a bracket in a string"
        );
        assert_eq!(found(r#"{"a":"}}","ts":5}"#, t), Some(Some("5")));
        assert_eq!(found(r#"{"a":"ts","ts":"ts"}"#, t), Some(Some(r#""ts""#)));
        assert_eq!(found(r#"{}"#, t), Some(None));
    }

    #[test]
    fn what_the_walk_refuses_is_refused() {
        let t = "ts";
        assert_eq!(found(r#"[{"ts":1}]"#, t), None);
        assert_eq!(found(r#""ts""#, t), None);
        assert_eq!(found(r#"{"t\u0073":1}"#, t), None, "an escaped key");
        assert_eq!(found("{\"q\\\"\":1,\"ts\":2}", "q\""), None);
    }

    /// Generated objects, nested and flat, at lengths across the 64-byte words of the maps
    /// and past their end, compared with the walk.
    #[test]
    fn agrees_with_the_walk_on_generated_objects() {
        let keys = ["ts", "t", "tss", "a"];
        let values = [
            "1",
            "-2.5e3",
            "null",
            "\"ts\"",
            "\"x{[y\"",
            "{\"ts\":1}",
            "[\"ts\",{}]",
            "\"2026-11-22T10:15:00Z\"",
            "{}",
            "[]",
            "\"a\\\"b\"",
        ];
        // Flat: no bracket after the first, no backslash.
        generated(
            &keys,
            &[
                "1",
                "null",
                "\"ts\"",
                "\"t: s\"",
                "\"2026-11-22T10:15:00Z\"",
            ],
            false,
        );
        // Nested, without the last value (a backslash): a text short enough takes the maps.
        generated(&keys, &values[..values.len() - 1], true);
        generated(&keys, &values, false);
    }

    fn generated(keys: &[&str], values: &[&str], mapped: bool) {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for members in 0..60 {
            for _ in 0..30 {
                let mut text = String::from("{");
                for m in 0..members {
                    if m > 0 {
                        text.push_str([",", " , "][next(2)]);
                    }
                    text.push_str(&format!("\"{}\"", keys[next(keys.len())]));
                    text.push_str([":", " :\n"][next(2)]);
                    text.push_str(values[next(values.len())]);
                }
                text.push('}');
                assert!(crate::json::is_json(text.as_bytes()), "{text}");
                if mapped && text.len() <= quotes::MAX_LEN {
                    assert!(Maps::new(text.as_bytes()).is_some(), "{text}");
                }
                for name in ["ts", "t"] {
                    found(&text, name);
                }
            }
        }
    }

    #[test]
    fn chunk_flags_agree_with_the_bytewise_form() {
        for chunk in crate::json::test_chunks() {
            let (a, b) = (flags(&chunk), flags_bytewise(&chunk));
            assert_eq!(
                (a.quotes, a.backslashes, a.opens, a.closes),
                (b.quotes, b.backslashes, b.opens, b.closes),
                "{chunk:?}"
            );
        }
    }

    #[test]
    fn prefix_xor_is_the_running_parity() {
        let x = 0b1001_0010u64 | 1 << 63;
        let p = prefix_xor(x);
        for i in 0..64 {
            assert_eq!(
                p >> i & 1,
                u64::from((x & (u64::MAX >> (63 - i))).count_ones() % 2 == 1)
            );
        }
    }
}
