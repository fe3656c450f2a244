//! The index name template: literal text, date parts of the record's time, record fields.

use std::fmt::Write as _;

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde_json::Value;
use sluice_sdk::{json, ConfigError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DatePart {
    Year,
    Year2,
    Month,
    Day,
    Hour,
    DayOfYear,
    IsoYear,
    IsoWeek,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Field(String),
    Date(DatePart),
}

/// A parsed `index` option such as `audit-%Y.%m.%d` or `audit-{{ tenant }}`.
///
/// Date parts are rendered in UTC from the record's timestamp (the current time when the
/// record has none). Every supported part changes at most once an hour, so a rendered name can
/// be reused for all records of the same hour.
#[derive(Debug, Clone)]
pub struct IndexTemplate {
    parts: Vec<Part>,
}

/// A field named by the template is missing from the record.
#[derive(Debug, thiserror::Error)]
#[error("index template field `{0}` is missing or not a string, number or boolean")]
pub struct MissingField(pub String);

impl IndexTemplate {
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        if text.is_empty() {
            return Err(ConfigError::at("index", "must not be empty"));
        }
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(c) = rest.chars().next() {
            if let Some(after) = rest.strip_prefix("{{") {
                let end = after.find("}}").ok_or_else(|| {
                    ConfigError::at("index", format!("unclosed `{{{{` in `{text}`"))
                })?;
                let field = after[..end].trim();
                if field.is_empty() {
                    return Err(ConfigError::at("index", format!("empty field in `{text}`")));
                }
                flush(&mut literal, &mut parts);
                parts.push(Part::Field(field.to_string()));
                rest = &after[end + 2..];
            } else if let Some(after) = rest.strip_prefix('%') {
                let spec = after.chars().next().ok_or_else(|| {
                    ConfigError::at("index", format!("`%` at the end of `{text}`"))
                })?;
                let part = match spec {
                    '%' => None,
                    'Y' => Some(DatePart::Year),
                    'y' => Some(DatePart::Year2),
                    'm' => Some(DatePart::Month),
                    'd' => Some(DatePart::Day),
                    'H' => Some(DatePart::Hour),
                    'j' => Some(DatePart::DayOfYear),
                    'G' => Some(DatePart::IsoYear),
                    'V' => Some(DatePart::IsoWeek),
                    other => {
                        return Err(ConfigError::at(
                            "index",
                            format!(
                                "unsupported `%{other}` in `{text}` (use %Y %y %m %d %H %j %G %V or %%)"
                            ),
                        ))
                    }
                };
                match part {
                    None => literal.push('%'),
                    Some(p) => {
                        flush(&mut literal, &mut parts);
                        parts.push(Part::Date(p));
                    }
                }
                rest = &after[spec.len_utf8()..];
            } else {
                literal.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
        flush(&mut literal, &mut parts);
        Ok(IndexTemplate { parts })
    }

    /// True when rendering needs the record's fields (so its value must be parsed).
    pub fn needs_fields(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Field(_)))
    }

    /// True when the name depends on the record's time.
    pub fn needs_time(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Date(_)))
    }

    /// Appends the index name for a record with this time (ms since the epoch) and fields.
    pub fn render(
        &self,
        time_ms: i64,
        doc: Option<&Value>,
        out: &mut String,
    ) -> Result<(), MissingField> {
        let time = if self.needs_time() {
            DateTime::<Utc>::from_timestamp_millis(time_ms)
        } else {
            None
        };
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Field(f) => {
                    let v = doc
                        .and_then(|d| json::get(d, f))
                        .and_then(json::as_text)
                        .ok_or_else(|| MissingField(f.clone()))?;
                    out.push_str(&v);
                }
                Part::Date(p) => {
                    // An out-of-range timestamp cannot be rendered; the name keeps the literal
                    // parts and ES decides whether it is valid.
                    let Some(t) = time else { continue };
                    // Writing into a String cannot fail.
                    let _ = match p {
                        DatePart::Year => write!(out, "{:04}", t.year()),
                        DatePart::Year2 => write!(out, "{:02}", t.year().rem_euclid(100)),
                        DatePart::Month => write!(out, "{:02}", t.month()),
                        DatePart::Day => write!(out, "{:02}", t.day()),
                        DatePart::Hour => write!(out, "{:02}", t.hour()),
                        DatePart::DayOfYear => write!(out, "{:03}", t.ordinal()),
                        DatePart::IsoYear => write!(out, "{:04}", t.iso_week().year()),
                        DatePart::IsoWeek => write!(out, "{:02}", t.iso_week().week()),
                    };
                }
            }
        }
        Ok(())
    }
}

fn flush(literal: &mut String, parts: &mut Vec<Part>) {
    if !literal.is_empty() {
        parts.push(Part::Literal(std::mem::take(literal)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(t: &str, ms: i64, doc: &Value) -> String {
        let mut s = String::new();
        IndexTemplate::parse(t)
            .unwrap()
            .render(ms, Some(doc), &mut s)
            .unwrap();
        s
    }

    #[test]
    fn dates_and_fields() {
        // 2024-06-10T12:34:56Z
        let ms = 1_718_022_896_000;
        assert_eq!(render("audit-%Y.%m.%d", ms, &json!({})), "audit-2024.06.10");
        assert_eq!(render("a-%y%j-%H", ms, &json!({})), "a-24162-12");
        assert_eq!(render("w-%G.%V", ms, &json!({})), "w-2024.24");
        assert_eq!(
            render("{{ t.id }}-%Y%%", ms, &json!({"t": {"id": "acme"}})),
            "acme-2024%"
        );
        let t = IndexTemplate::parse("x-{{ missing }}").unwrap();
        assert!(t.render(ms, Some(&json!({})), &mut String::new()).is_err());
        assert!(IndexTemplate::parse("x-%Q").is_err());
        assert!(IndexTemplate::parse("x-{{ a").is_err());
        assert!(!IndexTemplate::parse("plain").unwrap().needs_time());
    }
}
