//! `${VAR}` / `${VAR:-default}` expansion in the parsed YAML values.
//!
//! Expansion happens after parsing, inside each string value, never on the text: a value from
//! the environment holding `"`, `\`, ` #` or a newline is taken literally and can never add
//! keys or end a quoted string. `$$` is a literal `$`. A plain (unquoted) scalar that held a
//! reference is typed as YAML would type its expansion when that is a number, a boolean or
//! null (`concurrency: ${WORKERS}` is a number), and stays a string otherwise.
//!
//! So that a reference may stand unquoted inside a flow collection (`{ path: ${OUT} }`,
//! where `{` and `}` are YAML syntax), [`protect`] first rewrites each reference's braces to
//! two private-use characters; positions, counted in characters, do not move.

use std::borrow::Cow;

use serde_yaml::Value;

/// Stand-ins for the braces of a `${...}` reference while the YAML is parsed.
const OPEN: char = '\u{E000}';
const CLOSE: char = '\u{E001}';

/// The text with the braces of every `${...}` reference (closed on its line) replaced by
/// [`OPEN`] and [`CLOSE`]; `$$` is left as it is.
pub fn protect(text: &str) -> Cow<'_, str> {
    if !text.contains("${") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c != '$' {
            continue;
        }
        match chars.peek() {
            Some('$') => {
                out.push('$');
                chars.next();
            }
            Some('{') => {
                let rest: String = chars.clone().take_while(|c| *c != '\n').collect();
                if let Some(end) = rest.find('}') {
                    out.push(OPEN);
                    out.push_str(&rest[1..end]);
                    out.push(CLOSE);
                    for _ in 0..rest[..=end].chars().count() {
                        chars.next();
                    }
                }
            }
            _ => {}
        }
    }
    Cow::Owned(out)
}

/// Undoes [`protect`] in a value left unexpanded, for messages.
fn unprotect(s: &str) -> String {
    s.replace(OPEN, "{").replace(CLOSE, "}")
}

use super::locate::Locator;

/// A problem found while expanding: the path of the value and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvError {
    pub path: String,
    pub message: String,
}

/// Values substituted from the environment (defaults excluded): secrets to redact from
/// error messages.
pub type Substituted = Vec<String>;

/// Expands every string value under `value` in place. `path` is the value's configuration
/// path (`pipelines[0].sink`), as [`Locator`] names paths.
pub fn expand_tree(
    value: &mut Value,
    path: &str,
    locator: &Locator,
    lookup: &dyn Fn(&str) -> Option<String>,
    substituted: &mut Substituted,
    errors: &mut Vec<EnvError>,
) {
    match value {
        Value::String(s) => {
            if !s.contains('$') {
                return;
            }
            match expand_str(s, lookup, substituted) {
                Ok(Some(text)) => {
                    *value = if locator.is_plain(path) {
                        typed(text)
                    } else {
                        Value::String(text)
                    };
                }
                Ok(None) => {}
                Err(mut errs) => {
                    *s = unprotect(s);
                    errors.extend(errs.drain(..).map(|message| EnvError {
                        path: path.to_string(),
                        message,
                    }))
                }
            }
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let p = format!("{path}[{i}]");
                expand_tree(item, &p, locator, lookup, substituted, errors);
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                let key = match k {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => "?".to_string(),
                };
                let p = if path.is_empty() {
                    key
                } else {
                    format!("{path}.{key}")
                };
                expand_tree(v, &p, locator, lookup, substituted, errors);
            }
        }
        Value::Tagged(t) => expand_tree(&mut t.value, path, locator, lookup, substituted, errors),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// The YAML type of an expanded plain scalar: a number, boolean or null when the whole text
/// is one, else the text as a string. Nothing in the text can make a structure.
fn typed(text: String) -> Value {
    let simple = !text.is_empty()
        && !text
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '#' | ':' | ',' | '[' | ']' | '{' | '}'));
    if text.is_empty() {
        return Value::Null;
    }
    if simple {
        if let Ok(v @ (Value::Number(_) | Value::Bool(_) | Value::Null)) =
            serde_yaml::from_str::<Value>(&text)
        {
            return v;
        }
    }
    Value::String(text)
}

