//! Where a short text's quotes are, as a bitmap built in one pass: scanning a record for its
//! members then finds each string's end with a bit search instead of a byte loop per string,
//! whose data-dependent exits the branch predictor cannot learn.

/// Texts up to this many bytes get a map (16 words of 64 bits).
const MAX_LEN: usize = 1024;

/// The quotes of a text without backslashes (so every quote opens or closes a string).
pub(super) struct QuoteMap {
    words: [u64; MAX_LEN / 64],
}

impl QuoteMap {
    /// `None` when the text is longer than [`MAX_LEN`] or has a backslash (a quote may then
    /// be escaped): the caller scans byte by byte.
    pub fn new(b: &[u8]) -> Option<QuoteMap> {
        if b.len() > MAX_LEN {
            return None;
        }
        let mut words = [0u64; MAX_LEN / 64];
        let mut i = 0;
        #[cfg(target_arch = "x86_64")]
        while let Some(chunk) = b.get(i..i + 16) {
            use std::arch::x86_64::*;
            // SAFETY: SSE2 is part of x86_64; `chunk` holds the 16 bytes loaded.
            let (quotes, backslashes) = unsafe {
                let x = _mm_loadu_si128(chunk.as_ptr().cast());
                (
                    _mm_movemask_epi8(_mm_cmpeq_epi8(x, _mm_set1_epi8(b'"' as i8))),
                    _mm_movemask_epi8(_mm_cmpeq_epi8(x, _mm_set1_epi8(b'\\' as i8))),
                )
            };
            if backslashes != 0 {
                return None;
            }
            words[i / 64] |= u64::from(quotes as u16) << (i % 64);
            i += 16;
        }
        for (k, &c) in b[i..].iter().enumerate() {
            match c {
                b'"' => words[(i + k) / 64] |= 1 << ((i + k) % 64),
                b'\\' => return None,
                _ => {}
            }
        }
        Some(QuoteMap { words })
    }

    /// Just past the closing quote of the string whose opening quote is at `start`.
    pub fn string_end(&self, start: usize) -> Option<usize> {
        let from = start + 1;
        let mut w = from / 64;
        let mut bits = *self.words.get(w)? & (u64::MAX << (from % 64));
        loop {
            if bits != 0 {
                return Some(w * 64 + bits.trailing_zeros() as usize + 1);
            }
            w += 1;
            bits = *self.words.get(w)?;
        }
    }
}
