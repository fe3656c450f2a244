//! `drop`: removes fields (dotted paths); every copy of a name given twice goes.

use serde::Deserialize;
use sluice_sdk::transform::{Event, Transform, TransformError, Verdict};
use sluice_sdk::{BuildContext, ConfigError};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropConfig {
    pub fields: Vec<String>,
}

pub struct DropFields(DropConfig);

pub fn build(cfg: DropConfig, _: &BuildContext) -> Result<Box<dyn Transform>, ConfigError> {
    Ok(Box::new(DropFields(cfg)))
}

impl Transform for DropFields {
    fn apply(&self, event: &mut Event<'_>) -> Result<Verdict, TransformError> {
        let fields = event.fields()?;
        for f in &self.0.fields {
            fields.remove(f);
        }
        Ok(Verdict::Keep)
    }
}
