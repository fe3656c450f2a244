//! Bitmaps of a short text's string bytes, built in one pass: scanning a record then finds
//! each string's end with a bit search instead of a byte loop per string, whose data-dependent
//! exits the branch predictor cannot learn.

/// Texts up to this many bytes get a map (16 words of 64 bits).
pub(super) const MAX_LEN: usize = 1024;

/// One bit per byte of a text of up to [`MAX_LEN`] bytes.
struct Bits {
    words: [u64; MAX_LEN / 64],
}

impl Bits {
    /// The bits of `b`: `chunk_flags` flags sixteen bytes at a time, `byte_flag` the last few;
    /// either ends the build with `None`, as does a text longer than [`MAX_LEN`].
    #[inline(always)]
    fn build(
        b: &[u8],
        chunk_flags: impl Fn(&[u8; 16]) -> Option<u16>,
        byte_flag: impl Fn(u8) -> Option<bool>,
    ) -> Option<Bits> {
        if b.len() > MAX_LEN {
            return None;
        }
        let mut words = [0u64; MAX_LEN / 64];
        let mut i = 0;
        while let Some(chunk) = b.get(i..i + 16).and_then(|c| <&[u8; 16]>::try_from(c).ok()) {
            words[i / 64] |= u64::from(chunk_flags(chunk)?) << (i % 64);
            i += 16;
        }
        for (k, &c) in b[i..].iter().enumerate() {
            if byte_flag(c)? {
                words[(i + k) / 64] |= 1 << ((i + k) % 64);
            }
        }
        Some(Bits { words })
    }

    /// The first set bit at or after `from`.
    #[inline]
    fn next(&self, from: usize) -> Option<usize> {
        let mut w = from / 64;
        let mut bits = *self.words.get(w)? & (u64::MAX << (from % 64));
        loop {
            if bits != 0 {
                return Some(w * 64 + bits.trailing_zeros() as usize);
            }
            w += 1;
            bits = *self.words.get(w)?;
        }
    }
}

/// The quotes of a text without backslashes (so every quote opens or closes a string).
pub(super) struct QuoteMap(Bits);

impl QuoteMap {
    /// `None` when the text is longer than [`MAX_LEN`] or has a backslash (a quote may then
    /// be escaped): the caller scans byte by byte.
    pub fn new(b: &[u8]) -> Option<QuoteMap> {
        Bits::build(
            b,
            |chunk| {
                let (quotes, backslashes) = (eq(chunk, b'"'), eq(chunk, b'\\'));
                (backslashes == 0).then_some(quotes)
            },
            |c| (c != b'\\').then_some(c == b'"'),
        )
        .map(QuoteMap)
    }

    /// Just past the closing quote of the string whose opening quote is at `start`.
    pub fn string_end(&self, start: usize) -> Option<usize> {
        Some(self.0.next(start + 1)? + 1)
    }
}

/// Where a checked string's plain text stops: `"`, `\`, a control character or a byte of
/// 0x80 or more, the bytes [`super::check`] must look at inside a string.
pub(super) struct StopMap(Bits);

impl StopMap {
    /// `None` when the text is longer than [`MAX_LEN`].
    pub fn new(b: &[u8]) -> Option<StopMap> {
        Bits::build(
            b,
            |chunk| Some(stops(chunk)),
            |c| Some(c == b'"' || c == b'\\' || !(0x20..0x80).contains(&c)),
        )
        .map(StopMap)
    }

    /// The first stop at or after `from`; `None` if the text has none there.
    #[inline]
    pub fn next(&self, from: usize) -> Option<usize> {
        self.0.next(from)
    }
}

/// The bytes of `chunk` equal to `c`, one bit each.
#[inline(always)]
fn eq(chunk: &[u8; 16], c: u8) -> u16 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is part of x86_64; the unaligned load reads the chunk's 16 bytes.
        unsafe {
            let x = _mm_loadu_si128(chunk.as_ptr().cast());
            _mm_movemask_epi8(_mm_cmpeq_epi8(x, _mm_set1_epi8(c as i8))) as u16
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        eq_bytewise(chunk, c)
    }
}

/// [`eq`] a byte at a time: elsewhere than x86_64, and the reference its SSE2 form is tested
/// against.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn eq_bytewise(chunk: &[u8; 16], c: u8) -> u16 {
    chunk
        .iter()
        .enumerate()
        .fold(0, |m, (k, &b)| m | (u16::from(b == c) << k))
}

/// The bytes of `chunk` where a string's plain text stops, one bit each.
#[inline(always)]
fn stops(chunk: &[u8; 16]) -> u16 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SAFETY: as in `eq`. A signed compare below 0x20 flags the control characters and,
        // as negative bytes, those of 0x80 or more.
        unsafe {
            let x = _mm_loadu_si128(chunk.as_ptr().cast());
            _mm_movemask_epi8(_mm_or_si128(
                _mm_or_si128(
                    _mm_cmpeq_epi8(x, _mm_set1_epi8(b'"' as i8)),
                    _mm_cmpeq_epi8(x, _mm_set1_epi8(b'\\' as i8)),
                ),
                _mm_cmplt_epi8(x, _mm_set1_epi8(0x20)),
            )) as u16
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        stops_bytewise(chunk)
    }
}

/// [`stops`] a byte at a time, as [`eq_bytewise`].
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn stops_bytewise(chunk: &[u8; 16]) -> u16 {
    chunk.iter().enumerate().fold(0, |m, (k, &c)| {
        m | (u16::from(c == b'"' || c == b'\\' || !(0x20..0x80).contains(&c)) << k)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SSE2 forms flag what the bytewise forms flag, for every byte value in every lane.
    #[test]
    fn chunk_flags_agree_with_the_bytewise_forms() {
        for chunk in crate::json::test_chunks() {
            assert_eq!(stops(&chunk), stops_bytewise(&chunk), "{chunk:?}");
            for c in [b'"', b'\\'] {
                assert_eq!(eq(&chunk, c), eq_bytewise(&chunk, c), "{chunk:?}");
            }
        }
    }
}
