use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;

use base64::Engine;
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{Map, Value};
use sluice_sdk::{async_trait, BuildContext, DeadLetter, DeadLetterError, DeadLetterWriter};

/// `file` dead-letter queue: JSON lines under `<data_dir>/dlq/<pipeline>.jsonl`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDeadLetterConfig {
    /// Override the file path.
    #[serde(default)]
    pub path: Option<PathBuf>,
}

/// Appends dead letters as JSON objects, one per line, and fsyncs before acknowledging:
/// a record that reached the DLQ is committed upstream, so the DLQ must not lose it.
pub struct FileDeadLetter {
    path: PathBuf,
    lock: Mutex<()>,
}

impl FileDeadLetter {
    pub fn new(cfg: FileDeadLetterConfig, ctx: &BuildContext) -> Self {
        let path = cfg.path.unwrap_or_else(|| {
            ctx.data_dir
                .join("dlq")
                .join(format!("{}.jsonl", sanitize(&ctx.pipeline)))
        });
        FileDeadLetter {
            path,
            lock: Mutex::new(()),
        }
    }

    pub fn path(&self) -> &PathBuf {
        &self.path
    }
}

/// Pipeline names become file names: keep them to a safe alphabet.
pub(crate) fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn bytes_field(obj: &mut Map<String, Value>, name: &str, bytes: Option<&[u8]>) {
    match bytes {
        None => {
            obj.insert(name.to_string(), Value::Null);
        }
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) => {
                obj.insert(name.to_string(), Value::String(s.to_string()));
            }
            Err(_) => {
                obj.insert(
                    format!("{name}_base64"),
                    Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
                );
            }
        },
    }
}

/// The JSON line for one dead letter.
pub fn encode(letter: &DeadLetter<'_>) -> Value {
    let r = letter.record;
    let mut obj = Map::new();
    bytes_field(&mut obj, "key", r.key.as_deref());
    bytes_field(&mut obj, "value", Some(&r.value));
    let headers: Vec<Value> = r
        .headers
        .iter()
        .map(|h| {
            let mut m = Map::new();
            m.insert("key".into(), Value::String(h.key.clone()));
            bytes_field(&mut m, "value", h.value.as_deref());
            Value::Object(m)
        })
        .collect();
    obj.insert("headers".into(), Value::Array(headers));
    obj.insert(
        "timestamp".into(),
        r.timestamp.map_or(Value::Null, Value::from),
    );
    for (k, v) in letter.context_headers() {
        obj.insert(k.to_string(), Value::String(v));
    }
    obj.insert(
        "dead_lettered_at".into(),
        Value::String(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
    );
    Value::Object(obj)
}

#[async_trait]
impl DeadLetterWriter for FileDeadLetter {
    async fn write(&self, letters: &[DeadLetter<'_>]) -> Result<(), DeadLetterError> {
        let mut buf = Vec::new();
        for l in letters {
            serde_json::to_writer(&mut buf, &encode(l))
                .map_err(|e| DeadLetterError(e.to_string()))?;
            buf.push(b'\n');
        }
        let err = |e: std::io::Error| DeadLetterError(format!("{}: {e}", self.path.display()));
        let _guard = self.lock.lock();
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(err)?;
        f.write_all(&buf).map_err(err)?;
        f.sync_data().map_err(err)?;
        Ok(())
    }
}
