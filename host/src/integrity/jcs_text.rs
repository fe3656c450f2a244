//! RFC 8785 canonical form computed from a record's JSON text, without building a
//! `serde_json::Value`: stamping and `sluice verify` canonicalise every record, and the tree
//! (an order-keeping map per object, a `String` per key and string) cost more than the rest
//! of stamping together.
//!
//! Each object's members are found as byte spans ([`scan_object`]), sorted by name and
//! written out; a string without escapes is copied as it is, one with escapes is decoded and
//! written with JCS's escapes; an integer already in canonical form (`0`, or up to 15 digits
//! without a leading zero) is copied, any other number goes through serde_json and the same
//! formatting as [`super::jcs`]. A repeated name keeps its last value, as serde_json's map
//! does. The output is byte for byte [`super::jcs::canonical`] of the parsed value.
//!
//! Whatever this does not handle is [`Unhandled`]: text that may not be JSON (serde_json
//! decides), nesting deeper than [`MAX_DEPTH`], escapes that are not well-formed UTF-16.
//! The caller then takes the `Value` path, so correctness never rests on this module's
//! coverage.

use std::cmp::Ordering;
use std::ops::Range;

use sluice_sdk::json::{scan_object, MemberSpans};

/// Deeper nesting goes the `Value` way (serde_json stops at 128 levels).
pub const MAX_DEPTH: usize = 100;

/// The text needs the `Value` path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unhandled;

/// What canonicalising a top-level object found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopLevel {
    /// The raw value of the excluded member (the last one when the name is repeated). Its
    /// text is not checked here: the caller parses it (which checks it), or takes the
    /// `Value` path when it is there.
    pub excluded: Option<Range<usize>>,
    /// Some object, at any depth, repeats a member name.
    pub duplicates: bool,
    /// Where the top-level object's closing brace is.
    pub close: usize,
    /// How many members the top-level object has in its text (repeats and the excluded
    /// member included).
    pub members: usize,
}

/// One member being sorted (small, as sorting moves them).
#[derive(Debug, Clone, Copy)]
struct Member {
    /// The name's first 8 bytes, big-endian, zero-padded: most comparisons end here.
    prefix: u64,
    /// The key as written, without its quotes.
    raw: Span,
    /// The name: in the input (`raw`) or, for a key with escapes, decoded in `names`.
    name: Span,
    decoded: bool,
    value: Span,
}

/// A byte range in 8 bytes (a text of 4 GiB or more is left to the `Value` path).
#[derive(Debug, Clone, Copy)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    fn new(r: &Range<usize>) -> Result<Self, Unhandled> {
        Ok(Span {
            start: u32::try_from(r.start).map_err(|_| Unhandled)?,
            end: u32::try_from(r.end).map_err(|_| Unhandled)?,
        })
    }

    fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// Zero padding keeps byte order: a name that is a prefix of another sorts first either way.
fn prefix(name: &[u8]) -> u64 {
    match name.first_chunk::<8>() {
        Some(head) => u64::from_be_bytes(*head),
        None => name
            .iter()
            .enumerate()
            .fold(0, |p, (i, &c)| p | u64::from(c) << (56 - 8 * i)),
    }
}

/// Reusable buffers (one per stamping lane or verify run), so a record allocates nothing.
#[derive(Debug, Default)]
pub struct Canonicaliser {
    spans: MemberSpans,
    /// The members of every object being written, outermost first.
    members: Vec<Member>,
    names: Vec<u8>,
    duplicates: bool,
    /// The text has no backslash and no byte below 0x20 at all (the usual record): every
    /// string in it is copied without looking at it again.
    clean: bool,
}

impl Canonicaliser {
    /// Appends the JCS of the JSON object `text`, without its top-level member `exclude`,
    /// to `out`. On `Unhandled`, `out` holds partial output: the caller clears it.
    pub fn object(
        &mut self,
        text: &[u8],
        exclude: &str,
        out: &mut Vec<u8>,
    ) -> Result<TopLevel, Unhandled> {
        // serde_json rejects invalid UTF-8 anywhere; checking it once here lets strings be
        // copied as bytes.
        std::str::from_utf8(text).map_err(|_| Unhandled)?;
        self.clean = !special(text);
        self.members.clear();
        self.names.clear();
        self.duplicates = false;
        let start = skip_ws(text, 0);
        let (end, excluded, members) =
            self.write_object(text, start, out, 0, Some(exclude.as_bytes()))?;
        if skip_ws(text, end) != text.len() {
            return Err(Unhandled);
        }
        Ok(TopLevel {
            excluded,
            duplicates: self.duplicates,
            close: end - 1,
            members,
        })
    }

