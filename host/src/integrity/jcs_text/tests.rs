//! The text canonicaliser against the `Value` one: byte-identical output for every input it
//! handles, `Unhandled` for every input serde_json rejects.

use serde_json::Value;

use super::{Canonicaliser, Unhandled};
use crate::integrity::jcs::canonical;

/// The `Value` path as stamping and `verify` take it: `None` when not a JSON object.
fn by_value(text: &[u8], field: &str) -> Option<(Vec<u8>, Option<Value>)> {
    match serde_json::from_slice::<Value>(text) {
        Ok(Value::Object(mut m)) => {
            let excluded = m.shift_remove(field);
            Some((canonical(&Value::Object(m)).ok()?, excluded))
        }
        _ => None,
    }
}

/// Checks one input; true when the text path handled it.
fn agree(c: &mut Canonicaliser, text: &[u8], field: &str) -> bool {
    let mut out = Vec::new();
    let got = c.object(text, field, &mut out);
    let want = by_value(text, field);
    let shown = String::from_utf8_lossy(text);
    match (got, want) {
        (Ok(top), Some((canon, excluded))) => {
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&canon),
                "input {shown}"
            );
            let excluded_text = top
                .excluded
                .map(|r| serde_json::from_slice::<Value>(&text[r]).ok());
            assert_eq!(excluded_text, excluded.map(Some), "excluded, input {shown}");
            assert_eq!(text[top.close], b'}', "input {shown}");
            true
        }
        (Ok(top), None) => {
            // Only the excluded member's text, which the caller parses, may be what is wrong.
            let excluded_bad = top
                .excluded
                .is_some_and(|r| serde_json::from_slice::<Value>(&text[r]).is_err());
            assert!(excluded_bad, "accepted what serde_json rejects: {shown}");
            false
        }
        (Err(Unhandled), _) => false,
    }
}

const CORPUS: &[&str] = &[
    // RFC 8785 section 3.2.2 sample.
    r#"{
        "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
        "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
        "literals": [null, true, false]
    }"#,
    // RFC 8785 section 3.2.3: sorting by UTF-16 code units.
    r#"{
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\ud83d\ude00": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis"
    }"#,
    "{\"€\":1,\"😀\":2,\"\u{fb33}\":3,\"\u{e000}\":4,\"\u{ffff}\":5,\"\u{d7ff}\":6}",
    r#"{"caf\u00e9":"\u00e9","café":"é","a":"\ud83d\ude00 😀"}"#,
    r#"{"c":"\u0000\u0001\u001f\u007f\b\f\n\r\t\"\\\/","d":"\u2028\u2029\uffff"}"#,
    r#"{"n":[1e21,1E-7,-0,0,0.1,100,1.0,12345678901234567890,-12345678901234567890]}"#,
    r#"{"n":[1e20,123456789012345,1234567890123456,9007199254740993,5e-324,1.5e-7]}"#,
    r#"{"n":[18446744073709551615,18446744073709551616,-9223372036854775808,1.7976931348623157e308]}"#,
    r#"{"n":[-9223372036854775809,0.000001,1e-6,2E+3,4.5e0,-0.0,0e5,-1e-400]}"#,
    r#"{"nested":{"z":[{"b":1,"a":[[],{}]},{"y":{"x":{"w":"deep"}}}],"a":{}},"e":[]}"#,
    r#"{"a":1,"b":2,"a":3}"#,
    r#"{"a":{"x":1,"x":{"y":2}},"a":{"q":[1,2]}}"#,
    r#"{"k":1,"\u006b":2}"#,
    r#"{"_audit":{"seq":1},"x":1}"#,
    r#"{"_audit":1,"x":1,"_audit":{"seq":2}}"#,
    r#"{"\u005faudit":1,"x":1}"#,
    " \t\r\n{ \"a\" \n:\t1 ,\r\"b\" : [ 1 , { \"c\" : null } ] , \"d\":\"x\" } \n",
    "{}",
    " { } ",
    r#"{"_audit":1}"#,
    r#"{"s":"\ud83d"}"#,
    r#"{"s":"\ude00"}"#,
    r#"{"s":"\ud83d\u0041"}"#,
    r#"{"s":"\x"}"#,
    r#"{"s":"\u12"}"#,
    "{\"s\":\"tab\there\"}",
    r#"{"n":01}"#,
    r#"{"n":1.}"#,
    r#"{"n":.5}"#,
    r#"{"n":+1}"#,
    r#"{"n":-}"#,
    r#"{"n":1e}"#,
    r#"{"n":1e400}"#,
    r#"{"n":[1,]}"#,
    r#"{"n":1,}"#,
    r#"{"n":1}x"#,
    r#"{"n":tru}"#,
    r#"{"n":truex}"#,
    r#"{"n":nul}"#,
    r#"{"a" "b"}"#,
    r#"{"a":1 "b":2}"#,
    r#"{"a":[1 2]}"#,
    r#"[1,2]"#,
    r#""text""#,
    "12",
    "",
    "not json",
    "{\"a\":\"\u{7f}\u{80}\"}",
    // The excluded member's text is the caller's to check; a repeated one's is checked.
    r#"{"_audit":{"seq":01},"x":1}"#,
    r#"{"_audit":01,"x":1,"_audit":2}"#,
];

