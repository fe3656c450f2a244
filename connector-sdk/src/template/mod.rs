//! `{{ field.path }}` templates for values taken from a record (an index, a Redis key, a
//! topic): `audit:{{ tenant_id }}`; [`DatedTemplate`] adds date parts of the event time
//! (`audit-%Y.%m.%d`).

mod dated;

pub use dated::DatedTemplate;

use std::borrow::Cow;

use serde_json::Value;

use crate::{json, ConfigError};

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(String),
    Field(String),
}

/// A parsed template. A string without `{{` is a constant and renders without touching the
/// record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// A field named by a template is missing or not a scalar.
#[derive(Debug, Clone, thiserror::Error)]
#[error("template field `{0}` is missing or not a string, number or boolean")]
pub struct MissingField(pub String);

impl Template {
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Literal(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| ConfigError::new(format!("unclosed `{{{{` in template `{text}`")))?;
            let field = after[..end].trim();
            if field.is_empty() {
                return Err(ConfigError::new(format!(
                    "empty field in template `{text}`"
                )));
            }
            parts.push(Part::Field(field.to_string()));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// True when the template names no field.
    pub fn is_constant(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Literal(_)))
    }

    /// True when the template needs a parsed record to render.
    pub fn needs_fields(&self) -> bool {
        !self.is_constant()
    }

    /// Dotted paths of the record fields the template reads, in order of appearance. Lets a
    /// connector parse only the parts of a record it needs.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Field(f) => Some(f.as_str()),
            Part::Literal(_) => None,
        })
    }

    /// The text of a constant template.
    pub fn constant(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Literal(s)] => Some(s),
            _ => None,
        }
    }

    /// Renders against a parsed record.
    pub fn render<'a>(&'a self, record: &Value) -> Result<Cow<'a, str>, MissingField> {
        if let Some(c) = self.constant() {
            return Ok(Cow::Borrowed(c));
        }
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Literal(s) => out.push_str(s),
                Part::Field(f) => {
                    let v = json::get(record, f)
                        .and_then(json::as_text)
                        .ok_or_else(|| MissingField(f.clone()))?;
                    out.push_str(&v);
                }
            }
        }
        Ok(Cow::Owned(out))
    }
}

impl<'de> serde::Deserialize<'de> for Template {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Template::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_fields_and_constants() {
        let t = Template::parse("audit:{{ tenant_id }}:{{a.b}}").unwrap();
        let v = json!({"tenant_id": "acme", "a": {"b": 7}});
        assert_eq!(t.render(&v).unwrap(), "audit:acme:7");
        assert!(t.render(&json!({})).is_err());
        assert_eq!(t.fields().collect::<Vec<_>>(), ["tenant_id", "a.b"]);
        let c = Template::parse("main").unwrap();
        assert_eq!(c.constant(), Some("main"));
        assert!(Template::parse("x{{y").is_err());
    }
}
