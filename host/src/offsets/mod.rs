//! The embedded offset store: one JSON file per pipeline under `<data_dir>/offsets/`.
//!
//! `positions` maps each partition (an `i32`, written as a JSON object key in decimal: `"0"`)
//! to the position the source returned for it. A key that is not an `i32` makes the file
//! corrupt.
//!
//! Writes go to a temporary file that is fsynced and renamed over the old one, then the
//! directory is fsynced: after `kill -9` or a power cut the file holds either the previous or
//! the new positions, never a torn mix. Positions reveal what was read, so directories Sluice
//! creates are 0700 and the files 0600 from the moment they exist.

pub mod reset;

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sluice_sdk::Checkpoint;

#[derive(Debug, thiserror::Error)]
pub enum OffsetError {
    #[error("offset store {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("offset store {path} is corrupt ({message}); refusing to guess a position")]
    Corrupt { path: PathBuf, message: String },
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Stored {
    pipeline: String,
    updated_at: String,
    positions: BTreeMap<i32, String>,
    /// The integrity chains' state as of these positions (`integrity::chain::SavedChain`s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    integrity: Option<serde_json::Value>,
}

/// Saved positions of one pipeline.
pub struct OffsetStore {
    path: PathBuf,
    pipeline: String,
    positions: BTreeMap<i32, String>,
    integrity: Option<serde_json::Value>,
    dirty: bool,
}

/// File name for a pipeline: keep names to a safe alphabet.
pub fn file_name(pipeline: &str) -> String {
    let safe: String = pipeline
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{safe}.json")
}

impl OffsetStore {
    pub fn path_for(data_dir: &Path, pipeline: &str) -> PathBuf {
        data_dir.join("offsets").join(file_name(pipeline))
    }

    /// Opens the store of a pipeline, loading saved positions if any.
    pub fn open(data_dir: &Path, pipeline: &str) -> Result<Self, OffsetError> {
        Self::open_at(Self::path_for(data_dir, pipeline), pipeline)
    }

    /// Opens a store kept at `path` (a replay's cursor rather than the pipeline's position).
    pub fn open_at(path: PathBuf, pipeline: &str) -> Result<Self, OffsetError> {
        let stored = Self::read_stored(&path)?.unwrap_or_default();
        Ok(OffsetStore {
            path,
            pipeline: pipeline.to_string(),
            positions: stored.positions,
            integrity: stored.integrity,
            dirty: false,
        })
    }

    /// Positions saved at `path`, or `None` if nothing was saved yet.
    pub fn read(path: &Path) -> Result<Option<BTreeMap<i32, String>>, OffsetError> {
        Ok(Self::read_stored(path)?.map(|s| s.positions))
    }

    fn read_stored(path: &Path) -> Result<Option<Stored>, OffsetError> {
        match fs::read(path) {
            Ok(bytes) => serde_json::from_slice::<Stored>(&bytes)
                .map(Some)
                .map_err(|e| OffsetError::Corrupt {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(OffsetError::Io {
                path: path.to_path_buf(),
                source: e,
            }),
        }
    }

    pub fn positions(&self) -> &BTreeMap<i32, String> {
        &self.positions
    }

    pub fn update(&mut self, checkpoints: Vec<Checkpoint>) {
        for c in checkpoints {
            self.positions.insert(c.partition, c.position);
            self.dirty = true;
        }
    }

    /// Sets (or, with `None`, forgets) the position of one partition (`sluice offsets reset`).
    pub fn set(&mut self, partition: i32, position: Option<String>) {
        let changed = match position {
            Some(p) => self.positions.insert(partition, p.clone()) != Some(p),
            None => self.positions.remove(&partition).is_some(),
        };
        self.dirty |= changed;
    }

    /// The integrity chains' state saved with the positions.
    pub fn integrity(&self) -> Option<&serde_json::Value> {
        self.integrity.as_ref()
    }

    /// Sets the integrity chains' state to save with the next positions.
    pub fn set_integrity(&mut self, state: serde_json::Value) {
        self.integrity = Some(state);
        self.dirty = true;
    }

    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Writes the positions atomically if they changed.
    pub fn flush(&mut self) -> Result<(), OffsetError> {
        if !self.dirty {
            return Ok(());
        }
        let io = |source| OffsetError::Io {
            path: self.path.clone(),
            source,
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        sluice_sdk::fs::create_private_dir(dir).map_err(io)?;
        let stored = Stored {
            pipeline: self.pipeline.clone(),
            updated_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            positions: self.positions.clone(),
            integrity: self.integrity.clone(),
        };
        let body = serde_json::to_vec_pretty(&stored).map_err(|e| io(std::io::Error::other(e)))?;
        let tmp = self.path.with_extension("json.tmp");
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        // A temporary file left by a crash keeps its old mode through `open`.
        f.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(io)?;
        f.write_all(&body).map_err(io)?;
        f.sync_all().map_err(io)?;
        drop(f);
        fs::rename(&tmp, &self.path).map_err(io)?;
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        self.dirty = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = OffsetStore::open(dir.path(), "a/b").unwrap();
        assert!(s.positions().is_empty());
        s.update(vec![Checkpoint {
            partition: 0,
            position: "42".into(),
        }]);
        s.flush().unwrap();
        let again = OffsetStore::open(dir.path(), "a/b").unwrap();
        assert_eq!(again.positions().get(&0).map(String::as_str), Some("42"));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let path = OffsetStore::path_for(dir.path(), "a/b");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        std::fs::write(OffsetStore::path_for(dir.path(), "a/b"), "{").unwrap();
        assert!(matches!(
            OffsetStore::open(dir.path(), "a/b"),
            Err(OffsetError::Corrupt { .. })
        ));
    }

    /// A file as the store writes it: partitions are object keys in decimal text.
    const ON_DISK: &str = r#"{
  "pipeline": "grc",
  "updated_at": "2026-01-05T10:00:00.000Z",
  "positions": {
    "0": "1024",
    "10": "\"etag-10\"",
    "2": "\"etag-2\"",
    "-1": "7"
  }
}"#;

    #[test]
    fn reads_a_file_in_the_on_disk_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = OffsetStore::path_for(dir.path(), "grc");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, ON_DISK).unwrap();
        let s = OffsetStore::open(dir.path(), "grc").unwrap();
        let want = BTreeMap::from([
            (-1, "7".to_string()),
            (0, "1024".to_string()),
            (2, "\"etag-2\"".to_string()),
            (10, "\"etag-10\"".to_string()),
        ]);
        assert_eq!(s.positions(), &want);
        assert_eq!(OffsetStore::read(&path).unwrap(), Some(want));
    }

