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
///
/// The file is created 0600 in a 0700 directory (letters hold record contents), and the
/// directory is fsynced when the file is created. Each write opens the file (an operator may
/// move it away between letters) and first cuts a partial last line left by a crash; a write
/// that fails (full disk, read-only file system) is cut back to where it started and reported,
/// so no letter is ever glued onto a fragment.
pub struct FileDeadLetter {
    path: PathBuf,
}

/// One lock for every file DLQ of the process: writers of one file (a pipeline restarted
/// while its old run drains) must not cut each other's tails, and letters are rare.
static WRITE_LOCK: Mutex<()> = Mutex::new(());

impl FileDeadLetter {
    pub fn new(cfg: FileDeadLetterConfig, ctx: &BuildContext) -> Self {
        let path = cfg.path.unwrap_or_else(|| {
            ctx.data_dir
                .join("dlq")
                .join(format!("{}.jsonl", sanitize(&ctx.pipeline)))
        });
        FileDeadLetter { path }
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
        let _guard = WRITE_LOCK.lock();
        let mut f = sluice_sdk::fs::open_private_append(&self.path).map_err(err)?;
        sluice_sdk::fs::cut_torn_tail(&f, "file dead-letter queue").map_err(err)?;
        let before = f.metadata().map_err(err)?.len();
        if let Err(e) = f.write_all(&buf).and_then(|()| f.sync_data()) {
            // Nothing of this write counts: cut it back so the next write starts on a line
            // boundary. If even that fails, the next write's open cuts the torn tail.
            let _ = f.set_len(before).and_then(|()| f.sync_data());
            return Err(err(e));
        }
        Ok(())
    }
}