    /// Writes the value at `i` (no whitespace before it); returns where it ends.
    fn write_value(
        &mut self,
        b: &[u8],
        i: usize,
        out: &mut Vec<u8>,
        depth: usize,
    ) -> Result<usize, Unhandled> {
        match b.get(i) {
            Some(b'{') => self
                .write_object(b, i, out, depth + 1, None)
                .map(|(end, _, _)| end),
            Some(b'[') => self.write_array(b, i, out, depth + 1),
            Some(b'"') => write_string(b, i, out, true),
            Some(b't') => literal(b, i, b"true", out),
            Some(b'f') => literal(b, i, b"false", out),
            Some(b'n') => literal(b, i, b"null", out),
            Some(b'-' | b'0'..=b'9') => write_number(b, i, out),
            _ => Err(Unhandled),
        }
    }

    fn write_array(
        &mut self,
        b: &[u8],
        i: usize,
        out: &mut Vec<u8>,
        depth: usize,
    ) -> Result<usize, Unhandled> {
        if depth > MAX_DEPTH {
            return Err(Unhandled);
        }
        out.push(b'[');
        let mut j = skip_ws(b, i + 1);
        if b.get(j) == Some(&b']') {
            out.push(b']');
            return Ok(j + 1);
        }
        loop {
            j = skip_ws(b, self.write_value(b, j, out, depth)?);
            match b.get(j) {
                Some(b',') => {
                    out.push(b',');
                    j = skip_ws(b, j + 1);
                }
                Some(b']') => {
                    out.push(b']');
                    return Ok(j + 1);
                }
                _ => return Err(Unhandled),
            }
        }
    }