#[test]
fn corpus_matches_the_value_path() {
    let mut c = Canonicaliser::default();
    for text in CORPUS {
        agree(&mut c, text.as_bytes(), "_audit");
    }
    // Invalid UTF-8, in a string and outside.
    agree(&mut c, b"{\"a\":\"\xff\"}", "_audit");
    agree(&mut c, b"{\"a\":1}\xff", "_audit");
    // A stamp field other than the default.
    agree(&mut c, br#"{"stamp":1,"_audit":2}"#, "stamp");
}

#[test]
fn the_corpus_is_handled_on_the_text_path() {
    let mut c = Canonicaliser::default();
    for (i, text) in CORPUS[..20].iter().enumerate() {
        assert!(agree(&mut c, text.as_bytes(), "_audit"), "corpus entry {i}");
    }
    // Nesting beyond the limit is left to serde_json.
    let deep = format!("{{\"a\":{}1{}}}", "[".repeat(150), "]".repeat(150));
    assert!(!agree(&mut c, deep.as_bytes(), "_audit"));
    let ok = format!("{{\"a\":{}1{}}}", "[".repeat(90), "]".repeat(90));
    assert!(agree(&mut c, ok.as_bytes(), "_audit"));
}

#[test]
fn repeated_names_and_the_excluded_member_are_reported() {
    let mut c = Canonicaliser::default();
    let mut out = Vec::new();
    let text = br#"{"a":1,"_audit":{"s":1},"a":2,"_audit":{"s":2}}"#;
    let top = c.object(text, "_audit", &mut out).unwrap();
    assert_eq!(out, br#"{"a":2}"#);
    assert!(top.duplicates);
    assert_eq!(&text[top.excluded.unwrap()], br#"{"s":2}"#);
    assert_eq!(top.members, 4);
    out.clear();
    let top = c.object(br#"{"b":1,"a":[]}"#, "_audit", &mut out).unwrap();
    assert_eq!((top.duplicates, top.excluded, top.close), (false, None, 13));
    assert_eq!(out, br#"{"a":[],"b":1}"#);
}

/// A small deterministic generator of JSON texts (xorshift64*), with whitespace, escapes,
/// awkward numbers, repeated and non-ASCII names, and now and then a broken byte.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> usize {
        (self.next() % n) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64)]
    }

    fn ws(&mut self, out: &mut String) {
        if self.below(4) == 0 {
            out.push_str(self.pick(&[" ", "\n", "\t", "\r\n ", "  "]));
        }
    }

    fn string(&mut self, out: &mut String) {
        const PIECES: &[&str] = &[
            "a",
            "Z",
            "0",
            " ",
            "é",
            "€",
            "😀",
            "\u{e000}",
            "\u{ffff}",
            "\u{7f}",
            "\\n",
            "\\t",
            "\\\"",
            "\\\\",
            "\\/",
            "\\b",
            "\\f",
            "\\r",
            "\\u00e9",
            "\\u20AC",
            "\\ud83d\\ude00",
            "\\u0000",
            "\\u001f",
            "\\u0041",
            "\\u005c",
            "\\u0022",
            "\\uE000",
            "\\uDBFF\\uDFFF",
            "_audit",
            "plain text",
        ];
        out.push('"');
        for _ in 0..self.below(5) {
            out.push_str(self.pick(PIECES));
        }
        out.push('"');
    }

    fn key(&mut self, out: &mut String) {
        const KEYS: &[&str] = &[
            "a",
            "b",
            "ab",
            "B",
            "_audit",
            "\\u005faudit",
            "\\u0061",
            "é",
            "\\u00e9",
            "€",
            "😀",
            "\\ud83d\\ude00",
            "\u{fb33}",
            "\u{e000}",
            "",
            "1",
            "\\n",
            "k\\\"q",
            "zz",
        ];
        if self.below(3) == 0 {
            self.string(out);
        } else {
            out.push('"');
            out.push_str(self.pick(KEYS));
            out.push('"');
        }
    }

    fn number(&mut self, out: &mut String) {
        const NUMBERS: &[&str] = &[
            "0",
            "-0",
            "1",
            "-1",
            "100",
            "1.0",
            "0.1",
            "1e21",
            "1E-7",
            "1e-7",
            "-0.0",
            "12345678901234567890",
            "9007199254740993",
            "123456789012345",
            "4.50",
            "1234567890123456",
            "333333333.33333329",
            "1E30",
            "5e-324",
            "2e+3",
            "0e0",
        ];
        if self.below(2) == 0 {
            out.push_str(self.pick(NUMBERS));
            return;
        }
        if self.below(3) == 0 {
            out.push('-');
        }
        let int_len = 1 + self.below(22);
        for i in 0..int_len {
            let d = self.below(10) as u8;
            let d = if i == 0 && int_len > 1 { 1 + d % 9 } else { d };
            out.push((b'0' + d) as char);
        }
        if self.below(2) == 0 {
            out.push('.');
            for _ in 0..1 + self.below(18) {
                out.push((b'0' + self.below(10) as u8) as char);
            }
        }
        if self.below(3) == 0 {
            out.push_str(self.pick(&["e", "E", "e+", "e-", "E-"]));
            out.push_str(&self.below(330).to_string());
        }
    }

    fn value(&mut self, out: &mut String, depth: usize) {
        let kind = if depth > 4 {
            self.below(5)
        } else {
            self.below(7)
        };
        match kind {
            0 => out.push_str(self.pick(&["true", "false", "null"])),
            1 | 2 => self.string(out),
            3 | 4 => self.number(out),
            5 => {
                out.push('[');
                self.ws(out);
                for i in 0..self.below(4) {
                    if i > 0 {
                        out.push(',');
                        self.ws(out);
                    }
                    self.value(out, depth + 1);
                    self.ws(out);
                }
                out.push(']');
            }
            _ => self.object(out, depth + 1),
        }
    }

    fn object(&mut self, out: &mut String, depth: usize) {
        out.push('{');
        self.ws(out);
        for i in 0..self.below(6) {
            if i > 0 {
                out.push(',');
                self.ws(out);
            }
            self.key(out);
            self.ws(out);
            out.push(':');
            self.ws(out);
            self.value(out, depth);
            self.ws(out);
        }
        out.push('}');
    }
}

#[test]
fn generated_json_matches_the_value_path() {
    let mut g = Gen(0x5eed_1234_abcd_0001);
    let mut c = Canonicaliser::default();
    let (mut handled, mut broken_total) = (0, 0);
    const N: usize = 20_000;
    for _ in 0..N {
        let mut text = String::new();
        g.ws(&mut text);
        g.object(&mut text, 0);
        g.ws(&mut text);
        let mut bytes = text.into_bytes();
        // One in eight: a byte dropped, doubled or replaced.
        if g.below(8) == 0 && !bytes.is_empty() {
            broken_total += 1;
            let at = g.below(bytes.len() as u64);
            match g.below(3) {
                0 => {
                    bytes.remove(at);
                }
                1 => bytes.insert(at, bytes[at]),
                _ => {
                    let pool = b"{}[]\",:\\ 0e-";
                    bytes[at] = pool[g.below(pool.len() as u64)];
                }
            }
        }
        if agree(&mut c, &bytes, "_audit") {
            handled += 1;
        }
    }
    // Most well-formed texts take the text path (numbers out of range and lone surrogates
    // do not occur in the generator's pieces).
    assert!(
        handled > N - broken_total - N / 20,
        "{handled} of {N} handled"
    );
}
