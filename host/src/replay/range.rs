//! What a replay reads: the range of the pipeline's source resolved from `--from`/`--to`
//! (times on Kafka, byte positions on a file, log offsets or times on an `http_server`'s
//! write-ahead log), and the source that reads exactly it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;
use sluice_builtin::{FileSource, FileSourceConfig};
use sluice_sdk::Source;

use crate::pipeline::{PipelineError, SourceFactory};

use super::time;

#[derive(Debug, thiserror::Error)]
pub enum RangeError {
    #[error("source `{0}` cannot be replayed by range (kafka, file and http_server sources can)")]
    Unsupported(String),
    #[error("{0}")]
    Time(#[from] time::TimeError),
    #[error("a file source has no timestamps: --from/--to take byte positions as its offset store keeps them (`{0}` is a time)")]
    TimeOnFile(String),
    #[error(
        "`{0}` is not a byte position (a whole number, as the file source's offset store keeps it)"
    )]
    NotAPosition(String),
    #[error(
        "--partition applies to Kafka sources only (a file or a write-ahead log is partition 0)"
    )]
    Partition,
    #[error("`{0}` is neither a log offset (a whole number, as the offset store keeps it) nor a time (RFC 3339 or a duration ago: 2h)")]
    NotAnOffsetOrTime(String),
    #[error(
        "--from {asked} is before the oldest entry the write-ahead log in {} keeps: offset \
         {first} (received {received}); the delivered segments before it were deleted \
         (http_server's retain_delivered sets how long they are kept)",
        dir.display()
    )]
    BeforeRetained {
        asked: String,
        dir: PathBuf,
        first: u64,
        received: String,
    },
    #[error("--from {asked} is past the end of the write-ahead log (offset {end})")]
    PastEnd { asked: String, end: u64 },
    #[cfg(feature = "http-server")]
    #[error("{0}")]
    Wal(#[from] sluice_http_server::wal::WalError),
    #[error("--to ({to}) is before --from ({from})")]
    Backwards { from: String, to: String },
    #[error("source configuration: {0}")]
    Config(String),
    #[cfg(feature = "kafka")]
    #[error("{0}")]
    Kafka(#[from] sluice_kafka::range::RangeError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A resolved range of one pipeline's source.
pub enum Plan {
    #[cfg(feature = "kafka")]
    Kafka {
        config: Value,
        ranges: Vec<sluice_kafka::range::PartitionRange>,
    },
    File {
        config: FileSourceConfig,
        from: u64,
        to: u64,
    },
    #[cfg(feature = "http-server")]
    Wal(super::wal::WalRange),
}

/// What `--from`, `--to` and `--partition` asked for.
pub struct Ask<'a> {
    pub from: &'a str,
    pub to: Option<&'a str>,
    pub partitions: &'a [i32],
}

/// Resolves the range of a source of type `type_name` configured by `config`. Asks the
/// broker for Kafka, reads the write-ahead log's segments for `http_server` (blocking).
pub fn resolve(
    type_name: &str,
    config: &Value,
    pipeline: &str,
    data_dir: &Path,
    ask: &Ask<'_>,
) -> Result<Plan, RangeError> {
    #[cfg(not(feature = "http-server"))]
    let _ = data_dir;
    match type_name {
        #[cfg(feature = "http-server")]
        "http_server" => Ok(Plan::Wal(super::wal::resolve(data_dir, pipeline, ask)?)),
        #[cfg(feature = "kafka")]
        "kafka" => {
            let now = chrono::Utc::now();
            let from = time::parse(ask.from, now)?;
            let to = ask.to.map(|t| time::parse(t, now)).transpose()?;
            if let Some(to) = to.filter(|to| *to < from) {
                return Err(RangeError::Backwards {
                    from: time::show(from),
                    to: time::show(to),
                });
            }
            let cfg: sluice_kafka::SourceConfig = sluice_sdk::config::from_value(config.clone())
                .map_err(|e| RangeError::Config(e.to_string()))?;
            let ranges = sluice_kafka::range::resolve(&cfg, pipeline, from, to, ask.partitions)?;
            Ok(Plan::Kafka {
                config: config.clone(),
                ranges,
            })
        }
        "file" => {
            if !ask.partitions.iter().all(|p| *p == 0) {
                return Err(RangeError::Partition);
            }
            let cfg: FileSourceConfig = sluice_sdk::config::from_value(config.clone())
                .map_err(|e| RangeError::Config(e.to_string()))?;
            let from = position(ask.from)?;
            let to = match ask.to {
                Some(t) => position(t)?,
                None => std::fs::metadata(&cfg.path)
                    .map_err(|source| RangeError::Io {
                        path: cfg.path.clone(),
                        source,
                    })?
                    .len(),
            };
            if to < from {
                return Err(RangeError::Backwards {
                    from: from.to_string(),
                    to: to.to_string(),
                });
            }
            Ok(Plan::File {
                config: cfg,
                from,
                to,
            })
        }
        other => Err(RangeError::Unsupported(other.to_string())),
    }
}

/// A file position: a byte offset, refused with the reason when it is a time.
fn position(text: &str) -> Result<u64, RangeError> {
    text.trim().parse::<u64>().map_err(|_| {
        if time::is_time(text) {
            RangeError::TimeOnFile(text.to_string())
        } else {
            RangeError::NotAPosition(text.to_string())
        }
    })
}

impl Plan {
    /// Records the range holds, when the source can tell (Kafka offsets).
    pub fn total(&self) -> Option<u64> {
        match self {
            #[cfg(feature = "kafka")]
            Plan::Kafka { ranges, .. } => Some(ranges.iter().map(|r| r.count()).sum()),
            Plan::File { .. } => None,
            #[cfg(feature = "http-server")]
            Plan::Wal(_) => None,
        }
    }

    /// The range as a table, for `--dry-run` and the start of a replay.
    pub fn describe(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        match self {
            #[cfg(feature = "kafka")]
            Plan::Kafka { ranges, .. } => {
                let _ = writeln!(
                    out,
                    "{:<32} {:>9} {:>12} {:>12} {:>10}",
                    "topic", "partition", "start", "end", "records"
                );
                for r in ranges {
                    let _ = writeln!(
                        out,
                        "{:<32} {:>9} {:>12} {:>12} {:>10}",
                        r.topic,
                        r.partition,
                        r.start,
                        r.end,
                        r.count()
                    );
                }
                let _ = writeln!(
                    out,
                    "total: {} record(s) in {} partition(s)",
                    self.total().unwrap_or(0),
                    ranges.len()
                );
            }
            Plan::File { config, from, to } => {
                let _ = writeln!(
                    out,
                    "{}: bytes {from}..{to} ({} bytes; lines starting in the range)",
                    config.path.display(),
                    to - from
                );
            }
            #[cfg(feature = "http-server")]
            Plan::Wal(w) => out.push_str(&w.describe()),
        }
        out
    }

    /// Builds the source that reads exactly this range, once per run.
    pub fn factory(&self, pipeline: &str) -> Arc<SourceFactory> {
        let pipeline = pipeline.to_string();
        match self {
            #[cfg(feature = "kafka")]
            Plan::Kafka { config, ranges } => {
                let config = config.clone();
                let ranges = ranges.clone();
                Arc::new(move || {
                    let cfg: sluice_kafka::SourceConfig =
                        sluice_sdk::config::from_value(config.clone())
                            .map_err(|e| PipelineError::Build(e.to_string()))?;
                    let s = sluice_kafka::KafkaSource::range(cfg, &pipeline, ranges.clone())
                        .map_err(|e| PipelineError::Build(e.to_string()))?;
                    Ok(Box::new(s) as Box<dyn Source>)
                })
            }
            Plan::File { config, from, to } => {
                let (config, from, to) = (config.clone(), *from, *to);
                Arc::new(move || {
                    Ok(Box::new(FileSource::range(config.clone(), from, Some(to)))
                        as Box<dyn Source>)
                })
            }
            #[cfg(feature = "http-server")]
            Plan::Wal(w) => {
                let w = w.clone();
                Arc::new(move || {
                    Ok(Box::new(sluice_http_server::WalRange::new(
                        &w.data_dir,
                        &pipeline,
                        w.from,
                        w.to,
                    )) as Box<dyn Source>)
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_positions_are_byte_offsets_and_times_are_refused() {
        assert_eq!(position("1024").unwrap(), 1024);
        assert!(matches!(position("2h"), Err(RangeError::TimeOnFile(_))));
        assert!(matches!(
            position("2026-01-05T10:00:00Z"),
            Err(RangeError::TimeOnFile(_))
        ));
        assert!(matches!(position("x"), Err(RangeError::NotAPosition(_))));
        let dir = std::env::temp_dir();
        let cfg = serde_json::json!({"path": dir.join("nope.jsonl")});
        let ask = Ask {
            from: "10",
            to: Some("5"),
            partitions: &[],
        };
        assert!(matches!(
            resolve("file", &cfg, "p", &dir, &ask),
            Err(RangeError::Backwards { .. })
        ));
        let ask = Ask {
            from: "0",
            to: Some("5"),
            partitions: &[1],
        };
        assert!(matches!(
            resolve("file", &cfg, "p", &dir, &ask),
            Err(RangeError::Partition)
        ));
        assert!(matches!(
            resolve("generator", &cfg, "p", &dir, &ask),
            Err(RangeError::Unsupported(_))
        ));
    }
}
