//! Checks that bytes are one JSON text without building anything: the per-record check of a
//! `format: json` source and of sinks that embed a value as JSON.
//!
//! The grammar is RFC 8259's, with UTF-8 required (section 8.1). Numbers are checked for
//! their grammar only (`1e400` is JSON), and nesting is not limited (no recursion). This runs
//! once per record on a source's read loop: a text of up to 1 KiB first gets a bitmap of the
//! bytes where string text stops (`"`, `\`, control characters, bytes of 0x80 or more; SSE2,
//! sixteen bytes at a time), so each string's end is a bit search; a longer text is scanned
//! from each string's start, sixteen bytes at a time (SSE2; eight elsewhere).

use std::fmt;

use super::quotes::StopMap;

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Why bytes are not JSON.
#[derive(Debug)]
pub enum NotJson {
    /// A syntax error, as `serde_json` describes it (with its line and column).
    Syntax(serde_json::Error),
    /// Bytes that are not UTF-8, at this offset.
    Utf8 { at: usize },
}

impl fmt::Display for NotJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotJson::Syntax(e) => e.fmt(f),
            NotJson::Utf8 { at } => write!(f, "invalid UTF-8 at byte {at}"),
        }
    }
}

impl std::error::Error for NotJson {}

/// Checks that `bytes` are one JSON text (any value, whitespace around it allowed).
pub fn check(bytes: &[u8]) -> Result<(), NotJson> {
    if is_json(bytes) {
        return Ok(());
    }
    // The rare path: say what is wrong. serde_json's message gives the place; what it accepts
    // that the fast path does not is text that is not UTF-8.
    if let Err(e) = std::str::from_utf8(bytes) {
        return Err(NotJson::Utf8 {
            at: e.valid_up_to(),
        });
    }
    match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
        Err(e) => Err(NotJson::Syntax(e)),
        // Both grammars are RFC 8259's; should they ever disagree, serde_json's message is
        // what there is to say, and the value is not passed as JSON.
        Ok(_) => Err(NotJson::Syntax(serde::de::Error::custom(
            "not accepted as one JSON text",
        ))),
    }
}

/// Whether `bytes` are one JSON text; [`check`] says why not.
pub fn is_json(bytes: &[u8]) -> bool {
    match StopMap::new(bytes) {
        Some(stops) => Checker {
            b: bytes,
            stops,
            utf8_checked: false,
        }
        .run(),
        None => Checker {
            b: bytes,
            stops: Scan,
            utf8_checked: false,
        }
        .run(),
    }
    .is_some()
}

/// Where a string's plain text stops (see [`StopMap`]), at or after `from`.
trait Stops {
    fn next(&self, b: &[u8], from: usize) -> Option<usize>;
}

/// From the text's bitmap, for texts short enough to have one.
impl Stops for StopMap {
    #[inline]
    fn next(&self, _b: &[u8], from: usize) -> Option<usize> {
        StopMap::next(self, from)
    }
}

/// Sixteen bytes at a time from `from`, for longer texts.
struct Scan;

impl Stops for Scan {
    #[inline]
    fn next(&self, b: &[u8], from: usize) -> Option<usize> {
        Some(from + string_stop::<true>(b.get(from..)?)?)
    }
}

struct Checker<'a, S> {
    b: &'a [u8],
    stops: S,
    /// Set once a byte of 0x80 or more was seen in a string and the whole input was checked
    /// as UTF-8 (bytes outside strings must be ASCII anyway).
    utf8_checked: bool,
}

