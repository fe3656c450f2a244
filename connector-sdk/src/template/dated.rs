//! Templates with date parts as well as fields: an Elasticsearch index (`audit-%Y.%m.%d`),
//! a file path (`/var/log/purview/audit_%Y%m%d.jsonl`).

use std::fmt::Write as _;

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde_json::Value;

use super::MissingField;
use crate::{json, ConfigError};

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

/// Literal text, `{{ field.path }}` references and strftime-like date parts (`%Y %y %m %d %H
/// %j %G %V`, `%%` for a percent sign).
///
/// Date parts are rendered in UTC from a time the caller picks (the event's, else the
/// record's timestamp, else now). Every supported part changes at most once an hour, so a
/// rendered text can be reused for all records of the same hour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatedTemplate {
    parts: Vec<Part>,
}

impl DatedTemplate {
    /// Parses `text`; errors name the option `key`.
    pub fn parse(text: &str, key: &str) -> Result<Self, ConfigError> {
        if text.is_empty() {
            return Err(ConfigError::at(key, "must not be empty"));
        }
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(c) = rest.chars().next() {
            if let Some(after) = rest.strip_prefix("{{") {
                let end = after
                    .find("}}")
                    .ok_or_else(|| ConfigError::at(key, format!("unclosed `{{{{` in `{text}`")))?;
                let field = after[..end].trim();
                if field.is_empty() {
                    return Err(ConfigError::at(key, format!("empty field in `{text}`")));
                }
                flush(&mut literal, &mut parts);
                parts.push(Part::Field(field.to_string()));
                rest = &after[end + 2..];
            } else if let Some(after) = rest.strip_prefix('%') {
                let spec = after
                    .chars()
                    .next()
                    .ok_or_else(|| ConfigError::at(key, format!("`%` at the end of `{text}`")))?;
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
                            key,
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
        Ok(DatedTemplate { parts })
    }

    /// True when rendering needs the record's fields (so its value must be parsed).
    pub fn needs_fields(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Field(_)))
    }

    /// True when the text depends on the record's time.
    pub fn needs_time(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Date(_)))
    }

    /// The text of a template with neither fields nor dates.
    pub fn constant(&self) -> Option<String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Literal(s) => out.push_str(s),
                _ => return None,
            }
        }
        Some(out)
    }

    /// The literal text before the first field or date part.
    pub fn literal_prefix(&self) -> &str {
        match self.parts.first() {
            Some(Part::Literal(s)) => s,
            _ => "",
        }
    }

    /// Dotted paths of the fields the template reads, in order of appearance.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Field(f) => Some(f.as_str()),
            _ => None,
        })
    }

    /// Appends the text for a record with this time (ms since the epoch) and fields. Field
    /// values are read from `doc`, or through `field` when the caller has no parsed value
    /// (see [`DatedTemplate::render_with`]).
    pub fn render(
        &self,
        time_ms: i64,
        doc: Option<&Value>,
        out: &mut String,
    ) -> Result<(), MissingField> {
        self.render_with(time_ms, out, |f| {
            doc.and_then(|d| json::get(d, f))
                .and_then(json::as_text)
                .map(|c| c.into_owned())
        })
    }

    /// [`render`](Self::render) with a caller's field lookup: the scalar at a dotted path as
    /// text, or `None` when it is missing or not a string, number or boolean.
    pub fn render_with(
        &self,
        time_ms: i64,
        out: &mut String,
        mut field: impl FnMut(&str) -> Option<String>,
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
                    let v = field(f).ok_or_else(|| MissingField(f.clone()))?;
                    out.push_str(&v);
                }
                Part::Date(p) => {
                    // An out-of-range timestamp cannot be rendered; the text keeps its other
                    // parts and the destination decides whether it is valid.
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
        DatedTemplate::parse(t, "index")
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
        let t = DatedTemplate::parse("x-{{ missing }}", "index").unwrap();
        assert!(t.render(ms, Some(&json!({})), &mut String::new()).is_err());
        assert!(DatedTemplate::parse("x-%Q", "index").is_err());
        assert!(DatedTemplate::parse("x-{{ a", "index").is_err());
        assert!(!DatedTemplate::parse("plain", "index").unwrap().needs_time());
    }

    #[test]
    fn prefix_and_constant() {
        let t = DatedTemplate::parse("/var/log/a_%Y/{{ t }}.jsonl", "path").unwrap();
        assert_eq!(t.literal_prefix(), "/var/log/a_");
        assert_eq!(t.constant(), None);
        assert_eq!(t.fields().collect::<Vec<_>>(), ["t"]);
        let c = DatedTemplate::parse("/var/log/a.jsonl", "path").unwrap();
        assert_eq!(c.constant().as_deref(), Some("/var/log/a.jsonl"));
        assert_eq!(
            DatedTemplate::parse("100%%.log", "path")
                .unwrap()
                .constant(),
            Some("100%.log".into())
        );
    }
}
