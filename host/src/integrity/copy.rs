//! The second copy of a pipeline's digest log (`integrity.digests_to`): every line appended
//! to the local log is written to the destination, durably, before the position commits.
//!
//! The local log is the reference. `<pipeline>.digests.copied` beside it holds how many of
//! its bytes the destination has confirmed; lines past that mark are (re)sent first, so a
//! crash between the two writes leaves nothing out. A crash after the destination took a
//! line but before the mark moved sends that line again: `sluice verify` skips an entry
//! identical to one already read.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::DigestsTo;

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Kafka(String),
}

enum Destination {
    /// Opened on first use, so that an unreachable volume is retried, not fatal.
    File(Option<File>, PathBuf),
    #[cfg(feature = "kafka")]
    Kafka {
        producer: sluice_kafka::rdkafka::producer::FutureProducer,
        topic: String,
    },
}

pub struct DigestCopy {
    to: DigestsTo,
    dest: Destination,
    pipeline: String,
    /// Local log lines not yet confirmed, each with its newline.
    pending: Vec<Vec<u8>>,
    /// The mark file and the local log's bytes confirmed at the destination.
    mark: PathBuf,
    copied: u64,
}

impl DigestCopy {
    /// Prepares the copy of the local log at `local`; lines past the saved mark are pending.
    pub fn open(to: &DigestsTo, pipeline: &str, local: &Path) -> Result<Self, CopyError> {
        let mark = PathBuf::from(format!("{}.copied", local.display()));
        let copied = match std::fs::read_to_string(&mark) {
            Ok(t) => t.trim().parse::<u64>().unwrap_or(0),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e.into()),
        };
        let text = std::fs::read(local)?;
        let copied = copied.min(text.len() as u64);
        let pending = text[copied as usize..]
            .split_inclusive(|b| *b == b'\n')
            .filter(|l| l.ends_with(b"\n"))
            .map(<[u8]>::to_vec)
            .collect();
        let dest = match to {
            DigestsTo::File { path } => Destination::File(None, path.clone()),
            #[cfg(feature = "kafka")]
            DigestsTo::Kafka {
                brokers,
                topic,
                options,
            } => {
                let cfg = sluice_kafka::producer_config(
                    brokers,
                    options,
                    &format!("sluice-{pipeline}-digests"),
                )
                .map_err(|e| CopyError::Kafka(e.to_string()))?;
                Destination::Kafka {
                    producer: cfg.create().map_err(|e| CopyError::Kafka(e.to_string()))?,
                    topic: topic.clone(),
                }
            }
            #[cfg(not(feature = "kafka"))]
            DigestsTo::Kafka { .. } => {
                return Err(CopyError::Kafka("this build has no Kafka support".into()))
            }
        };
        Ok(DigestCopy {
            to: to.clone(),
            dest,
            pipeline: pipeline.to_string(),
            pending,
            mark,
            copied,
        })
    }

    pub fn describe(&self) -> String {
        self.to.describe()
    }

    /// Lines just appended to the local log.
    pub fn push(&mut self, lines: Vec<Vec<u8>>) {
        self.pending.extend(lines);
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Writes the pending lines and waits until the destination has them durably; then
    /// moves the mark.
    pub async fn send(&mut self) -> Result<(), CopyError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        match &mut self.dest {
            Destination::File(file, path) => {
                if file.is_none() {
                    let f = sluice_sdk::fs::open_private_append(path)?;
                    sluice_sdk::fs::cut_torn_tail(&f, "integrity digest copy")?;
                    *file = Some(f);
                }
                if let Some(f) = file {
                    let buf = self.pending.concat();
                    let written = f.write_all(&buf).and_then(|()| f.sync_all());
                    if let Err(e) = written {
                        // Reopen next time: the cut of a torn tail runs again.
                        *file = None;
                        return Err(e.into());
                    }
                }
            }
            #[cfg(feature = "kafka")]
            Destination::Kafka { producer, topic } => {
                use sluice_kafka::rdkafka::producer::FutureRecord;
                let mut waiting = Vec::with_capacity(self.pending.len());
                for line in &self.pending {
                    let payload = line.strip_suffix(b"\n").unwrap_or(line);
                    let record = FutureRecord::to(topic)
                        .key(self.pipeline.as_bytes())
                        .payload(payload);
                    waiting.push(producer.send(record, Duration::from_secs(30)));
                }
                for w in futures::future::join_all(waiting).await {
                    w.map_err(|(e, _)| CopyError::Kafka(e.to_string()))?;
                }
            }
        }
        self.copied += self.pending.iter().map(|l| l.len() as u64).sum::<u64>();
        self.pending.clear();
        self.save_mark()?;
        Ok(())
    }

    fn save_mark(&self) -> std::io::Result<()> {
        let tmp = PathBuf::from(format!("{}.tmp", self.mark.display()));
        let mut f = File::create(&tmp)?;
        f.write_all(self.copied.to_string().as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.mark)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_past_the_mark_are_sent_and_the_mark_moves() {
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().join("p.digests");
        std::fs::write(&local, "a\nb\n").unwrap();
        std::fs::write(dir.path().join("p.digests.copied"), "2").unwrap();
        let blocker = dir.path().join("blocker");
        std::fs::write(&blocker, "").unwrap();
        let copy_path = blocker.join("copy.digests");
        let to = DigestsTo::File {
            path: copy_path.clone(),
        };
        let mut c = DigestCopy::open(&to, "p", &local).unwrap();
        assert_eq!(c.pending, [b"b\n".to_vec()]);
        std::fs::write(&local, "a\nb\nc\n").unwrap();
        c.push(vec![b"c\n".to_vec()]);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        // The destination's directory cannot be made: nothing moves.
        assert!(rt.block_on(c.send()).is_err());
        assert!(c.has_pending());
        std::fs::remove_file(&blocker).unwrap();
        rt.block_on(c.send()).unwrap();
        assert!(!c.has_pending());
        assert_eq!(std::fs::read_to_string(&copy_path).unwrap(), "b\nc\n");
        let again = DigestCopy::open(&to, "p", &local).unwrap();
        assert_eq!(again.copied, 6);
        assert!(!again.has_pending());
    }
}
