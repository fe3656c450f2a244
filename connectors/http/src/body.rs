//! Request bodies: the record's value as it is, or a JSON template filled from the record;
//! and the framing of several records into one request (`json_array`, `ndjson`).

use serde_json::Value;

use crate::template::{field_text, MissingField, SyntaxError, TextTemplate};

/// A JSON template: any JSON, whose strings may hold `{{ field }}` references. A string that
/// is exactly one reference takes the referenced value with its JSON type (a number stays a
/// number, an object stays an object); a string mixing text and references stays a string.
/// Object keys are literal.
#[derive(Debug, Clone)]
pub enum JsonTemplate {
    /// A part without references, serialised once.
    Constant(Box<[u8]>),
    Field(String),
    Text(TextTemplate),
    Object(Vec<(Box<[u8]>, JsonTemplate)>),
    Array(Vec<JsonTemplate>),
}

/// A template error with the dotted path of the string it is in (`template.status`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct TemplateError {
    pub path: String,
    pub error: SyntaxError,
}

impl JsonTemplate {
    /// Parses a template; errors name the path below `at` (`body.template`).
    pub fn parse(value: &Value, at: &str) -> Result<Self, TemplateError> {
        let node = match value {
            Value::String(s) => {
                let t = TextTemplate::parse(s).map_err(|error| TemplateError {
                    path: at.to_string(),
                    error,
                })?;
                if let Some(path) = t.single_field() {
                    JsonTemplate::Field(path.to_string())
                } else if t.needs_fields() {
                    JsonTemplate::Text(t)
                } else {
                    JsonTemplate::Constant(to_json(value))
                }
            }
            Value::Object(m) => {
                let mut members = Vec::with_capacity(m.len());
                for (k, v) in m {
                    let key = to_json(&Value::String(k.clone()));
                    members.push((key, JsonTemplate::parse(v, &format!("{at}.{k}"))?));
                }
                JsonTemplate::Object(members)
            }
            Value::Array(a) => JsonTemplate::Array(
                a.iter()
                    .enumerate()
                    .map(|(i, v)| JsonTemplate::parse(v, &format!("{at}[{i}]")))
                    .collect::<Result<_, _>>()?,
            ),
            other => JsonTemplate::Constant(to_json(other)),
        };
        Ok(node.fold())
    }

    /// A composite whose parts are all constant becomes one constant.
    fn fold(self) -> Self {
        let constant = match &self {
            JsonTemplate::Object(m) => m.iter().all(|(_, v)| v.is_constant()),
            JsonTemplate::Array(a) => a.iter().all(JsonTemplate::is_constant),
            _ => false,
        };
        if !constant {
            return self;
        }
        let mut out = Vec::new();
        // Constant parts render without a record.
        let _ = self.render(&Value::Null, &mut out);
        JsonTemplate::Constant(out.into_boxed_slice())
    }

    fn is_constant(&self) -> bool {
        matches!(self, JsonTemplate::Constant(_))
    }

    /// Whether rendering needs the record parsed.
    pub fn needs_fields(&self) -> bool {
        !self.is_constant()
    }

    /// Writes the JSON for one record.
    pub fn render(&self, record: &Value, out: &mut Vec<u8>) -> Result<(), MissingField> {
        match self {
            JsonTemplate::Constant(bytes) => out.extend_from_slice(bytes),
            JsonTemplate::Field(path) => {
                let v = sluice_sdk::json::get(record, path)
                    .ok_or_else(|| MissingField(path.clone()))?;
                write_json(v, out);
            }
            JsonTemplate::Text(t) => {
                let mut s = String::new();
                for p in t.parts() {
                    match p {
                        crate::template::Part::Literal(l) => s.push_str(l),
                        crate::template::Part::Field { path, .. } => {
                            s.push_str(&field_text(record, path)?)
                        }
                    }
                }
                write_json(&Value::String(s), out);
            }
            JsonTemplate::Object(members) => {
                out.push(b'{');
                for (i, (k, v)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(k);
                    out.push(b':');
                    v.render(record, out)?;
                }
                out.push(b'}');
            }
            JsonTemplate::Array(items) => {
                out.push(b'[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    v.render(record, out)?;
                }
                out.push(b']');
            }
        }
        Ok(())
    }
}