impl<S: Stops> Checker<'_, S> {
    /// `Some` when the input is one JSON text.
    fn run(&mut self) -> Option<()> {
        let b = self.b;
        let mut open = Open::default();
        let mut i = self.ws(0);
        'value: loop {
            // A value starts at `i`.
            match *b.get(i)? {
                b'{' => {
                    i = self.ws(i + 1);
                    if b.get(i) == Some(&b'}') {
                        i += 1;
                    } else {
                        open.push(true);
                        i = self.key(i)?;
                        continue 'value;
                    }
                }
                b'[' => {
                    i = self.ws(i + 1);
                    if b.get(i) == Some(&b']') {
                        i += 1;
                    } else {
                        open.push(false);
                        continue 'value;
                    }
                }
                b'"' => i = self.string(i)?,
                b't' => i = literal(b, i, b"true")?,
                b'f' => i = literal(b, i, b"false")?,
                b'n' => i = literal(b, i, b"null")?,
                b'-' | b'0'..=b'9' => i = number(b, i)?,
                _ => return None,
            }
            // After a value: a separator, the end of its container, or the end of the text.
            loop {
                i = self.ws(i);
                if open.depth == 0 {
                    return (i == b.len()).then_some(());
                }
                let in_object = open.in_object();
                match *b.get(i)? {
                    b',' => {
                        i = self.ws(i + 1);
                        if in_object {
                            i = self.key(i)?;
                        }
                        continue 'value;
                    }
                    b'}' if in_object => {}
                    b']' if !in_object => {}
                    _ => return None,
                }
                i += 1;
                open.pop();
            }
        }
    }

    /// A member's name and its colon at `i`: where its value starts.
    fn key(&mut self, i: usize) -> Option<usize> {
        if self.b.get(i) != Some(&b'"') {
            return None;
        }
        let end = self.string(i)?;
        let i = self.ws(end);
        if self.b.get(i) != Some(&b':') {
            return None;
        }
        Some(self.ws(i + 1))
    }

    fn ws(&self, mut i: usize) -> usize {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(i) {
            i += 1;
        }
        i
    }

    /// The string whose opening quote is at `start`: just past its closing quote. Inlined
    /// for the plain string, the common case; the rest is out of line.
    #[inline(always)]
    fn string(&mut self, start: usize) -> Option<usize> {
        let i = self.stops.next(self.b, start + 1)?;
        if *self.b.get(i)? == b'"' {
            return Some(i + 1);
        }
        self.string_from(i)
    }

    /// The rest of a string from a stop that is not its closing quote (an escape, a byte of
    /// 0x80 or more, a control character): just past its closing quote.
    #[cold]
    #[inline(never)]
    fn string_from(&mut self, mut i: usize) -> Option<usize> {
        let b = self.b;
        loop {
            match *b.get(i)? {
                b'"' => return Some(i + 1),
                b'\\' => {
                    i += match *b.get(i + 1)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => 2,
                        b'u' => {
                            let hex = b.get(i + 2..i + 6)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return None;
                            }
                            6
                        }
                        _ => return None,
                    };
                }
                c if c >= 0x80 => {
                    if !self.utf8_checked {
                        std::str::from_utf8(b).ok()?;
                        self.utf8_checked = true;
                    }
                    i += 1;
                }
                // A control character, which must be escaped.
                _ => return None,
            }
            i = self.stops.next(b, i)?;
        }
    }
}

/// The open containers, innermost last: a bit each, 1 for an object. The innermost 128 live
/// in a register; deeper nesting spills the outer ones to the heap.
#[derive(Default)]
struct Open {
    bits: u128,
    depth: usize,
    spilled: Vec<bool>,
}

impl Open {
    fn push(&mut self, object: bool) {
        if self.depth >= 128 {
            self.spilled.push(self.bits >> 127 == 1);
        }
        self.bits = (self.bits << 1) | u128::from(object);
        self.depth += 1;
    }

    fn pop(&mut self) {
        self.bits >>= 1;
        self.depth -= 1;
        if self.depth >= 128 {
            self.bits |= u128::from(self.spilled.pop() == Some(true)) << 127;
        }
    }

    fn in_object(&self) -> bool {
        self.bits & 1 == 1
    }
}

