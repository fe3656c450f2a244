//! The optional JSON Schema (draft 2020-12) every event must satisfy.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("schema {path}: {message}")]
    Load { path: PathBuf, message: String },
}

/// Why an event does not satisfy the schema: where (a JSON pointer into the event) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub pointer: String,
    pub reason: String,
}

pub struct Schema {
    validator: jsonschema::Validator,
}

impl Schema {
    pub fn load(path: &Path) -> Result<Self, SchemaError> {
        let err = |message: String| SchemaError::Load {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let value: serde_json::Value =
            serde_json::from_slice(&text).map_err(|e| err(format!("not JSON: {e}")))?;
        let validator = jsonschema::draft202012::new(&value).map_err(|e| err(e.to_string()))?;
        Ok(Schema { validator })
    }

    /// The first violation of the event (JSON bytes), if any.
    pub fn check(&self, event: &[u8]) -> Result<(), Violation> {
        let value: serde_json::Value = serde_json::from_slice(event).map_err(|e| Violation {
            pointer: String::new(),
            reason: format!("not JSON: {e}"),
        })?;
        self.validator.validate(&value).map_err(|e| Violation {
            pointer: e.instance_path.to_string(),
            reason: e.to_string(),
        })
    }
}
