//! One process at a time per pipeline: `sluice run` holds `data_dir/locks/<pipeline>.lock`
//! while the pipeline runs, and the commands that must not run beside it (`dlq replay`,
//! `offsets reset`) take the same lock, so they refuse instead of racing the pipeline for its
//! DLQ or its position.
//!
//! The lock is an advisory `flock` on the file: the kernel releases it when the process ends,
//! however it ends (`kill -9` included), so a stale file never blocks the next start.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the pipeline.
    #[error("pipeline `{pipeline}` is in use by another sluice process (lock {path} held); stop it first")]
    Busy { pipeline: String, path: PathBuf },
    #[error("cannot lock {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The held lock of one pipeline; released on drop.
#[derive(Debug)]
pub struct PipelineLock {
    _file: File,
}

/// Where the lock of `pipeline` lives.
pub fn path_for(data_dir: &Path, pipeline: &str) -> PathBuf {
    data_dir
        .join("locks")
        .join(crate::offsets::file_name(pipeline).replace(".json", ".lock"))
}

/// Takes the lock of `pipeline` without waiting: [`LockError::Busy`] when another process
/// holds it.
pub fn acquire(data_dir: &Path, pipeline: &str) -> Result<PipelineLock, LockError> {
    let path = path_for(data_dir, pipeline);
    let io = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    if let Some(dir) = path.parent() {
        sluice_sdk::fs::create_private_dir(dir).map_err(io)?;
    }
    let file = sluice_sdk::fs::open_private_append(&path).map_err(io)?;
    match file.try_lock() {
        Ok(()) => Ok(PipelineLock { _file: file }),
        Err(TryLockError::WouldBlock) => Err(LockError::Busy {
            pipeline: pipeline.to_string(),
            path,
        }),
        Err(TryLockError::Error(e)) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let held = acquire(dir.path(), "audit/events").unwrap();
        match acquire(dir.path(), "audit/events") {
            Err(LockError::Busy { pipeline, path }) => {
                assert_eq!(pipeline, "audit/events");
                assert!(path.ends_with("locks/audit_events.lock"), "{path:?}");
            }
            other => panic!("expected Busy, got {other:?}"),
        }
        // Another pipeline is independent.
        acquire(dir.path(), "other").unwrap();
        drop(held);
        acquire(dir.path(), "audit/events").unwrap();
    }
}
