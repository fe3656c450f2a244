//! `${VAR}` / `${VAR:-default}` expansion on the configuration text, before YAML parsing.

use std::fmt;

/// A `${VAR}` that names an unset variable, or a malformed reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for EnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.col, self.message)
    }
}

/// The expanded text, and the values substituted (so errors can redact secrets).
pub struct Expanded {
    pub text: String,
    pub substituted: Vec<String>,
}

/// Expands variables using `lookup`. `$$` is a literal `$`. Full-line comments are left alone
/// so a commented-out `${VAR}` never has to be set.
pub fn expand(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Expanded, Vec<EnvError>> {
    let mut out = String::with_capacity(text.len());
    let mut substituted = Vec::new();
    let mut errors = Vec::new();
    for (lineno, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_start().starts_with('#') {
            out.push_str(line);
            continue;
        }
        let mut rest = line;
        let mut col = 1;
        while let Some(pos) = rest.find('$') {
            out.push_str(&rest[..pos]);
            col += rest[..pos].chars().count();
            let after = &rest[pos + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                out.push('$');
                rest = tail;
                col += 2;
                continue;
            }
            let Some(body) = after.strip_prefix('{') else {
                out.push('$');
                rest = after;
                col += 1;
                continue;
            };
            let Some(end) = body.find('}') else {
                errors.push(EnvError {
                    line: lineno + 1,
                    col,
                    message: "unclosed `${` in environment variable reference".into(),
                });
                out.push_str(&rest[pos..]);
                rest = "";
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
                errors.push(EnvError {
                    line: lineno + 1,
                    col,
                    message: format!("invalid environment variable reference `${{{inner}}}`"),
                });
            } else {
                match lookup(name).or_else(|| default.map(str::to_string)) {
                    Some(v) => {
                        if default.is_none_or(|d| d != v) && v.len() >= 4 {
                            substituted.push(v.clone());
                        }
                        out.push_str(&v);
                    }
                    None => errors.push(EnvError {
                        line: lineno + 1,
                        col,
                        message: format!(
                            "environment variable `{name}` is not set (write `${{{name}:-default}}` for a default)"
                        ),
                    }),
                }
            }
            let consumed = 2 + end + 1;
            col += rest[pos..pos + consumed].chars().count();
            rest = &rest[pos + consumed..];
        }
        out.push_str(rest);
    }
    if errors.is_empty() {
        Ok(Expanded {
            text: out,
            substituted,
        })
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("s3cr3t-token".into()),
            _ => None,
        }
    }

    #[test]
    fn expands_defaults_and_escapes() {
        let e = expand(
            "a: ${TOKEN}\nb: ${NOPE:-x:1}\nc: $$HOME\n# ${IGNORED}\n",
            env,
        )
        .unwrap();
        assert_eq!(e.text, "a: s3cr3t-token\nb: x:1\nc: $HOME\n# ${IGNORED}\n");
        assert_eq!(e.substituted, vec!["s3cr3t-token".to_string()]);
    }

    #[test]
    fn missing_variable_has_position() {
        let errs = expand("x: 1\n  y: \"${MISSING}\"\n", env).err().unwrap();
        assert_eq!(errs[0].line, 2);
        assert_eq!(errs[0].col, 7);
        assert!(errs[0].message.contains("`MISSING` is not set"));
    }
}
