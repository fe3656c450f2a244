//! `filter`: keeps the records whose field matches a condition (`negate: true` keeps the
//! others). The condition is reusable by any transform that applies only to some records.

use regex::Regex;
use serde::Deserialize;
use serde_json::Value;
use sluice_sdk::transform::{Event, Fields, Transform, TransformError, Verdict};
use sluice_sdk::{json, BuildContext, ConfigError};

/// A condition on one field: exactly one of `equals`, `one_of`, `exists`, `matches`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionConfig {
    /// Dotted path of the field tested.
    pub field: String,
    #[serde(default)]
    pub equals: Option<Value>,
    #[serde(default)]
    pub one_of: Option<Vec<Value>>,
    /// `true`: the field is present and not null; `false`: it is absent or null.
    #[serde(default)]
    pub exists: Option<bool>,
    /// A regular expression searched in the field's text (strings, numbers, booleans).
    #[serde(default)]
    pub matches: Option<String>,
    /// Invert the outcome.
    #[serde(default)]
    pub negate: bool,
}

enum Test {
    Equals(Value),
    OneOf(Vec<Value>),
    Exists(bool),
    Matches(Regex),
}

/// A compiled [`ConditionConfig`].
pub struct Condition {
    field: String,
    test: Test,
    negate: bool,
}

impl Condition {
    pub fn compile(cfg: ConditionConfig) -> Result<Self, ConfigError> {
        let test = match (cfg.equals, cfg.one_of, cfg.exists, cfg.matches) {
            (Some(v), None, None, None) => Test::Equals(v),
            (None, Some(vs), None, None) => Test::OneOf(vs),
            (None, None, Some(b), None) => Test::Exists(b),
            (None, None, None, Some(re)) => Test::Matches(
                Regex::new(&re)
                    .map_err(|e| ConfigError::at("matches", format!("invalid regex: {e}")))?,
            ),
            _ => {
                return Err(ConfigError::new(
                    "filter needs exactly one of `equals`, `one_of`, `exists`, `matches`",
                ))
            }
        };
        Ok(Condition {
            field: cfg.field,
            test,
            negate: cfg.negate,
        })
    }

    /// Whether the record's fields satisfy the condition.
    pub fn holds(&self, fields: &Fields<'_>) -> bool {
        let found = fields.get(&self.field);
        let found = found.as_deref();
        let hit = match &self.test {
            Test::Equals(v) => found == Some(v),
            Test::OneOf(vs) => found.is_some_and(|f| vs.contains(f)),
            Test::Exists(want) => found.is_some_and(|f| !f.is_null()) == *want,
            Test::Matches(re) => found
                .and_then(json::as_text)
                .is_some_and(|t| re.is_match(&t)),
        };
        hit != self.negate
    }
}

/// Keeps the records its condition holds for.
pub struct Filter(Condition);

pub fn build(cfg: ConditionConfig, _: &BuildContext) -> Result<Box<dyn Transform>, ConfigError> {
    Ok(Box::new(Filter(Condition::compile(cfg)?)))
}

impl Transform for Filter {
    fn apply(&self, event: &mut Event<'_>) -> Result<Verdict, TransformError> {
        Ok(if self.0.holds(event.fields()?) {
            Verdict::Keep
        } else {
            Verdict::Skip
        })
    }
}
