use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

use parking_lot::Mutex;
use serde::Deserialize;
use sluice_sdk::{async_trait, Outcome, RecordRef, Sink, SinkContext, SinkError};

/// `file` sink: appends each record's value as one line (JSON lines when values are JSON).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// File to append to; created with its parent directories.
    pub path: PathBuf,
    /// fsync after every batch. Off by default: a batch is acknowledged once the OS has it,
    /// which survives a crash of `sluice` but not of the machine.
    #[serde(default)]
    pub fsync: bool,
}

/// Appends records to a file, one line each.
pub struct FileSink {
    cfg: FileSinkConfig,
    state: Mutex<Option<Writer>>,
}

struct Writer {
    file: File,
    buf: Vec<u8>,
}

impl FileSink {
    pub fn new(cfg: FileSinkConfig) -> Self {
        FileSink {
            cfg,
            state: Mutex::new(None),
        }
    }

    fn open_file(&self) -> Result<File, SinkError> {
        if let Some(dir) = self.cfg.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| self.io_error(e))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&self.cfg.path)
            .map_err(|e| self.io_error(e))?;
        sluice_sdk::fs::cut_torn_tail(&file, "file sink").map_err(|e| self.io_error(e))?;
        Ok(file)
    }

    fn io_error(&self, e: std::io::Error) -> SinkError {
        SinkError::unavailable(format!("file {}: {e}", self.cfg.path.display()))
    }
}

#[async_trait]
impl Sink for FileSink {
    async fn open(&mut self, _ctx: SinkContext) -> Result<(), SinkError> {
        let file = self.open_file()?;
        *self.state.get_mut() = Some(Writer {
            file,
            buf: Vec::with_capacity(1 << 20),
        });
        Ok(())
    }

    async fn send(&self, records: &[RecordRef<'_>]) -> Result<Vec<Outcome>, SinkError> {
        let mut guard = self.state.lock();
        if guard.is_none() {
            *guard = Some(Writer {
                file: self.open_file()?,
                buf: Vec::with_capacity(1 << 20),
            });
        }
        let Some(w) = guard.as_mut() else {
            return Err(SinkError::Fatal("file sink not open".into()));
        };
        w.buf.clear();
        for r in records {
            w.buf.extend_from_slice(r.value());
            w.buf.push(b'\n');
        }
        // One write per batch; O_APPEND keeps concurrent writers line-atomic per write.
        let res = w.file.write_all(&w.buf).and_then(|_| {
            if self.cfg.fsync {
                w.file.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(e) = res {
            // Reopen next time: the file may have been rotated or the disk freed.
            *guard = None;
            return Err(self.io_error(e));
        }
        Ok(vec![Outcome::Delivered; records.len()])
    }

    async fn close(&self) -> Result<(), SinkError> {
        if let Some(w) = self.state.lock().as_mut() {
            w.file.sync_data().map_err(|e| self.io_error(e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_last_line_is_cut_back_to_the_last_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        std::fs::write(&path, "{\"a\":1}\n{\"a\":2}\n{\"a\":").unwrap();
        let sink = FileSink::new(FileSinkConfig {
            path: path.clone(),
            fsync: false,
        });
        drop(sink.open_file().unwrap());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"a\":1}\n{\"a\":2}\n"
        );
        std::fs::write(&path, "no newline at all").unwrap();
        drop(sink.open_file().unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
    }
}