/// The offset of the first byte in `s` that ends or interrupts a plain run of string text:
/// `"` or `\`, and with `CHECKED` also a control character or a byte of 0x80 or more (what a
/// check must look at). `None` if there is none.
#[inline]
pub(super) fn string_stop<const CHECKED: bool>(s: &[u8]) -> Option<usize> {
    let mut i = 0;
    #[cfg(target_arch = "x86_64")]
    while let Some(chunk) = s.get(i..i + 16) {
        // SSE2 is part of x86_64. A signed compare below 0x20 flags the control characters
        // and, as negative bytes, those of 0x80 or more.
        use std::arch::x86_64::*;
        // SAFETY: `chunk` holds 16 readable bytes; the unaligned load reads exactly those.
        let mask = unsafe {
            let x = _mm_loadu_si128(chunk.as_ptr().cast());
            let mut flags = _mm_or_si128(
                _mm_cmpeq_epi8(x, _mm_set1_epi8(b'"' as i8)),
                _mm_cmpeq_epi8(x, _mm_set1_epi8(b'\\' as i8)),
            );
            if CHECKED {
                flags = _mm_or_si128(flags, _mm_cmplt_epi8(x, _mm_set1_epi8(0x20)));
            }
            _mm_movemask_epi8(flags)
        };
        if mask != 0 {
            return Some(i + mask.trailing_zeros() as usize);
        }
        i += 16;
    }
    while let Some(chunk) = s.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        // Each term's lowest flagged byte is exact (borrows only run upwards), so the lowest
        // flag of their union is the first stop.
        let quote = x ^ (ONES * u64::from(b'"'));
        let backslash = x ^ (ONES * u64::from(b'\\'));
        let mut flags =
            (quote.wrapping_sub(ONES) & !quote) | (backslash.wrapping_sub(ONES) & !backslash);
        if CHECKED {
            flags |= (x.wrapping_sub(ONES * 0x20) & !x) | x;
        }
        let flags = flags & HIGHS;
        if flags != 0 {
            return Some(i + (flags.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    s[i..]
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || (CHECKED && !(0x20..0x80).contains(&c)))
        .map(|p| i + p)
}

fn literal(b: &[u8], i: usize, word: &[u8]) -> Option<usize> {
    (b.get(i..i + word.len())? == word).then_some(i + word.len())
}

/// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?` at `i`: just past it. What follows
/// is the caller's to check (a digit after a leading zero is refused there).
fn number(b: &[u8], mut i: usize) -> Option<usize> {
    let digits = |mut i: usize| -> Option<usize> {
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        (i > start).then_some(i)
    };
    if b[i] == b'-' {
        i += 1;
    }
    i = match b.get(i)? {
        b'0' => i + 1,
        b'1'..=b'9' => digits(i)?,
        _ => return None,
    };
    if b.get(i) == Some(&b'.') {
        i = digits(i + 1)?;
    }
    if let Some(b'e' | b'E') = b.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = b.get(i) {
            i += 1;
        }
        i = digits(i)?;
    }
    Some(i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::IgnoredAny;

    /// What the check must agree with: serde_json's grammar, plus UTF-8.
    fn oracle(b: &[u8]) -> bool {
        std::str::from_utf8(b).is_ok() && serde_json::from_slice::<IgnoredAny>(b).is_ok()
    }

    #[test]
    fn accepts_json_texts() {
        for t in [
            &b"{}"[..],
            b"[]",
            b" {\"a\" : [1, -0.5e+3, 2E-2, 0, true, false, null, \"x\\\"\\u00e9\\n\", {}]}\n",
            b"\"text\"",
            b"12",
            b"-0",
            b"null",
            b"1e400",
            "{\"caf\u{e9}\":\"\u{1F600} \u{4e2d}\"}".as_bytes(),
            b"{\"a\":1,\"a\":2}",
            b"\"\\ud800\"",
        ] {
            assert!(is_json(t), "{:?}", String::from_utf8_lossy(t));
            assert!(oracle(t));
        }
    }

    #[test]
    fn refuses_what_is_not_json() {
        for t in [
            &b""[..],
            b"   ",
            b"{",
            b"{\"a\"}",
            b"{\"a\":}",
            b"{\"a\":1,}",
            b"[1,]",
            b"[1 2]",
            b"{1:2}",
            b"{'a':1}",
            b"01",
            b"1.",
            b".5",
            b"-",
            b"+1",
            b"1e",
            b"tru",
            b"nul",
            b"True",
            b"NaN",
            b"\"a",
            b"\"\\x\"",
            b"\"\\u12g4\"",
            b"\"tab\there\"",
            b"{} {}",
            b"{}x",
            b"[}",
            b"{]",
            &[b'"', 0xff, b'"'],
            &[b'"', 0xc3, b'"'],
            &[b'"', 0xed, 0xa0, 0x80, b'"'],
        ] {
            assert!(!is_json(t), "{:?}", String::from_utf8_lossy(t));
            assert!(!oracle(t), "{:?}", String::from_utf8_lossy(t));
            assert!(check(t).is_err());
        }
    }

    #[test]
    fn deep_nesting_keeps_each_level_kind() {
        for depth in [127, 128, 129, 300, 10_000] {
            // Arrays inside objects inside arrays...: every closing bracket must match.
            let (mut open, mut close) = (String::new(), String::new());
            for d in 0..depth {
                if d % 3 == 0 {
                    open.push_str("{\"k\":");
                    close.insert(0, '}');
                } else {
                    open.push('[');
                    close.insert(0, ']');
                }
            }
            let text = format!("{open}1{close}");
            assert!(is_json(text.as_bytes()), "{depth}");
            assert!(oracle(text.as_bytes()), "{depth}");
            // One closing bracket of the wrong kind, anywhere, is refused.
            for at in [0, close.len() / 2, close.len() - 1] {
                let mut wrong = close.clone().into_bytes();
                wrong[at] = if wrong[at] == b']' { b'}' } else { b']' };
                let text = [open.as_bytes(), b"1", &wrong].concat();
                assert!(!is_json(&text), "{depth} {at}");
                assert!(!oracle(&text), "{depth} {at}");
            }
        }
    }

    #[test]
    fn errors_say_where() {
        let e = check(b"{\"a\":tru}").unwrap_err().to_string();
        assert!(e.contains("line 1 column"), "{e}");
        let e = check(&[b'[', b'"', b'x', 0xff, b'"', b']'])
            .unwrap_err()
            .to_string();
        assert_eq!(e, "invalid UTF-8 at byte 3");
    }

    /// Random texts built from JSON's pieces, and the same texts with one byte changed,
    /// removed or inserted: the check agrees with the oracle on every one.
    #[test]
    fn agrees_with_serde_json_on_generated_texts() {
        let mut rng = Rng(0x5eed_1234_abcd_0001);
        let (mut accepted, mut mapped) = (0, 0);
        for _ in 0..40_000 {
            let mut text = Vec::new();
            gen_value(&mut rng, &mut text, 0);
            if rng.below(4) != 0 {
                mutate(&mut rng, &mut text);
            }
            let want = oracle(&text);
            assert_eq!(is_json(&text), want, "{:?}", String::from_utf8_lossy(&text));
            assert_eq!(check(&text).is_ok(), want);
            // Both ways of finding where strings stop, whatever the text's length.
            let scanned = Checker {
                b: &text,
                stops: Scan,
                utf8_checked: false,
            }
            .run();
            assert_eq!(scanned.is_some(), want, "scanned");
            if let Some(stops) = StopMap::new(&text) {
                mapped += 1;
                let by_map = Checker {
                    b: &text,
                    stops,
                    utf8_checked: false,
                }
                .run();
                assert_eq!(by_map.is_some(), want, "mapped");
            }
            accepted += usize::from(want);
        }
        assert!(
            mapped > 20_000,
            "only {mapped} texts were checked with a stop map"
        );
        // Both outcomes are exercised in numbers.
        assert!((5_000..35_000).contains(&accepted), "{accepted}");
    }

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    const PIECES: &[&str] = &[
        "a",
        "Z",
        " ",
        "\\\"",
        "\\\\",
        "\\/",
        "\\n",
        "\\u00e9",
        "\\uD83D\\uDE00",
        "\u{e9}",
        "\u{1F600}",
        "\u{4e2d}",
        "0123456789",
        "\"",
        "\\",
        "\t",
        "{",
        "]",
    ];

    fn gen_value(rng: &mut Rng, out: &mut Vec<u8>, depth: usize) {
        let ws = |rng: &mut Rng, out: &mut Vec<u8>| {
            if rng.below(4) == 0 {
                out.extend_from_slice([&b" "[..], b"\n", b"\t", b"\r\n "][rng.below(4) as usize]);
            }
        };
        ws(rng, out);
        match rng.below(if depth > 4 { 6 } else { 8 }) {
            0 => out.extend_from_slice(b"null"),
            1 => out.extend_from_slice([&b"true"[..], b"false"][rng.below(2) as usize]),
            2 | 3 => {
                let n = [
                    "0",
                    "-0",
                    "7",
                    "-12",
                    "3.25",
                    "1e5",
                    "-2.5E-3",
                    "1e+400",
                    "123456789012",
                ];
                out.extend_from_slice(n[rng.below(n.len() as u64) as usize].as_bytes());
            }
            4 | 5 => gen_string(rng, out),
            6 => {
                out.push(b'[');
                let n = rng.below(4);
                for k in 0..n {
                    if k > 0 {
                        out.push(b',');
                    }
                    gen_value(rng, out, depth + 1);
                }
                ws(rng, out);
                out.push(b']');
            }
            _ => {
                out.push(b'{');
                let n = rng.below(5);
                for k in 0..n {
                    if k > 0 {
                        out.push(b',');
                    }
                    ws(rng, out);
                    gen_string(rng, out);
                    ws(rng, out);
                    out.push(b':');
                    gen_value(rng, out, depth + 1);
                }
                ws(rng, out);
                out.push(b'}');
            }
        }
        ws(rng, out);
    }

    fn gen_string(rng: &mut Rng, out: &mut Vec<u8>) {
        out.push(b'"');
        // Mostly valid pieces; the last three are the ones a string may not hold unescaped.
        for _ in 0..rng.below(12) {
            let valid = PIECES.len() as u64 - 5;
            let k = if rng.below(40) == 0 {
                rng.below(PIECES.len() as u64)
            } else {
                rng.below(valid)
            };
            out.extend_from_slice(PIECES[k as usize].as_bytes());
        }
        out.push(b'"');
    }

    fn mutate(rng: &mut Rng, text: &mut Vec<u8>) {
        const BYTES: &[u8] = b"{}[]\":,\\ 0-.eE+tnfu\x00\x1f\x7f\x80\xc3\xa9\xff";
        if text.is_empty() {
            return;
        }
        let at = rng.below(text.len() as u64) as usize;
        let byte = BYTES[rng.below(BYTES.len() as u64) as usize];
        match rng.below(3) {
            0 => text[at] = byte,
            1 => {
                text.remove(at);
            }
            _ => text.insert(at, byte),
        }
    }
}