    /// Writes the object at `i`: its members sorted, a repeated name's last value, without
    /// `exclude`. Returns its end, the excluded member's value and the member count.
    fn write_object(
        &mut self,
        b: &[u8],
        i: usize,
        out: &mut Vec<u8>,
        depth: usize,
        exclude: Option<&[u8]>,
    ) -> Result<(usize, Option<Range<usize>>, usize), Unhandled> {
        if depth > MAX_DEPTH {
            return Err(Unhandled);
        }
        let base = self.members.len();
        self.spans.clear();
        let scanned = scan_object(b, i, &mut self.spans).ok_or(Unhandled)?;
        let count = self.spans.len();
        for (raw, value) in self.spans.drain(..) {
            let member = if scanned.escaped_keys && b[raw.clone()].contains(&b'\\') {
                let from = self.names.len();
                write_string(b, raw.start - 1, &mut self.names, false)?;
                Member {
                    prefix: prefix(&self.names[from..]),
                    name: Span::new(&(from..self.names.len()))?,
                    raw: Span::new(&raw)?,
                    decoded: true,
                    value: Span::new(&value)?,
                }
            } else {
                if !self.clean && has_control(&b[raw.clone()]) {
                    return Err(Unhandled);
                }
                let raw_span = Span::new(&raw)?;
                Member {
                    prefix: prefix(&b[raw]),
                    name: raw_span,
                    raw: raw_span,
                    decoded: false,
                    value: Span::new(&value)?,
                }
            };
            self.members.push(member);
        }
        sort_members(b, &self.names, &mut self.members[base..]);

        out.push(b'{');
        let mut excluded = None;
        let mut first = true;
        for k in base..self.members.len() {
            let m = self.members[k];
            let name = name_of(b, &self.names, &m);
            let repeated = self.members.get(k + 1).is_some_and(|next| {
                next.prefix == m.prefix && name_of(b, &self.names, next) == name
            });
            if !repeated && exclude == Some(name) {
                excluded = Some(m.value.range());
                continue;
            }
            if repeated {
                // An earlier value of a repeated name is dropped, but serde_json checks it:
                // so does this, writing it and taking the text back.
                self.duplicates = true;
                let mark = out.len();
                self.check_value_end(b, m.value.range(), out, depth)?;
                out.truncate(mark);
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            let (raw, value) = (m.raw.range(), m.value.range());
            if !m.decoded && value.start == raw.end + 2 && self.verbatim(&b[value.clone()]) {
                // `"name":value` as written is already canonical: one copy.
                out.extend_from_slice(&b[raw.start - 1..value.end]);
                continue;
            }
            if m.decoded {
                write_string(b, m.raw.range().start - 1, out, true)?;
            } else {
                // No escape, no control character: the name is written as it is.
                out.push(b'"');
                out.extend_from_slice(&b[m.raw.range()]);
                out.push(b'"');
            }
            out.push(b':');
            self.check_value_end(b, m.value.range(), out, depth)?;
        }
        out.push(b'}');
        self.members.truncate(base);
        Ok((scanned.end, excluded, count))
    }

    /// Writes a member's value, which must end where the scan said it does. A string
    /// without escapes or control characters is copied whole.
    fn check_value_end(
        &mut self,
        b: &[u8],
        value: Range<usize>,
        out: &mut Vec<u8>,
        depth: usize,
    ) -> Result<(), Unhandled> {
        if b[value.start] == b'"' && self.verbatim(&b[value.clone()]) {
            out.extend_from_slice(&b[value]);
            return Ok(());
        }
        if self.write_value(b, value.start, out, depth)? == value.end {
            Ok(())
        } else {
            Err(Unhandled)
        }
    }
}

impl Canonicaliser {
    /// Whether a member's raw value is its own canonical form: a string without escapes or
    /// control characters, an integer [`write_number`] copies, or a literal.
    fn verbatim(&self, value: &[u8]) -> bool {
        match value.first() {
            Some(b'"') => {
                self.clean
                    || (value.len() >= 2
                        && value[value.len() - 1] == b'"'
                        && !special(&value[1..value.len() - 1]))
            }
            Some(b'-' | b'0'..=b'9') => canonical_int(value),
            _ => matches!(value, b"true" | b"false" | b"null"),
        }
    }
}

/// Whether `text` has a backslash or a byte below 0x20 (a fold, not an early exit, so it
/// vectorises).
fn special(text: &[u8]) -> bool {
    text.iter()
        .fold(false, |found, &c| found | (c < 0x20) | (c == b'\\'))
}

fn name_of<'a>(b: &'a [u8], names: &'a [u8], m: &Member) -> &'a [u8] {
    if m.decoded {
        &names[m.name.range()]
    } else {
        &b[m.name.range()]
    }
}

/// Sorts by the names' UTF-16 code units, stably (repeated names stay in document order).
/// That is UTF-8 byte order unless a name has a character from U+E000 (lead byte 0xEE or
/// more), whose UTF-16 form may sort below a supplementary character's surrogates.
fn sort_members(b: &[u8], names: &[u8], members: &mut [Member]) {
    let wide = members
        .iter()
        .any(|m| name_of(b, names, m).iter().any(|&c| c >= 0xEE));
    if wide {
        members.sort_by(|x, y| utf16_cmp(name_of(b, names, x), name_of(b, names, y)));
    } else {
        members.sort_by(|x, y| {
            x.prefix
                .cmp(&y.prefix)
                .then_with(|| name_of(b, names, x).cmp(name_of(b, names, y)))
        });
    }
}

/// `0`, or `-`? and 1 to 15 digits not starting with `0`: below 2^53, so the double prints
/// as the same digits.
fn canonical_int(text: &[u8]) -> bool {
    let digits = text.strip_prefix(b"-").unwrap_or(text);
    text == b"0"
        || (matches!(digits.first(), Some(b'1'..=b'9'))
            && digits.len() <= 15
            && digits.iter().all(u8::is_ascii_digit))
}

/// Whether `text` has a byte below 0x20 (a fold, not an early exit, so it vectorises).
fn has_control(text: &[u8]) -> bool {
    text.iter().fold(false, |found, &c| found | (c < 0x20))
}

fn utf16_cmp(x: &[u8], y: &[u8]) -> Ordering {
    match (std::str::from_utf8(x), std::str::from_utf8(y)) {
        (Ok(x), Ok(y)) => x.encode_utf16().cmp(y.encode_utf16()),
        // Not reached: the input was checked as UTF-8 and decoded names are built from chars.
        _ => x.cmp(y),
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

fn literal(b: &[u8], i: usize, word: &[u8], out: &mut Vec<u8>) -> Result<usize, Unhandled> {
    if b[i..].starts_with(word) {
        out.extend_from_slice(word);
        Ok(i + word.len())
    } else {
        Err(Unhandled)
    }
}

/// Copies an integer in canonical form ([`canonical_int`]); parses anything else as
/// serde_json does and formats it as [`super::jcs`] does.
fn write_number(b: &[u8], i: usize, out: &mut Vec<u8>) -> Result<usize, Unhandled> {
    let len = b[i..]
        .iter()
        .position(|c| !matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
        .unwrap_or(b.len() - i);
    let text = &b[i..i + len];
    if canonical_int(text) {
        out.extend_from_slice(text);
    } else {
        let text = std::str::from_utf8(text).map_err(|_| Unhandled)?;
        let n: serde_json::Number = serde_json::from_str(text).map_err(|_| Unhandled)?;
        super::jcs::write_number(&n, out).map_err(|_| Unhandled)?;
    }
    Ok(i + len)
}

/// The string whose opening quote is at `i`: written in JCS form (with its quotes) when
/// `canonical`, else decoded (the name it spells, no quotes). Returns its end.
fn write_string(
    b: &[u8],
    i: usize,
    out: &mut Vec<u8>,
    canonical: bool,
) -> Result<usize, Unhandled> {
    if canonical {
        out.push(b'"');
    }
    let mut j = i + 1;
    loop {
        let run = memchr::memchr2(b'"', b'\\', &b[j..]).ok_or(Unhandled)?;
        if has_control(&b[j..j + run]) {
            // A raw control character: serde_json rejects it.
            return Err(Unhandled);
        }
        out.extend_from_slice(&b[j..j + run]);
        j += run;
        match b[j] {
            b'"' => {
                if canonical {
                    out.push(b'"');
                }
                return Ok(j + 1);
            }
            _ => {
                let (c, len) = escape(b, j).ok_or(Unhandled)?;
                push_char(c, out, canonical);
                j += len;
            }
        }
    }
}

/// The character a backslash escape at `j` stands for, and the escape's length. Lone or
/// mismatched surrogates are left to serde_json.
fn escape(b: &[u8], j: usize) -> Option<(char, usize)> {
    let c = match *b.get(j + 1)? {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        b'u' => {
            let u = hex4(b, j + 2)?;
            return match u {
                0xD800..=0xDBFF => {
                    if b.get(j + 6..j + 8)? != b"\\u" {
                        return None;
                    }
                    let low = hex4(b, j + 8)?;
                    if !(0xDC00..=0xDFFF).contains(&low) {
                        return None;
                    }
                    let c = 0x10000 + ((u - 0xD800) << 10) + (low - 0xDC00);
                    Some((char::from_u32(c)?, 12))
                }
                0xDC00..=0xDFFF => None,
                _ => Some((char::from_u32(u)?, 6)),
            };
        }
        _ => return None,
    };
    Some((c, 2))
}

fn hex4(b: &[u8], at: usize) -> Option<u32> {
    let digits = b.get(at..at + 4)?;
    let mut v = 0;
    for &d in digits {
        v = v * 16 + (d as char).to_digit(16)?;
    }
    Some(v)
}

/// An escaped character: in JCS form (`\"`, `\\`, the short control escapes, other controls
/// as `\u00xx`, the rest as UTF-8), or as UTF-8 when decoding a name.
fn push_char(c: char, out: &mut Vec<u8>, canonical: bool) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    if canonical {
        let short: &[u8] = match c {
            '"' => b"\\\"",
            '\\' => b"\\\\",
            '\u{8}' => b"\\b",
            '\t' => b"\\t",
            '\n' => b"\\n",
            '\u{c}' => b"\\f",
            '\r' => b"\\r",
            _ => b"",
        };
        if !short.is_empty() {
            out.extend_from_slice(short);
            return;
        }
        if (c as u32) < 0x20 {
            let v = c as usize;
            out.extend_from_slice(b"\\u00");
            out.push(HEX[v >> 4]);
            out.push(HEX[v & 0xf]);
            return;
        }
    }
    let mut buf = [0u8; 4];
    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
}

#[cfg(test)]
mod tests;