fn to_json(v: &Value) -> Box<[u8]> {
    let mut out = Vec::new();
    write_json(v, &mut out);
    out.into_boxed_slice()
}

fn write_json(v: &Value, out: &mut Vec<u8>) {
    // Serialising a `Value` into memory cannot fail.
    let _ = serde_json::to_writer(out, v);
}

/// How several records share one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchFormat {
    /// `[body,body,...]`, `Content-Type: application/json`.
    JsonArray,
    /// One body per line, `Content-Type: application/x-ndjson`.
    Ndjson,
}

impl BatchFormat {
    pub fn content_type(self) -> &'static str {
        match self {
            BatchFormat::JsonArray => "application/json",
            BatchFormat::Ndjson => "application/x-ndjson",
        }
    }

    /// Appends one record's body (valid JSON) to a batch body.
    pub fn push(self, out: &mut Vec<u8>, first: bool, body: &[u8]) {
        match self {
            BatchFormat::JsonArray => {
                out.push(if first { b'[' } else { b',' });
                out.extend_from_slice(body);
            }
            BatchFormat::Ndjson => {
                out.extend_from_slice(body);
                out.push(b'\n');
            }
        }
    }

    /// Closes a batch body of `n` records.
    pub fn finish(self, out: &mut Vec<u8>, n: usize) {
        if self == BatchFormat::JsonArray {
            if n == 0 {
                out.push(b'[');
            }
            out.push(b']');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(t: &Value, r: &Value) -> Result<Value, MissingField> {
        let t = JsonTemplate::parse(t, "body.template").unwrap();
        let mut out = Vec::new();
        t.render(r, &mut out)?;
        Ok(serde_json::from_slice(&out).expect("valid JSON"))
    }

    #[test]
    fn values_keep_their_types_and_text_is_escaped() {
        let t = json!({
            "status": "{{ payload.status }}",
            "score": "{{ payload.score }}",
            "tags": "{{ payload.tags }}",
            "note": "control {{ payload.id }} is \"{{ payload.status }}\"",
            "fixed": {"a": [1, "two", null]},
            "list": ["{{ payload.id }}", 3],
        });
        let r = json!({"payload": {"status": "active\n", "score": 4.5, "tags": ["a"], "id": 7}});
        assert_eq!(
            render(&t, &r).unwrap(),
            json!({
                "status": "active\n", "score": 4.5, "tags": ["a"],
                "note": "control 7 is \"active\n\"", "fixed": {"a": [1, "two", null]},
                "list": [7, 3],
            })
        );
        assert_eq!(
            render(&t, &json!({"payload": {}})).unwrap_err(),
            MissingField("payload.status".into())
        );
        let c = JsonTemplate::parse(&json!({"a": {"b": [1]}}), "t").unwrap();
        assert!(!c.needs_fields());
    }

    #[test]
    fn errors_name_the_string() {
        let e = JsonTemplate::parse(&json!({"a": [{"b": "{{ x | y }}"}]}), "body.template")
            .unwrap_err();
        assert_eq!(e.path, "body.template.a[0].b");
    }

    #[test]
    fn framing() {
        for (f, want) in [
            (BatchFormat::JsonArray, &b"[{\"a\":1},2]"[..]),
            (BatchFormat::Ndjson, &b"{\"a\":1}\n2\n"[..]),
        ] {
            let mut out = Vec::new();
            f.push(&mut out, true, b"{\"a\":1}");
            f.push(&mut out, false, b"2");
            f.finish(&mut out, 2);
            assert_eq!(out, want);
        }
        let mut out = Vec::new();
        BatchFormat::JsonArray.finish(&mut out, 0);
        assert_eq!(out, b"[]");
    }
}
