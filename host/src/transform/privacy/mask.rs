//! `mask`: hides a string field's characters but the first and last few (`****1234`).

use serde::Deserialize;
use serde_json::Value;
use sluice_sdk::transform::{Event, Transform, TransformError, Verdict};
use sluice_sdk::{BuildContext, ConfigError};

use super::super::condition::{Condition, ConditionConfig};
use super::{applies, compile_when, edit_field};

/// The dead-letter kind of a field `mask` cannot work on (not a string).
pub const MASK_ERROR: &str = "mask_error";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskConfig {
    /// Dotted paths of string fields.
    pub fields: Vec<String>,
    #[serde(default)]
    pub keep_first: usize,
    #[serde(default = "default_keep_last")]
    pub keep_last: usize,
    /// The masking character.
    #[serde(default = "default_char")]
    pub char: char,
    #[serde(default)]
    pub when: Option<ConditionConfig>,
}

fn default_keep_last() -> usize {
    4
}

fn default_char() -> char {
    '*'
}

/// A compiled `mask`.
pub struct Mask {
    cfg: MaskConfig,
    when: Option<Condition>,
}

pub fn build(mut cfg: MaskConfig, _: &BuildContext) -> Result<Box<dyn Transform>, ConfigError> {
    if cfg.fields.is_empty() {
        return Err(ConfigError::at("fields", "name at least one field"));
    }
    let when = compile_when(cfg.when.take())?;
    Ok(Box::new(Mask { cfg, when }))
}

/// Masks `text` (Unicode characters, not bytes). A text no longer than what is kept is
/// masked whole, so a short value is never shown in full.
pub fn mask(text: &str, keep_first: usize, keep_last: usize, with: char) -> String {
    let n = text.chars().count();
    if n <= keep_first + keep_last {
        return std::iter::repeat_n(with, n).collect();
    }
    text.chars()
        .enumerate()
        .map(|(i, c)| {
            if i < keep_first || i >= n - keep_last {
                c
            } else {
                with
            }
        })
        .collect()
}

impl Transform for Mask {
    fn apply(&self, event: &mut Event<'_>) -> Result<Verdict, TransformError> {
        let fields = event.fields()?;
        if !applies(&self.when, fields) {
            return Ok(Verdict::Keep);
        }
        let c = &self.cfg;
        for path in &c.fields {
            edit_field(fields, path, "mask", |v| match v {
                Value::String(s) => {
                    let masked = mask(s, c.keep_first, c.keep_last, c.char);
                    let changed = masked != *s;
                    *s = masked;
                    Ok(changed)
                }
                Value::Null => Ok(false),
                _ => Err(TransformError::other(
                    MASK_ERROR,
                    format!("cannot mask `{path}`: not a string"),
                )),
            })?;
        }
        Ok(Verdict::Keep)
    }
}

#[cfg(test)]
mod tests {
    use super::mask;

    #[test]
    fn keeps_the_ends_and_counts_characters() {
        assert_eq!(mask("4111111111111234", 0, 4, '*'), "************1234");
        assert_eq!(mask("jane@example.com", 2, 4, '#'), "ja##########.com");
        assert_eq!(mask("ñandú-çé", 1, 2, '*'), "ñ*****çé");
        assert_eq!(mask("1234", 0, 4, '*'), "****", "too short: masked whole");
        assert_eq!(mask("", 0, 4, '*'), "");
    }
}
