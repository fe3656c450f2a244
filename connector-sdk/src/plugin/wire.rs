//! The JSON documents of the plugin control plane: the manifest and the contexts passed to
//! create and open. JSON keeps them readable and lets a later minor version add fields that an
//! older reader ignores; records never travel as JSON (see [`super::codec`]).

use std::collections::HashMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::ConnectorKind;

/// What a plugin library contains, returned by `sluice_plugin_manifest`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The plugin crate's name.
    pub name: String,
    /// The plugin crate's version.
    pub version: String,
    /// Version of `sluice-sdk` the plugin was built with.
    pub sdk_version: String,
    /// ABI the plugin was built for (`major`, `minor`); the same as `sluice_abi_version`.
    pub abi: [u32; 2],
    pub connectors: Vec<ManifestConnector>,
}

/// One connector type of a plugin.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManifestConnector {
    #[serde(rename = "type")]
    pub type_name: String,
    pub kind: ManifestKind,
    /// The connector's own version.
    pub version: String,
    /// JSON Schema of the connector's configuration, or `null` when the plugin gave none.
    #[serde(default)]
    pub config_schema: serde_json::Value,
}

/// Kinds of connector a plugin may provide.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ManifestKind {
    Source,
    Sink,
    /// ABI 3.1 and later.
    Transform,
}

impl From<ManifestKind> for ConnectorKind {
    fn from(k: ManifestKind) -> Self {
        match k {
            ManifestKind::Source => ConnectorKind::Source,
            ManifestKind::Sink => ConnectorKind::Sink,
            ManifestKind::Transform => ConnectorKind::Transform,
        }
    }
}

/// Context of `sink_create` / `source_create` / `transform_create` (a
/// [`crate::BuildContext`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BuildContextWire {
    pub pipeline: String,
    pub data_dir: PathBuf,
}

/// Context of `sink_open`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SinkOpenWire {
    pub pipeline: String,
}

/// Context of `source_open`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SourceOpenWire {
    pub pipeline: String,
    /// Saved positions by partition; JSON object keys are the partition's decimal text
    /// (`{"0": "1024"}`).
    #[serde(default)]
    pub checkpoints: HashMap<i32, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_open_checkpoints_are_keyed_by_partition_text() {
        let wire = SourceOpenWire {
            pipeline: "p".into(),
            checkpoints: HashMap::from([(-2, "9".to_string())]),
        };
        let json = serde_json::to_string(&wire).unwrap();
        assert_eq!(json, r#"{"pipeline":"p","checkpoints":{"-2":"9"}}"#);
        let back: SourceOpenWire =
            serde_json::from_str(r#"{"pipeline":"p","checkpoints":{"0":"1024","7":"x"}}"#).unwrap();
        assert_eq!(
            back.checkpoints,
            HashMap::from([(0, "1024".to_string()), (7, "x".to_string())])
        );
        let bad = serde_json::from_str::<SourceOpenWire>(
            r#"{"pipeline":"p","checkpoints":{"file:a":"1"}}"#,
        );
        assert!(bad.is_err());
    }
}
