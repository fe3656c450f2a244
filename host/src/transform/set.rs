//! `set`: sets one field (a dotted path) to a value, creating objects on the way.

use serde::Deserialize;
use serde_json::Value;
use sluice_sdk::transform::{Event, Transform, TransformError, Verdict};
use sluice_sdk::{BuildContext, ConfigError};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetConfig {
    pub field: String,
    pub value: Value,
}

pub struct Set(SetConfig);

pub fn build(cfg: SetConfig, _: &BuildContext) -> Result<Box<dyn Transform>, ConfigError> {
    Ok(Box::new(Set(cfg)))
}

impl Transform for Set {
    fn apply(&self, event: &mut Event<'_>) -> Result<Verdict, TransformError> {
        let SetConfig { field, value } = &self.0;
        if !event.fields()?.set(field, value.clone()) {
            return Err(TransformError::blocked("set", field));
        }
        Ok(Verdict::Keep)
    }
}
