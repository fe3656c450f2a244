//! `filter`: keeps the records whose field matches a condition (`negate: true` keeps the
//! others).

use sluice_sdk::transform::{Event, Transform, TransformError, Verdict};
use sluice_sdk::{BuildContext, ConfigError};

use super::condition::{Condition, ConditionConfig};

/// Keeps the records its condition holds for.
pub struct Filter(Condition);

pub fn build(cfg: ConditionConfig, _: &BuildContext) -> Result<Box<dyn Transform>, ConfigError> {
    Ok(Box::new(Filter(Condition::compile(cfg, "filter")?)))
}

impl Transform for Filter {
    fn apply(&self, event: &mut Event<'_>) -> Result<Verdict, TransformError> {
        Ok(if self.0.holds(Some(event.fields()?)) {
            Verdict::Keep
        } else {
            Verdict::Skip
        })
    }
}
