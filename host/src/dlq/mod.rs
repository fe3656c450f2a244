//! `sluice dlq list|show|replay`: reading a pipeline's dead-letter queues back, and sending
//! their letters again through the pipeline (or one sink) once the cause is fixed.

pub mod commands;
mod cursor;
mod letters;
mod source;

use std::path::PathBuf;

use crate::config::ConnectorSpec;
use crate::pipeline::PipelineDef;

pub use cursor::RangeSet;
pub use letters::{FileLetters, Letter, LetterError};

/// Why a DLQ cannot be read back.
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    #[error(transparent)]
    Letter(#[from] LetterError),
    #[error("dead_letter type `{0}` cannot be read back (file and kafka can)")]
    Unsupported(String),
    #[error("dead_letter: {0}")]
    Config(String),
    #[error(transparent)]
    Offsets(#[from] crate::offsets::OffsetError),
}

/// Where one DLQ of a pipeline keeps its letters.
#[derive(Debug, Clone, PartialEq)]
pub enum Location {
    File(PathBuf),
    /// A Kafka topic; its cursor lives under `data_dir/dlq/`.
    Kafka {
        topic: String,
        config: serde_json::Value,
        group: String,
        cursor: PathBuf,
    },
}

/// One dead-letter queue of a pipeline: its own, or a sink's own `dead_letter:`.
#[derive(Debug, Clone)]
pub struct Dlq {
    pub location: Location,
    /// The sinks whose letters go here (the pipeline's DLQ, listed first, also takes
    /// transform failures and unrouted records).
    pub sinks: Vec<String>,
}

impl Dlq {
    /// Shown to the operator: the file's path or the topic.
    pub fn describe(&self) -> String {
        match &self.location {
            Location::File(p) => format!("file {}", p.display()),
            Location::Kafka { topic, .. } => format!("kafka topic {topic}"),
        }
    }

    /// Where a replay's cursor (the set of replayed letter positions) is kept: beside the
    /// DLQ file, `<name>.replay.json`.
    pub fn cursor_path(&self) -> PathBuf {
        match &self.location {
            Location::File(p) => {
                let stem = p
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "dlq".into());
                p.with_file_name(format!("{stem}.replay.json"))
            }
            Location::Kafka { cursor, .. } => cursor.clone(),
        }
    }

    /// The saved replay cursor, by partition.
    pub fn replayed(&self) -> Result<std::collections::BTreeMap<i32, RangeSet>, DlqError> {
        let saved = crate::offsets::OffsetStore::read(&self.cursor_path())?.unwrap_or_default();
        let mut out = std::collections::BTreeMap::new();
        for (p, text) in saved {
            let set = RangeSet::parse(&text).map_err(|e| DlqError::Config(e.to_string()))?;
            out.insert(p, set);
        }
        Ok(out)
    }
}

fn locate(spec: &ConnectorSpec, def: &PipelineDef) -> Result<Location, DlqError> {
    match spec.type_name.as_str() {
        "file" => {
            let cfg: sluice_builtin::FileDeadLetterConfig =
                sluice_sdk::config::from_value(spec.config.clone())
                    .map_err(|e| DlqError::Config(e.to_string()))?;
            let w = sluice_builtin::FileDeadLetter::new(cfg, &def.build);
            Ok(Location::File(w.path().clone()))
        }
        #[cfg(feature = "kafka")]
        "kafka" => {
            let cfg: sluice_kafka::DeadLetterConfig =
                sluice_sdk::config::from_value(spec.config.clone())
                    .map_err(|e| DlqError::Config(e.to_string()))?;
            let topic = cfg.topic.clone().ok_or_else(|| {
                DlqError::Config(
                    "a kafka DLQ without `topic` writes to `<source topic>.dlq`; set `topic` to read it back".into(),
                )
            })?;
            let name = crate::offsets::file_name(&format!("{}.{topic}", def.name))
                .replace(".json", ".replay.json");
            Ok(Location::Kafka {
                topic,
                config: spec.config.clone(),
                group: replay_group(&def.name),
                cursor: def.build.data_dir.join("dlq").join(name),
            })
        }
        other => Err(DlqError::Unsupported(other.to_string())),
    }
}

/// The consumer group a Kafka DLQ's replays commit: its lag is what is left to replay.
pub fn replay_group(pipeline: &str) -> String {
    format!("sluice-dlq-replay.{pipeline}")
}

/// Every DLQ of a pipeline: its own first, then each sink's own `dead_letter:`.
pub fn dlqs_of(def: &PipelineDef) -> Result<Vec<Dlq>, DlqError> {
    let mut out = vec![Dlq {
        location: locate(&def.dead_letter, def)?,
        sinks: Vec::new(),
    }];
    for s in &def.sinks {
        let loc = locate(&s.dead_letter, def)?;
        match out.iter_mut().find(|d| d.location == loc) {
            Some(d) => d.sinks.push(s.name.to_string()),
            None => out.push(Dlq {
                location: loc,
                sinks: vec![s.name.to_string()],
            }),
        }
    }
    Ok(out)
}

/// Opens a DLQ's letters for reading, up to their end as of now: a replay reads a Kafka DLQ
/// from its replay group's position, a listing (`from_start`) from the earliest letter.
pub fn open_letters(dlq: &Dlq, from_start: bool) -> Result<source::Letters, DlqError> {
    match &dlq.location {
        Location::File(p) => Ok(source::Letters::File(FileLetters::open(p)?)),
        #[cfg(feature = "kafka")]
        Location::Kafka { config, group, .. } => {
            let cfg: sluice_kafka::DeadLetterConfig =
                sluice_sdk::config::from_value(config.clone())
                    .map_err(|e| DlqError::Config(e.to_string()))?;
            let reader = sluice_kafka::DlqReader::open(&cfg, group, from_start)
                .map_err(LetterError::Kafka)?;
            Ok(source::Letters::Kafka(source::KafkaLetters {
                reader,
                buffered: Default::default(),
                done: false,
            }))
        }
        #[cfg(not(feature = "kafka"))]
        Location::Kafka { .. } => Err(DlqError::Unsupported("kafka".into())),
    }
}
