//! `add_fields`: adds static fields; existing values are overwritten unless
//! `overwrite: false`.

use serde::Deserialize;
use serde_json::{Map, Value};
use sluice_sdk::transform::{Event, Transform, TransformError, Verdict};
use sluice_sdk::{BuildContext, ConfigError};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddFieldsConfig {
    /// Dotted paths and their values.
    pub fields: Map<String, Value>,
    #[serde(default = "yes")]
    pub overwrite: bool,
}

fn yes() -> bool {
    true
}

pub struct AddFields {
    fields: Vec<(String, Value)>,
    overwrite: bool,
}

pub fn build(cfg: AddFieldsConfig, _: &BuildContext) -> Result<Box<dyn Transform>, ConfigError> {
    Ok(Box::new(AddFields {
        fields: cfg.fields.into_iter().collect(),
        overwrite: cfg.overwrite,
    }))
}

impl Transform for AddFields {
    fn apply(&self, event: &mut Event<'_>) -> Result<Verdict, TransformError> {
        let fields = event.fields()?;
        for (k, v) in &self.fields {
            if !self.overwrite && fields.contains(k) {
                continue;
            }
            if !fields.set(k, v.clone()) {
                return Err(TransformError::blocked("add field", k));
            }
        }
        Ok(Verdict::Keep)
    }
}