    #[test]
    fn round_trips_through_the_on_disk_format() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = OffsetStore::open(dir.path(), "grc").unwrap();
        s.update(vec![
            Checkpoint {
                partition: 10,
                position: "\"etag-10\"".into(),
            },
            Checkpoint {
                partition: i32::MIN,
                position: "x".into(),
            },
            Checkpoint {
                partition: 2,
                position: "\"etag-2\"".into(),
            },
        ]);
        s.flush().unwrap();
        let path = OffsetStore::path_for(dir.path(), "grc");
        let raw: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(
            raw["positions"],
            serde_json::json!({"-2147483648": "x", "2": "\"etag-2\"", "10": "\"etag-10\""})
        );
        assert_eq!(raw["pipeline"], "grc");
        let again = OffsetStore::open(dir.path(), "grc").unwrap();
        assert_eq!(again.positions(), s.positions());
        assert_eq!(again.positions().len(), 3);
        assert_eq!(
            again.positions().get(&2).map(String::as_str),
            Some("\"etag-2\"")
        );
    }

    #[test]
    fn integrity_state_is_saved_with_the_positions() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = OffsetStore::open(dir.path(), "p").unwrap();
        assert!(s.integrity().is_none());
        s.update(vec![Checkpoint {
            partition: 0,
            position: "7".into(),
        }]);
        let state = serde_json::json!([{"sink": "default", "stream": "s", "partition": 0, "seq": 3, "hash": "ab"}]);
        s.set_integrity(state.clone());
        s.flush().unwrap();
        let again = OffsetStore::open(dir.path(), "p").unwrap();
        assert_eq!(again.integrity(), Some(&state));
        let path = OffsetStore::path_for(dir.path(), "p");
        assert_eq!(OffsetStore::read(&path).unwrap().unwrap().len(), 1);
        // A file written before integrity existed reads with no state.
        std::fs::write(&path, ON_DISK).unwrap();
        assert!(OffsetStore::open(dir.path(), "p")
            .unwrap()
            .integrity()
            .is_none());
    }

    #[test]
    fn a_key_that_is_not_a_partition_makes_the_file_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = OffsetStore::path_for(dir.path(), "p");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        for key in ["file:/var/log/a.jsonl", "", "x1", "1.5", "2147483648"] {
            let text = format!(
                r#"{{"pipeline":"p","updated_at":"2026-01-05T10:00:00.000Z","positions":{{"0":"1","{key}":"2"}}}}"#
            );
            std::fs::write(&path, text).unwrap();
            match OffsetStore::open(dir.path(), "p") {
                Err(OffsetError::Corrupt { path: at, .. }) => assert_eq!(at, path, "{key:?}"),
                Err(e) => panic!("{key:?}: {e}"),
                Ok(s) => panic!("{key:?} read as {:?}", s.positions()),
            }
        }
    }
}
