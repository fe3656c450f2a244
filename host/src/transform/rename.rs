//! `rename`: moves a field to another name (dotted paths both); a record without it is
//! left as it is.

use serde::Deserialize;
use sluice_sdk::transform::{Event, Transform, TransformError, Verdict};
use sluice_sdk::{BuildContext, ConfigError};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameConfig {
    pub from: String,
    pub to: String,
}

pub struct Rename(RenameConfig);

pub fn build(cfg: RenameConfig, _: &BuildContext) -> Result<Box<dyn Transform>, ConfigError> {
    Ok(Box::new(Rename(cfg)))
}

impl Transform for Rename {
    fn apply(&self, event: &mut Event<'_>) -> Result<Verdict, TransformError> {
        let RenameConfig { from, to } = &self.0;
        let fields = event.fields()?;
        if let Some(v) = fields.remove(from) {
            if !fields.set(to, v) {
                return Err(TransformError::blocked("rename to", to));
            }
        }
        Ok(Verdict::Keep)
    }
}
