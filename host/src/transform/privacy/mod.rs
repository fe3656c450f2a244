//! Privacy transforms: `redact`, `mask`, `hash`, `encrypt`, `decrypt` (and their shared pieces: the `when:`
//! condition, keys read from the environment, the field edits that leave no duplicate copy).
//! See docs/privacy.md.

pub mod decrypt;
pub mod encrypt;
pub mod hash;
pub mod mask;
pub mod redact;

use std::borrow::Cow;

use serde_json::Value;
use sluice_sdk::transform::{Fields, TransformError};
use sluice_sdk::ConfigError;

use super::condition::{Condition, ConditionConfig};

/// Compiles an optional `when:` condition; a problem is reported below `when`.
pub fn compile_when(cfg: Option<ConditionConfig>) -> Result<Option<Condition>, ConfigError> {
    cfg.map(|c| {
        Condition::compile(c, "when").map_err(|e| match e.path {
            Some(p) => ConfigError::at(format!("when.{p}"), e.message),
            None => ConfigError::at("when", e.message),
        })
    })
    .transpose()
}

/// Whether a transform with this `when:` applies to the record.
pub fn applies(when: &Option<Condition>, fields: &Fields<'_>) -> bool {
    when.as_ref().is_none_or(|c| c.holds(Some(fields)))
}

/// Why a key could not be read from the environment. Never carries the key's text.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("environment variable `{0}` is not set")]
    Missing(String),
    #[error("environment variable `{0}`: {1}")]
    Invalid(String, &'static str),
}

impl From<KeyError> for ConfigError {
    fn from(e: KeyError) -> Self {
        ConfigError::new(e.to_string())
    }
}

/// Reads a key from environment variable `var`: `hex:<hex>` or `base64:<standard base64>`.
pub fn key_from_env(var: &str) -> Result<Vec<u8>, KeyError> {
    let text = std::env::var(var).map_err(|_| KeyError::Missing(var.to_string()))?;
    let text = text.trim();
    let key = if let Some(h) = text.strip_prefix("hex:") {
        decode_hex(h).ok_or(KeyError::Invalid(var.to_string(), "not valid hex"))?
    } else if let Some(b) = text.strip_prefix("base64:") {
        decode_base64(b).ok_or(KeyError::Invalid(var.to_string(), "not valid base64"))?
    } else {
        return Err(KeyError::Invalid(
            var.to_string(),
            "the key must start with `hex:` or `base64:`",
        ));
    };
    if key.is_empty() {
        return Err(KeyError::Invalid(var.to_string(), "the key is empty"));
    }
    Ok(key)
}

/// Standard base64 (padding optional).
pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
        .ok()
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Whether the top-level name of `path` appears more than once in the record.
fn duplicated(fields: &Fields<'_>, path: &str) -> bool {
    let head = path.split('.').next().unwrap_or(path);
    fields.names().filter(|n| *n == head).nth(1).is_some()
}

/// Rewrites the value at `path` with `edit` (which returns whether it changed anything). A
/// missing field is left alone. The field is written back when it changed or when its
/// top-level name is given twice, so the earlier copy is dropped either way.
pub fn edit_field(
    fields: &mut Fields<'_>,
    path: &str,
    action: &'static str,
    edit: impl FnOnce(&mut Value) -> Result<bool, TransformError>,
) -> Result<(), TransformError> {
    let Some(value) = fields.get(path) else {
        return Ok(());
    };
    let mut value = match value {
        Cow::Borrowed(v) => v.clone(),
        Cow::Owned(v) => v,
    };
    let changed = edit(&mut value)?;
    if (changed || duplicated(fields, path)) && !fields.set(path, value) {
        return Err(TransformError::blocked(action, path));
    }
    Ok(())
}

/// The distinct top-level names of a record, in order (for `fields: ["*"]`).
pub fn all_names(fields: &Fields<'_>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in fields.names() {
        if !out.iter().any(|o| o == n) {
            out.push(n.to_string());
        }
    }
    out
}
