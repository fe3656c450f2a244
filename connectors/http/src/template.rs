//! `{{ field.path }}` text templates, strict about their syntax: a reference is a dotted path of
//! letters, digits, `_`, `-`, `@` and `$`; anything else between `{{` and `}}` (a filter, an
//! expression, a second pair of braces) is refused when the configuration is checked, so a
//! template never renders differently from what its author meant.

use std::borrow::Cow;

use serde_json::Value;
use sluice_sdk::json;

/// A template that cannot be used. `position` is the byte offset in the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyntaxError {
    #[error("unclosed `{{{{` at position {position}")]
    Unclosed { position: usize },
    #[error("`}}}}` without `{{{{` at position {position}")]
    StrayClose { position: usize },
    #[error("empty `{{{{ }}}}` at position {position}")]
    Empty { position: usize },
    #[error(
        "unknown template syntax `{{{{{text}}}}}` at position {position}: only `{{{{ field.path }}}}` \
         references are supported"
    )]
    Unknown { text: String, position: usize },
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Literal(String),
    /// A dotted path into the record; `at` is where its `{{` starts in the text.
    Field {
        path: String,
        at: usize,
    },
}

/// A parsed text template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextTemplate {
    parts: Vec<Part>,
}

/// A field a template names is missing from the record, or not a scalar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template field `{0}` is missing or not a string, number or boolean")]
pub struct MissingField(pub String);

impl TextTemplate {
    pub fn parse(text: &str) -> Result<Self, SyntaxError> {
        let mut parts = Vec::new();
        let mut pos = 0;
        while pos < text.len() {
            let rest = &text[pos..];
            let open = rest.find("{{");
            let close = rest.find("}}");
            match (open, close) {
                (_, Some(c)) if open.is_none_or(|o| c < o) => {
                    return Err(SyntaxError::StrayClose { position: pos + c })
                }
                (None, _) => {
                    parts.push(Part::Literal(rest.to_string()));
                    break;
                }
                (Some(o), _) => {
                    if o > 0 {
                        parts.push(Part::Literal(rest[..o].to_string()));
                    }
                    let at = pos + o;
                    let inner_start = at + 2;
                    let end = text[inner_start..]
                        .find("}}")
                        .ok_or(SyntaxError::Unclosed { position: at })?;
                    let inner = &text[inner_start..inner_start + end];
                    parts.push(Part::Field {
                        path: field_path(inner, at)?,
                        at,
                    });
                    pos = inner_start + end + 2;
                }
            }
        }
        Ok(TextTemplate { parts })
    }

    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// The text when the template names no field.
    pub fn constant(&self) -> Option<Cow<'_, str>> {
        match self.parts.as_slice() {
            [] => Some(Cow::Borrowed("")),
            [Part::Literal(s)] => Some(Cow::Borrowed(s)),
            _ => None,
        }
    }

    /// The path when the whole template is exactly one reference (`"{{ amount }}"`).
    pub fn single_field(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [Part::Field { path, .. }] => Some(path),
            _ => None,
        }
    }

    pub fn needs_fields(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Field { .. }))
    }

    /// Renders against a parsed record, each field's text passed through `encode`.
    pub fn render_with(
        &self,
        record: &Value,
        out: &mut String,
        mut encode: impl FnMut(&Part, &str, &mut String),
    ) -> Result<(), MissingField> {
        for p in &self.parts {
            match p {
                Part::Literal(s) => out.push_str(s),
                Part::Field { path, .. } => {
                    let text = field_text(record, path)?;
                    encode(p, &text, out);
                }
            }
        }
        Ok(())
    }

    /// Renders against a parsed record, fields as their plain text.
    pub fn render(&self, record: &Value) -> Result<String, MissingField> {
        let mut out = String::new();
        self.render_with(record, &mut out, |_, text, out| out.push_str(text))?;
        Ok(out)
    }
}

/// The text of a scalar field.
pub fn field_text<'v>(record: &'v Value, path: &str) -> Result<Cow<'v, str>, MissingField> {
    json::get(record, path)
        .and_then(json::as_text)
        .ok_or_else(|| MissingField(path.to_string()))
}

/// Checks what is between `{{` and `}}`.
fn field_path(inner: &str, at: usize) -> Result<String, SyntaxError> {
    let path = inner.trim();
    if path.is_empty() {
        return Err(SyntaxError::Empty { position: at });
    }
    let valid = path.split('.').all(|seg| {
        !seg.is_empty()
            && seg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '@' | '$'))
    });
    if !valid || inner.contains('{') {
        return Err(SyntaxError::Unknown {
            text: inner.to_string(),
            position: at,
        });
    }
    Ok(path.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn references_literals_and_refusals() {
        let t = TextTemplate::parse("/api/{{ kind }}/{{a.b}}").unwrap();
        assert_eq!(
            t.render(&json!({"kind": "controls", "a": {"b": 7}}))
                .unwrap(),
            "/api/controls/7"
        );
        assert_eq!(
            t.render(&json!({"kind": "x"})).unwrap_err(),
            MissingField("a.b".into())
        );
        assert_eq!(
            TextTemplate::parse("plain").unwrap().constant().unwrap(),
            "plain"
        );
        assert_eq!(
            TextTemplate::parse("{{ id }}").unwrap().single_field(),
            Some("id")
        );
        assert_eq!(
            TextTemplate::parse("x{{y").unwrap_err(),
            SyntaxError::Unclosed { position: 1 }
        );
        assert_eq!(
            TextTemplate::parse("x}}").unwrap_err(),
            SyntaxError::StrayClose { position: 1 }
        );
        assert_eq!(
            TextTemplate::parse("{{  }}").unwrap_err(),
            SyntaxError::Empty { position: 0 }
        );
        for bad in [
            "{{ a | upper }}",
            "{{ a b }}",
            "{{ a..b }}",
            "{{ {a} }}",
            "{{ f(x) }}",
        ] {
            let e = TextTemplate::parse(bad).unwrap_err();
            assert!(
                matches!(e, SyntaxError::Unknown { position: 0, .. }),
                "{bad}: {e}"
            );
        }
        let e = TextTemplate::parse("ab{{ a | upper }}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`{{ a | upper }}` at position 2"), "{e}");
    }
}
