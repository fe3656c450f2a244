//! `redact`: replaces what built-in patterns (`email`, `us_ssn`, `credit_card`, `ipv4`,
//! `ipv6`, `phone`, `iban`) and custom regexes match in the string values of some fields.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock, OnceLock};

use prometheus::{IntCounter, IntCounterVec, Opts};
use regex::{Captures, Regex};
use serde::Deserialize;
use serde_json::Value;
use sluice_sdk::transform::{Event, Fields, Transform, TransformError, Verdict};
use sluice_sdk::{BuildContext, ConfigError};

use super::super::condition::{Condition, ConditionConfig};
use super::{applies, compile_when, duplicated, edit_field};

/// `sluice_redactions_total{pipeline,pattern}`, in the process-wide registry the host
/// exposes after its own families.
static REDACTIONS: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    let c = IntCounterVec::new(
        Opts::new(
            "sluice_redactions_total",
            "Matches replaced by the redact transform, by pattern",
        ),
        &["pipeline", "pattern"],
    )
    .ok()?;
    prometheus::register(Box::new(c.clone())).ok()?;
    Some(c)
});

/// The built-in pattern names, in the order they are applied.
pub const BUILT_IN: [&str; 7] = [
    "email",
    "iban",
    "credit_card",
    "us_ssn",
    "ipv6",
    "ipv4",
    "phone",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedactConfig {
    /// Dotted paths, or `*` for every field.
    pub fields: Vec<String>,
    /// Built-in patterns to apply; every built-in one when neither this nor `custom` is given.
    #[serde(default)]
    pub patterns: Option<Vec<String>>,
    /// Custom patterns: name → regex.
    #[serde(default)]
    pub custom: BTreeMap<String, String>,
    /// Fixed replacement text; `[REDACTED:<pattern>]` when absent.
    #[serde(default)]
    pub replacement: Option<String>,
    #[serde(default)]
    pub when: Option<ConditionConfig>,
}

type Check = fn(&str) -> bool;
type Maybe = fn(&[u8]) -> bool;

fn is_digit_at(b: &[u8], i: usize) -> bool {
    b.get(i).is_some_and(u8::is_ascii_digit)
}

/// The quick test of a built-in: a necessary condition for a match, far cheaper than the
/// search (most values hold no personal data).
fn maybe(name: &str) -> Option<Maybe> {
    Some(match name {
        // `local@d`: a local-part character before the `@` and an alphanumeric after it.
        "email" => |b| {
            memchr::memchr_iter(b'@', b).any(|i| {
                i > 0
                    && (b[i - 1].is_ascii_alphanumeric() || b"._%+-".contains(&b[i - 1]))
                    && b.get(i + 1).is_some_and(u8::is_ascii_alphanumeric)
            })
        },
        // `ddd-dd-dddd` around its first dash.
        "us_ssn" => |b| {
            memchr::memchr_iter(b'-', b).any(|i| {
                i >= 3
                    && (i - 3..i).all(|j| is_digit_at(b, j))
                    && (i + 1..i + 3).all(|j| is_digit_at(b, j))
                    && b.get(i + 3) == Some(&b'-')
                    && (i + 4..i + 8).all(|j| is_digit_at(b, j))
            })
        },
        // Three dots with a digit on each side.
        "ipv4" => |b| {
            memchr::memchr_iter(b'.', b)
                .filter(|&i| i > 0 && is_digit_at(b, i - 1) && is_digit_at(b, i + 1))
                .nth(2)
                .is_some()
        },
        "ipv6" => |b| memchr::memchr_iter(b':', b).nth(1).is_some(),
        "phone" => |b| {
            memchr::memchr_iter(b'+', b)
                .any(|i| b.get(i + 1).is_some_and(|c| (b'1'..=b'9').contains(c)))
        },
        "credit_card" => |b| b.iter().filter(|c| c.is_ascii_digit()).nth(12).is_some(),
        // Two capitals then two digits (the country and check digits).
        "iban" => |b| {
            b.windows(4).any(|w| {
                w[0].is_ascii_uppercase()
                    && w[1].is_ascii_uppercase()
                    && w[2].is_ascii_digit()
                    && w[3].is_ascii_digit()
            })
        },
        _ => return None,
    })
}

struct Pattern {
    /// A quick test every text holding a match passes: texts that fail it are not searched.
    maybe: Option<Maybe>,
    re: Regex,
    check: Option<Check>,
    replacement: String,
    name: String,
    /// `sluice_redactions_total` for this pipeline and pattern, made at the first match so
    /// building a transform to check a configuration leaves no series behind.
    counter: OnceLock<Option<IntCounter>>,
}

/// A compiled `redact`.
pub struct Redact {
    pipeline: Arc<str>,
    fields: Vec<String>,
    all: bool,
    patterns: Vec<Pattern>,
    /// Every pattern has a quick test (only built-ins): a string's raw JSON text without
    /// escapes holds its value between quotes, which no built-in match contains.
    raw_ok: bool,
    /// For each byte, the patterns (bits by index) whose quick test looks around it, and
    /// [`ESCAPE`] for a backslash: one pass over a raw string tells which tests to run.
    triggers: Box<[u64; 256]>,
    /// The patterns whose quick test has no single byte to look for: always run.
    untriggered: u64,
    when: Option<Condition>,
}

/// The bit of [`Redact::triggers`] marking a backslash (an escape: the raw text is not the
/// value).
const ESCAPE: u64 = 1 << 63;

/// The byte every match of a built-in contains, around which its quick test looks.
fn trigger(name: &str) -> Option<u8> {
    Some(match name {
        "email" => b'@',
        "us_ssn" => b'-',
        "ipv4" => b'.',
        "ipv6" => b':',
        "phone" => b'+',
        _ => return None,
    })
}

fn built_in(name: &str) -> Option<(&'static str, Option<Check>)> {
    Some(match name {
        "email" => (
            r"(?i-u)\b[a-z0-9._%+-]+@[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*\.[a-z]{2,}\b",
            None,
        ),
        "us_ssn" => (r"(?-u)\b\d{3}-\d{2}-\d{4}\b", Some(ssn_ok)),
        "credit_card" => (r"(?-u)\b\d(?:[ -]?\d){12,18}\b", Some(luhn_ok)),
        "ipv4" => (
            r"(?-u)\b(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\b",
            None,
        ),
        "ipv6" => (
            r"(?i-u)[0-9a-f:]*:[0-9a-f:]*:[0-9a-f:]*(?:\.\d{1,3}){0,3}",
            Some(ipv6_ok),
        ),
        "phone" => (r"(?-u)\+[1-9][\d ().-]{5,22}\d", Some(phone_ok)),
        "iban" => (
            r"(?-u)\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b",
            Some(iban_ok),
        ),
        _ => return None,
    })
}

/// An SSN in `AAA-GG-SSSS` form the SSA could issue: area not 000, 666 or 9xx, group not 00,
/// serial not 0000.
fn ssn_ok(s: &str) -> bool {
    let b = s.as_bytes();
    let area = &s[..3];
    b.len() == 11
        && area != "000"
        && area != "666"
        && b[0] != b'9'
        && &s[4..6] != "00"
        && &s[7..] != "0000"
}

/// 13 to 19 digits (spaces and dashes between them allowed) with a valid Luhn checksum.
fn luhn_ok(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let d = d * 2;
                if d > 9 {
                    d - 9
                } else {
                    d
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Any form `std::net::Ipv6Addr` parses (compressed `::`, embedded IPv4).
fn ipv6_ok(s: &str) -> bool {
    s.parse::<std::net::Ipv6Addr>().is_ok()
}

/// `+` then 8 to 15 digits (E.164's limit), spaces, dots, dashes and parentheses between.
fn phone_ok(s: &str) -> bool {
    let n = s.chars().filter(char::is_ascii_digit).count();
    (8..=15).contains(&n)
}

/// 15 to 34 characters (spaces ignored) whose ISO 13616 mod-97 check gives 1.
fn iban_ok(s: &str) -> bool {
    let compact: Vec<u8> = s.bytes().filter(|b| *b != b' ').collect();
    if !(15..=34).contains(&compact.len()) {
        return false;
    }
    let (head, tail) = compact.split_at(4);
    let mut rem: u32 = 0;
    for &b in tail.iter().chain(head) {
        let v = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

pub fn build(cfg: RedactConfig, ctx: &BuildContext) -> Result<Box<dyn Transform>, ConfigError> {
    Ok(Box::new(compile(cfg, ctx)?))
}

fn compile(cfg: RedactConfig, ctx: &BuildContext) -> Result<Redact, ConfigError> {
    if cfg.fields.is_empty() {
        return Err(ConfigError::at("fields", "name at least one field, or `*`"));
    }
    let names: Vec<String> = match cfg.patterns {
        Some(p) => p,
        None if cfg.custom.is_empty() => BUILT_IN.iter().map(|s| s.to_string()).collect(),
        None => Vec::new(),
    };
    let mut patterns = Vec::new();
    // Built-ins run in their fixed order, whatever order the list gives.
    for name in &names {
        if built_in(name).is_none() {
            return Err(ConfigError::at(
                "patterns",
                format!("unknown pattern `{name}` (known: {})", BUILT_IN.join(", ")),
            ));
        }
    }
    let mut specs: Vec<(String, Regex, Option<Check>)> = Vec::new();
    for name in BUILT_IN {
        if !names.iter().any(|n| n.as_str() == name) {
            continue;
        }
        if let Some((re, check)) = built_in(name) {
            let re = Regex::new(re).map_err(|e| ConfigError::new(e.to_string()))?;
            specs.push((name.to_string(), re, check));
        }
    }
    for (name, re) in &cfg.custom {
        let re = Regex::new(re).map_err(|e| {
            ConfigError::at(format!("custom.{name}"), format!("invalid regex: {e}"))
        })?;
        specs.push((name.clone(), re, None));
    }
    for (name, re, check) in specs {
        let replacement = cfg
            .replacement
            .clone()
            .unwrap_or_else(|| format!("[REDACTED:{name}]"));
        let maybe = if cfg.custom.contains_key(&name) {
            None
        } else {
            maybe(&name)
        };
        patterns.push(Pattern {
            maybe,
            re,
            check,
            replacement,
            name,
            counter: OnceLock::new(),
        });
    }
    let all = cfg.fields.iter().any(|f| f == "*");
    let raw_ok = patterns.len() < 63 && patterns.iter().all(|p| p.maybe.is_some());
    let mut triggers = Box::new([0u64; 256]);
    triggers[usize::from(b'\\')] = ESCAPE;
    let mut untriggered = 0;
    for (i, p) in patterns.iter().enumerate().take(63) {
        match trigger(&p.name).filter(|_| p.maybe.is_some()) {
            Some(b) => triggers[usize::from(b)] |= 1 << i,
            None => untriggered |= 1 << i,
        }
    }
    Ok(Redact {
        pipeline: ctx.pipeline.clone(),
        fields: cfg.fields,
        all,
        patterns,
        raw_ok,
        triggers,
        untriggered,
        when: compile_when(cfg.when)?,
    })
}

impl Redact {
    /// Whether `path` names a top-level string that no pattern can match, read from its raw
    /// JSON text without parsing it.
    fn raw_clean(&self, fields: &Fields<'_>, path: &str) -> bool {
        if !self.raw_ok || path.contains('.') {
            return false;
        }
        fields
            .raw(path)
            .is_some_and(|raw| raw.starts_with('"') && self.raw_text_clean(raw))
    }

    /// Whether a member's raw JSON text is a string without escapes or a plain integer that
    /// no pattern can match, or a literal: nothing to redact, and nothing to parse to know it.
    fn raw_text_clean(&self, raw: &str) -> bool {
        let b = raw.as_bytes();
        match b.first() {
            Some(b'"') => {
                let seen = b
                    .iter()
                    .fold(0, |seen, c| seen | self.triggers[usize::from(*c)]);
                if seen & ESCAPE != 0 {
                    return false;
                }
                let mut run = seen | self.untriggered;
                while run != 0 {
                    let i = run.trailing_zeros() as usize;
                    run &= run - 1;
                    if self.patterns[i].maybe.is_none_or(|m| m(b)) {
                        return false;
                    }
                }
                true
            }
            Some(b't' | b'f' | b'n') => true,
            // An integer that fits 64 bits is printed back as written, so its text is what
            // the patterns would be given.
            Some(b'-' | b'0'..=b'9') if b.len() <= 18 && b[1..].iter().all(u8::is_ascii_digit) => {
                !self.may_match(raw)
            }
            _ => false,
        }
    }

    /// `fields: ["*"]` over a record that gives each name once: members are looked at by
    /// position, and only those that may hold a match are looked up, parsed and edited.
    fn every_member(&self, fields: &mut Fields<'_>) -> Result<Verdict, TransformError> {
        let mut dirty: Vec<String> = Vec::new();
        for i in 0..fields.len() {
            let Some((name, raw)) = fields.member(i) else {
                break;
            };
            if !raw.is_some_and(|r| self.raw_text_clean(r)) {
                dirty.push(name.to_string());
            }
        }
        for name in &dirty {
            if fields.get(name).is_some_and(|v| self.may_change(&v)) {
                edit_field(fields, name, "redact", |v| Ok(self.value(v)))?;
            }
        }
        Ok(Verdict::Keep)
    }

    /// Whether some pattern may match in `text`: its quick test passes, or it has none.
    fn may_match(&self, text: &str) -> bool {
        self.patterns
            .iter()
            .any(|p| p.maybe.is_none_or(|m| m(text.as_bytes())))
    }

    /// Whether some pattern may match somewhere in `value`: `false` means redacting would
    /// leave it as it is.
    fn may_change(&self, value: &Value) -> bool {
        match value {
            Value::String(s) => self.may_match(s),
            Value::Number(n) => self.may_match(&n.to_string()),
            Value::Array(items) => items.iter().any(|v| self.may_change(v)),
            Value::Object(map) => map.values().any(|v| self.may_change(v)),
            Value::Bool(_) | Value::Null => false,
        }
    }

    /// Redacts one text; `Some` when something matched.
    fn text(&self, text: &str) -> Option<String> {
        let mut current: Option<String> = None;
        for p in &self.patterns {
            let src = current.as_deref().unwrap_or(text);
            if p.maybe.is_some_and(|m| !m(src.as_bytes())) {
                continue;
            }
            let mut hits = 0u64;
            let out = p.re.replace_all(src, |c: &Captures<'_>| {
                let m = &c[0];
                if p.check.is_none_or(|check| check(m)) {
                    hits += 1;
                    p.replacement.clone()
                } else {
                    m.to_string()
                }
            });
            if hits > 0 {
                let counter = p.counter.get_or_init(|| {
                    REDACTIONS.as_ref().and_then(|c| {
                        c.get_metric_with_label_values(&[&*self.pipeline, p.name.as_str()])
                            .ok()
                    })
                });
                if let Some(c) = counter {
                    c.inc_by(hits);
                }
                current = Some(out.into_owned());
            }
        }
        current
    }

    /// Redacts every string inside `value` (arrays and objects included) and the text of
    /// numbers, which become the redacted string when something matched.
    fn value(&self, value: &mut Value) -> bool {
        match value {
            Value::String(s) => match self.text(s) {
                Some(r) => {
                    *s = r;
                    true
                }
                None => false,
            },
            Value::Number(n) => match self.text(&n.to_string()) {
                Some(r) => {
                    *value = Value::String(r);
                    true
                }
                None => false,
            },
            Value::Array(items) => items.iter_mut().fold(false, |c, v| self.value(v) | c),
            Value::Object(map) => map.values_mut().fold(false, |c, v| self.value(v) | c),
            Value::Bool(_) | Value::Null => false,
        }
    }
}

impl Transform for Redact {
    fn apply(&self, event: &mut Event<'_>) -> Result<Verdict, TransformError> {
        let fields = event.fields()?;
        if !applies(&self.when, fields) {
            return Ok(Verdict::Keep);
        }
        if self.all && self.raw_ok && !fields.has_repeated_names() {
            return self.every_member(fields);
        }
        let paths: Vec<Cow<'_, str>> = if self.all {
            fields.distinct_names()
        } else {
            self.fields
                .iter()
                .map(|f| Cow::Borrowed(f.as_str()))
                .collect()
        };
        for path in &paths {
            // Looked at in place first: only a value a pattern matches (or a field given
            // twice, whose other copy must go) is copied out and written back.
            let clean = self.raw_clean(fields, path)
                || fields.get(path).is_some_and(|v| !self.may_change(&v));
            if clean && !duplicated(fields, path) {
                continue;
            }
            edit_field(fields, path, "redact", |v| Ok(self.value(v)))?;
        }
        Ok(Verdict::Keep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redact(patterns: &[&str]) -> Redact {
        redact_fields(&["*"], patterns)
    }

    fn redact_fields(fields: &[&str], patterns: &[&str]) -> Redact {
        let cfg = RedactConfig {
            fields: fields.iter().map(|s| s.to_string()).collect(),
            patterns: Some(patterns.iter().map(|s| s.to_string()).collect()),
            custom: BTreeMap::new(),
            replacement: None,
            when: None,
        };
        let ctx = BuildContext {
            pipeline: "unit".into(),
            data_dir: std::env::temp_dir(),
        };
        compile(cfg, &ctx).unwrap_or_else(|e| panic!("{}", e.message))
    }

    /// Each (input, expected output) through one pattern.
    fn table(pattern: &str, cases: &[(&str, &str)]) {
        let r = redact(&[pattern]);
        for (input, want) in cases {
            let got = r.text(input).unwrap_or_else(|| input.to_string());
            assert_eq!(&got, want, "{pattern} on {input:?}");
        }
    }

    #[test]
    fn email_in_free_text() {
        table(
            "email",
            &[
                (
                    "mail jane.doe+x@example.co.uk now",
                    "mail [REDACTED:email] now",
                ),
                ("a@b.io,c_d@e-f.org", "[REDACTED:email],[REDACTED:email]"),
                ("JOHN@EXAMPLE.COM", "[REDACTED:email]"),
                ("user@localhost", "user@localhost"),
                ("@handle and a@b", "@handle and a@b"),
                ("2 @ 3.5", "2 @ 3.5"),
            ],
        );
    }

    #[test]
    fn us_ssn_valid_and_invalid() {
        table(
            "us_ssn",
            &[
                ("ssn 123-45-6789.", "ssn [REDACTED:us_ssn]."),
                ("078-05-1120", "[REDACTED:us_ssn]"),
                ("000-12-3456", "000-12-3456"),
                ("666-12-3456", "666-12-3456"),
                ("900-12-3456", "900-12-3456"),
                ("987-65-4321", "987-65-4321"),
                ("123-00-4567", "123-00-4567"),
                ("123-45-0000", "123-45-0000"),
                ("123456789", "123456789"),
                ("1123-45-6789", "1123-45-6789"),
            ],
        );
    }

    #[test]
    fn credit_card_luhn() {
        table(
            "credit_card",
            &[
                ("card 4111111111111111 ok", "card [REDACTED:credit_card] ok"),
                ("4111 1111 1111 1111", "[REDACTED:credit_card]"),
                ("5500-0000-0000-0004", "[REDACTED:credit_card]"),
                ("378282246310005", "[REDACTED:credit_card]"),
                ("4111111111111112", "4111111111111112"),
                ("1234 5678 9012 3456", "1234 5678 9012 3456"),
                ("order 123456789012", "order 123456789012"),
            ],
        );
    }

    #[test]
    fn ip_addresses() {
        table(
            "ipv4",
            &[
                ("from 10.0.0.1:443", "from [REDACTED:ipv4]:443"),
                ("255.255.255.255", "[REDACTED:ipv4]"),
                ("version 1.2.3", "version 1.2.3"),
                ("999.1.1.1", "999.1.1.1"),
            ],
        );
        table(
            "ipv6",
            &[
                ("2001:db8::1 up", "[REDACTED:ipv6] up"),
                ("fe80:0:0:0:202:b3ff:fe1e:8329", "[REDACTED:ipv6]"),
                ("::1", "[REDACTED:ipv6]"),
                ("::ffff:192.0.2.128", "[REDACTED:ipv6]"),
                ("at 12:30:45", "at 12:30:45"),
                ("aa:bb:cc:dd:ee:ff", "aa:bb:cc:dd:ee:ff"),
                ("a::b::c", "a::b::c"),
            ],
        );
    }

    #[test]
    fn phone_and_iban() {
        table(
            "phone",
            &[
                ("call +14155552671", "call [REDACTED:phone]"),
                ("+44 20 7946 0958", "[REDACTED:phone]"),
                ("+1 (415) 555-2671", "[REDACTED:phone]"),
                ("+12345", "+12345"),
                ("4155552671", "4155552671"),
            ],
        );
        table(
            "iban",
            &[
                ("iban DE89370400440532013000 x", "iban [REDACTED:iban] x"),
                ("GB82 WEST 1234 5698 7654 32", "[REDACTED:iban]"),
                ("DE89370400440532013001", "DE89370400440532013001"),
                ("GB83 WEST 1234 5698 7654 32", "GB83 WEST 1234 5698 7654 32"),
            ],
        );
    }

    #[test]
    fn matches_are_counted_per_pipeline_and_pattern() {
        let ctx = BuildContext {
            pipeline: "metric-test".into(),
            data_dir: std::env::temp_dir(),
        };
        let cfg = RedactConfig {
            fields: vec!["*".into()],
            patterns: Some(vec!["email".into(), "ipv4".into()]),
            custom: BTreeMap::new(),
            replacement: Some("x".into()),
            when: None,
        };
        let r = compile(cfg, &ctx).unwrap_or_else(|e| panic!("{}", e.message));
        assert_eq!(r.text("a@b.io c@d.io 10.0.0.1").as_deref(), Some("x x x"));
        let count = |pattern: &str| {
            REDACTIONS
                .as_ref()
                .and_then(|c| {
                    c.get_metric_with_label_values(&["metric-test", pattern])
                        .ok()
                })
                .map(|c| c.get())
        };
        assert_eq!(count("email"), Some(2));
        assert_eq!(count("ipv4"), Some(1));
    }

    #[test]
    fn patterns_apply_in_their_order_and_unknown_ones_are_refused() {
        let r = redact(&["phone", "email"]);
        let order: Vec<&str> = r.patterns.iter().map(|p| p.replacement.as_str()).collect();
        assert_eq!(order, ["[REDACTED:email]", "[REDACTED:phone]"]);
        let ctx = BuildContext {
            pipeline: "unit".into(),
            data_dir: std::env::temp_dir(),
        };
        let cfg = RedactConfig {
            fields: vec!["a".into()],
            patterns: Some(vec!["passport".into()]),
            custom: BTreeMap::new(),
            replacement: None,
            when: None,
        };
        let e = build(cfg, &ctx).err().map(|e| e.message);
        assert!(e.is_some_and(|m| m.contains("unknown pattern `passport`")));
    }

    /// The record's bytes after `r` (raw, so escapes written in the input are kept apart).
    fn apply_raw(r: &Redact, input: &str) -> String {
        let rec = sluice_sdk::Record::new(
            input.as_bytes().to_vec(),
            sluice_sdk::Origin::new("s".into(), 0, 0),
        );
        let mut e = Event::new(&rec);
        r.apply(&mut e).unwrap_or_else(|e| panic!("{e}"));
        match e.finish().unwrap_or_else(|e| panic!("{e}")) {
            Some(b) => String::from_utf8(b.to_vec()).unwrap_or_default(),
            None => input.to_string(),
        }
    }

    #[test]
    fn fields_read_raw_or_parsed_are_redacted_alike() {
        let r = redact(&["email", "ipv4", "us_ssn"]);
        // Untouched fields keep their bytes; a matching one is rewritten.
        assert_eq!(
            apply_raw(&r, r#"{"a":"plain text","b":"mail x@y.org","n":7}"#),
            r#"{"a":"plain text","b":"mail [REDACTED:email]","n":7}"#
        );
        // An escape hides the `@` from the raw text: the value is decoded and still redacted.
        let out = apply_raw(&r, r#"{"a":"x\u0040y.org"}"#);
        assert!(!out.contains("y.org"), "{out}");
        // A field given twice is written once, whether or not it matched.
        let out = apply_raw(&r, r#"{"a":"10.0.0.1","a":"clean"}"#);
        assert_eq!(out, r#"{"a":"clean"}"#);
        // Nested values and numbers go through the parsed path.
        let out = apply_raw(&r, r#"{"o":{"ip":"10.1.2.3"},"l":["078-05-1120"]}"#);
        assert_eq!(
            out,
            r#"{"o":{"ip":"[REDACTED:ipv4]"},"l":["[REDACTED:us_ssn]"]}"#
        );
        // Integers are judged on their text: a card number given as a number is redacted
        // (into a string); a short integer and a fraction are left as they are.
        let cards = redact(&["credit_card"]);
        assert_eq!(
            apply_raw(&cards, r#"{"n":4111111111111111,"m":-42,"f":1.5}"#),
            r#"{"n":"[REDACTED:credit_card]","m":-42,"f":1.5}"#
        );
        // A dotted path never reads a top-level name that contains the dot.
        let dotted = redact_fields(&["a.b"], &["email"]);
        let out = apply_raw(&dotted, r#"{"a.b":"clean","a":{"b":"x@y.org"}}"#);
        assert!(!out.contains("x@y.org"), "{out}");
    }
}
