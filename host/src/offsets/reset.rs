//! `sluice offsets reset`: moves a stopped pipeline's position. A Kafka source's consumer
//! group gets new committed offsets (refused while the group has members); other sources get
//! their offset store rewritten atomically (refused while `sluice run` holds the pipeline's
//! lock). `--dry-run` shows the positions before and after and changes nothing.

use std::path::Path;

use serde::Serialize;

use crate::config::{Config, PipelineConfig};
use crate::replay::time;

use super::OffsetStore;

/// What `--to` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum To {
    Earliest,
    Latest,
    /// Milliseconds since the epoch.
    Time(i64),
    /// An offset (Kafka) or a position in the source's checkpoint format.
    Position(String),
}

impl To {
    /// `earliest`, `latest`, a whole number (an offset or position), or a time.
    pub fn parse(text: &str) -> Result<To, ResetError> {
        Ok(match text.trim() {
            "earliest" => To::Earliest,
            "latest" => To::Latest,
            t if t.parse::<i64>().is_ok() => To::Position(t.to_string()),
            t => match time::parse(t, chrono::Utc::now()) {
                Ok(ms) => To::Time(ms),
                // Another source's position format (a Cosmos etag, say) is taken as given.
                Err(_) => To::Position(t.to_string()),
            },
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    #[error("no pipeline `{0}` in the configuration")]
    NoPipeline(String),
    #[error("{0}")]
    Locked(#[from] crate::lock::LockError),
    #[error("{0}")]
    Store(#[from] super::OffsetError),
    #[error("source `{source_type}` keeps no timestamps: --to takes earliest, or a position as its offset store keeps it")]
    TimeUnsupported { source_type: String },
    #[error(
        "source `{source_type}` cannot tell where its end is: --to takes earliest, or a position"
    )]
    LatestUnsupported { source_type: String },
    #[error("`{0}` is not a byte position of the file source (a whole number)")]
    NotAPosition(String),
    #[error("cannot read the size of {path}: {source}")]
    FileSize {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("source configuration: {0}")]
    Config(String),
    #[cfg(feature = "kafka")]
    #[error("{0}")]
    Kafka(#[from] sluice_kafka::reset::ResetError),
}

/// One partition's position before and after.
#[derive(Debug, Serialize)]
pub struct Row {
    /// The topic (Kafka) or the offset store's path.
    pub stream: String,
    pub partition: i32,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// What a reset did (or, on a dry run, would do).
#[derive(Debug, Serialize)]
pub struct Outcome {
    pub pipeline: String,
    /// The consumer group (Kafka) or the offset store file.
    pub target: String,
    pub dry_run: bool,
    pub partitions: Vec<Row>,
}

impl Outcome {
    /// A table of the positions before and after.
    pub fn table(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(out, "pipeline {}: {}", self.pipeline, self.target);
        let _ = writeln!(
            out,
            "{:<32} {:>9} {:>14} {:>14}",
            "stream", "partition", "before", "after"
        );
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        for r in &self.partitions {
            let _ = writeln!(
                out,
                "{:<32} {:>9} {:>14} {:>14}",
                r.stream,
                r.partition,
                show(&r.before),
                show(&r.after)
            );
        }
        if self.dry_run {
            out.push_str("dry run: nothing changed\n");
        }
        out
    }
}

/// Resets `pipeline` of `cfg` to `to` on `partitions` (every partition when empty).
pub fn reset(
    cfg: &Config,
    pipeline: &str,
    to: &To,
    partitions: &[i32],
    dry_run: bool,
) -> Result<Outcome, ResetError> {
    let p = cfg
        .pipelines
        .iter()
        .find(|p| p.name == pipeline)
        .ok_or_else(|| ResetError::NoPipeline(pipeline.to_string()))?;
    match p.source.type_name.as_str() {
        #[cfg(feature = "kafka")]
        "kafka" => kafka(p, to, partitions, dry_run),
        _ => store(p, &cfg.host.data_dir, to, partitions, dry_run),
    }
}

#[cfg(feature = "kafka")]
fn kafka(
    p: &PipelineConfig,
    to: &To,
    partitions: &[i32],
    dry_run: bool,
) -> Result<Outcome, ResetError> {
    use sluice_kafka::reset::{self, Target};
    let config: sluice_kafka::SourceConfig =
        sluice_sdk::config::from_value(p.source.config.clone())
            .map_err(|e| ResetError::Config(e.to_string()))?;
    let target = match to {
        To::Earliest => Target::Earliest,
        To::Latest => Target::Latest,
        To::Time(ms) => Target::Time(*ms),
        To::Position(t) => Target::Offset(
            t.parse()
                .map_err(|_| ResetError::Config(format!("`{t}` is not a Kafka offset")))?,
        ),
    };
    let (group, moves) = reset::plan(&config, &p.name, target, partitions)?;
    if !dry_run {
        reset::apply(&config, &p.name, &moves)?;
    }
    Ok(Outcome {
        pipeline: p.name.clone(),
        target: format!("consumer group {group}"),
        dry_run,
        partitions: moves
            .into_iter()
            .map(|m| Row {
                stream: m.topic,
                partition: m.partition,
                before: m.before.map(|o| o.to_string()),
                after: Some(m.after.to_string()),
            })
            .collect(),
    })
}

/// A source whose positions live in the offset store: rewritten under the pipeline's lock.
fn store(
    p: &PipelineConfig,
    data_dir: &Path,
    to: &To,
    partitions: &[i32],
    dry_run: bool,
) -> Result<Outcome, ResetError> {
    let _lock = crate::lock::acquire(data_dir, &p.name)?;
    let source_type = p.source.type_name.clone();
    let file = source_type == "file";
    let after: Option<String> = match to {
        To::Time(_) => return Err(ResetError::TimeUnsupported { source_type }),
        // The beginning: a file from byte 0; another source from where it starts without
        // a saved position.
        To::Earliest if file => Some("0".into()),
        To::Earliest => None,
        To::Latest if file => {
            let cfg: sluice_builtin::FileSourceConfig =
                sluice_sdk::config::from_value(p.source.config.clone())
                    .map_err(|e| ResetError::Config(e.to_string()))?;
            let len = std::fs::metadata(&cfg.path)
                .map_err(|source| ResetError::FileSize {
                    path: cfg.path.clone(),
                    source,
                })?
                .len();
            Some(len.to_string())
        }
        To::Latest => return Err(ResetError::LatestUnsupported { source_type }),
        To::Position(t) if file && t.parse::<u64>().is_err() => {
            return Err(ResetError::NotAPosition(t.clone()))
        }
        To::Position(t) => Some(t.clone()),
    };
    let mut store = OffsetStore::open(data_dir, &p.name)?;
    let chosen: Vec<i32> = if !partitions.is_empty() {
        partitions.to_vec()
    } else if file || store.positions().is_empty() {
        vec![0]
    } else {
        store.positions().keys().copied().collect()
    };
    let path = OffsetStore::path_for(data_dir, &p.name);
    let rows = chosen
        .iter()
        .map(|part| Row {
            stream: path.display().to_string(),
            partition: *part,
            before: store.positions().get(part).cloned(),
            after: after.clone(),
        })
        .collect();
    if !dry_run {
        for part in &chosen {
            store.set(*part, after.clone());
        }
        store.flush()?;
    }
    Ok(Outcome {
        pipeline: p.name.clone(),
        target: format!("offset store {}", path.display()),
        dry_run,
        partitions: rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(To::parse("earliest").unwrap(), To::Earliest);
        assert_eq!(To::parse("latest").unwrap(), To::Latest);
        assert_eq!(To::parse("42").unwrap(), To::Position("42".into()));
        assert_eq!(
            To::parse("2026-01-05T10:00:00Z").unwrap(),
            To::Time(1_767_607_200_000)
        );
        assert!(matches!(To::parse("2h").unwrap(), To::Time(_)));
        assert_eq!(
            To::parse("\"etag-7\"").unwrap(),
            To::Position("\"etag-7\"".into())
        );
    }
}