/// Expands the references in one string. `Ok(None)`: nothing to change.
fn expand_str(
    s: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    substituted: &mut Substituted,
) -> Result<Option<String>, Vec<String>> {
    let mut out = String::with_capacity(s.len());
    let mut errors = Vec::new();
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
            continue;
        }
        let (body, close) = if let Some(b) = after.strip_prefix(OPEN) {
            (b, CLOSE)
        } else if let Some(b) = after.strip_prefix('{') {
            (b, '}')
        } else {
            out.push('$');
            rest = after;
            continue;
        };
        let Some(end) = body.find(close) else {
            errors.push("unclosed `${` in environment variable reference".to_string());
            break;
        };
        let inner = &body[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        let valid = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            errors.push(format!(
                "invalid environment variable reference `${{{inner}}}`"
            ));
        } else {
            match lookup(name) {
                Some(v) => {
                    if !v.is_empty() {
                        substituted.push(v.clone());
                    }
                    out.push_str(&v);
                }
                None => match default {
                    Some(d) => out.push_str(d),
                    None => errors.push(format!(
                        "environment variable `{name}` is not set (write `${{{name}:-default}}` for a default)"
                    )),
                },
            }
        }
        rest = &body[end + close.len_utf8()..];
    }
    out.push_str(rest);
    if !errors.is_empty() {
        Err(errors)
    } else if out == s && !s.contains(OPEN) {
        Ok(None)
    } else {
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("s3cr3t-token".into()),
            "PORT" => Some("5432".into()),
            "NASTY" => Some("a\" # b\\c\nextra_key: 1".into()),
            _ => None,
        }
    }

    fn expand(text: &str) -> (Result<Value, Vec<EnvError>>, Substituted) {
        let text = &protect(text);
        let mut v: Value = serde_yaml::from_str(text).unwrap();
        let loc = Locator::new(text);
        let mut subst = Vec::new();
        let mut errors = Vec::new();
        expand_tree(&mut v, "", &loc, &env, &mut subst, &mut errors);
        (
            if errors.is_empty() {
                Ok(v)
            } else {
                Err(errors)
            },
            subst,
        )
    }

    #[test]
    fn expands_defaults_escapes_and_types() {
        let (v, subst) = expand(
            "a: ${TOKEN}\nb: ${NOPE:-x:1}\nc: $$HOME\n# ${IGNORED}\nd: ${PORT}\ne: \"${PORT}\"\nf: [x-${PORT}]\n",
        );
        let v = v.unwrap();
        assert_eq!(v["a"], Value::from("s3cr3t-token"));
        assert_eq!(v["b"], Value::from("x:1"));
        assert_eq!(v["c"], Value::from("$HOME"));
        assert_eq!(v["d"], Value::from(5432), "a plain scalar is typed");
        assert_eq!(v["e"], Value::from("5432"), "a quoted one stays a string");
        assert_eq!(
            v["f"][0],
            Value::from("x-5432"),
            "unquoted in a flow sequence"
        );
        assert_eq!(subst, vec!["s3cr3t-token", "5432", "5432", "5432"]);
    }

    #[test]
    fn values_are_taken_literally() {
        for text in ["p: ${NASTY}\n", "p: \"${NASTY}\"\n", "p: '${NASTY}'\n"] {
            let v = expand(text).0.unwrap();
            assert_eq!(v["p"], Value::from("a\" # b\\c\nextra_key: 1"), "{text}");
            assert_eq!(v.as_mapping().unwrap().len(), 1, "no key added: {text}");
        }
    }

    #[test]
    fn missing_variable_names_its_path() {
        let errs = expand("x: 1\ny: \"${MISSING}\"\nz: { a: ${B/AD} }\n")
            .0
            .unwrap_err();
        assert_eq!(errs[0].path, "y");
        assert_eq!(errs[1].path, "z.a");
        assert!(errs[1].message.contains("`${B/AD}`"), "{}", errs[1].message);
        assert!(errs[0].message.contains("`MISSING` is not set"));
    }
}
