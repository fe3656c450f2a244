//! The `file` sink: appends each record's value as one line, to one file or to a file per
//! rendered path (`/var/log/purview/audit_%Y%m%d.jsonl`, `/var/log/{{ tenant }}/audit.jsonl`).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::value::RawValue;
use sluice_sdk::dead_letter::with_detail;
use sluice_sdk::json::Outline;
use sluice_sdk::template::DatedTemplate;
use sluice_sdk::{async_trait, ConfigError, Outcome, RecordRef, Sink, SinkContext, SinkError};

/// `file` sink options.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// File to append to; created with its parent directories. May hold date parts of the
    /// event time (`%Y %m %d %H`, see `DatedTemplate`) and `{{ field }}` references: each
    /// record then goes to the file its values name, and a new file is started whenever the
    /// rendered name changes.
    pub path: String,
    /// Dotted path of the event time for the date parts (RFC 3339 or epoch numbers). Missing
    /// or not a time: the record's timestamp, else the time of the write.
    #[serde(default)]
    pub time_field: Option<String>,
    /// fsync after every batch. Off by default: a batch is acknowledged once the OS has it,
    /// which survives a crash of `sluice` but not of the machine.
    #[serde(default)]
    pub fsync: bool,
    /// Files of a templated path kept open at once; past it the least recently written is
    /// closed (and opened again when a record needs it).
    #[serde(default = "default_max_open_files")]
    pub max_open_files: usize,
}

fn default_max_open_files() -> usize {
    64
}

/// A file not written for this long is closed at the next batch.
const IDLE_CLOSE: Duration = Duration::from_secs(60);

/// Appends records to files, one line each.
pub struct FileSink {
    path: DatedTemplate,
    /// Set when `path` has neither fields nor dates.
    fixed: Option<String>,
    /// What a rendered path must stay inside: the literal text up to the last `/` before the
    /// first field or date part.
    base: String,
    time_field: Option<String>,
    fsync: bool,
    max_open_files: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    open: Vec<OpenFile>,
    groups: Vec<Group>,
    rendered: String,
}

struct OpenFile {
    path: PathBuf,
    file: File,
    used: Instant,
}

/// The lines of one batch bound for one file.
struct Group {
    path: PathBuf,
    buf: Vec<u8>,
    records: Vec<usize>,
}

impl FileSink {
    pub fn new(cfg: FileSinkConfig) -> Result<Self, ConfigError> {
        let path = DatedTemplate::parse(&cfg.path, "path")?;
        if cfg.path.contains('\0') {
            return Err(ConfigError::at("path", "must not contain a NUL character"));
        }
        if let Some(f) = &cfg.time_field {
            if f.trim().is_empty() {
                return Err(ConfigError::at("time_field", "empty field path"));
            }
        }
        if cfg.max_open_files == 0 {
            return Err(ConfigError::at("max_open_files", "must be at least 1"));
        }
        let fixed = path.constant();
        let prefix = path.literal_prefix();
        let base = prefix[..prefix.rfind('/').map_or(0, |i| i + 1)].to_string();
        Ok(FileSink {
            path,
            fixed,
            base,
            time_field: cfg.time_field,
            fsync: cfg.fsync,
            max_open_files: cfg.max_open_files,
            state: Mutex::new(State::default()),
        })
    }

    /// Where a record goes, or why it cannot be written anywhere.
    fn render(&self, record: &RecordRef<'_>, now_ms: i64, out: &mut String) -> Result<(), Outcome> {
        out.clear();
        let wants_time = self.path.needs_time() && self.time_field.is_some();
        let outline = if self.path.needs_fields() || wants_time {
            Outline::<&RawValue>::parse(record.value()).ok()
        } else {
            None
        };
        let event_time = self
            .time_field
            .as_deref()
            .zip(outline.as_ref())
            .and_then(|(f, o)| o.get(f))
            .and_then(|raw| serde_json::from_str(raw.get()).ok())
            .and_then(|v| sluice_sdk::time::parse_millis(&v));
        let time = event_time.or(record.timestamp()).unwrap_or(now_ms);
        self.path
            .render_with(time, out, |f| {
                let raw = outline.as_ref()?.get(f)?;
                let v: serde_json::Value = serde_json::from_str(raw.get()).ok()?;
                sluice_sdk::json::as_text(&v).map(|c| c.into_owned())
            })
            .map_err(|e| Outcome::reject("file.path_template", e.to_string()))?;
        if !stays_inside(&out[self.base.len()..]) {
            return Err(Outcome::reject(
                "file.path_outside_directory",
                with_detail(
                    &format!(
                        "the rendered path leaves the directory `{}` (a `..`, an absolute part, an empty name or a NUL)",
                        self.display_base()
                    ),
                    &format!("rendered path: {out:?}"),
                ),
            ));
        }
        Ok(())
    }

    fn display_base(&self) -> &str {
        if self.base.is_empty() {
            "."
        } else {
            &self.base
        }
    }
}

/// Whether the templated part of a rendered path names a file below the base directory.
fn stays_inside(rest: &str) -> bool {
    !rest.is_empty()
        && !rest.contains('\0')
        && !rest.ends_with('/')
        && Path::new(rest)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

fn open_file(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let file = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)?;
    sluice_sdk::fs::cut_torn_tail(&file, "file sink")?;
    Ok(file)
}

fn io_error(path: &Path, e: &std::io::Error) -> String {
    format!("file {}: {e}", path.display())
}

impl State {
    /// The index of the lines for `path`, starting a group when the path is new.
    fn group(&mut self, path: &str) -> usize {
        match self.groups.iter().rposition(|g| g.path.as_os_str() == path) {
            Some(i) => i,
            None => {
                self.groups.push(Group {
                    path: PathBuf::from(path),
                    buf: Vec::new(),
                    records: Vec::new(),
                });
                self.groups.len() - 1
            }
        }
    }

    /// Writes one group; the file is closed after an error, so the next batch opens it anew
    /// (it may have been rotated, or the disk freed).
    fn write(&mut self, at: usize, fsync: bool, max_open: usize) -> Result<(), String> {
        let path = &self.groups[at].path;
        let i = match self.open.iter().position(|f| &f.path == path) {
            Some(i) => i,
            None => {
                let file = open_file(path).map_err(|e| io_error(path, &e))?;
                if self.open.len() >= max_open {
                    if let Some(lru) = (0..self.open.len()).min_by_key(|&i| self.open[i].used) {
                        self.open.swap_remove(lru);
                    }
                }
                self.open.push(OpenFile {
                    path: path.clone(),
                    file,
                    used: Instant::now(),
                });
                self.open.len() - 1
            }
        };
        let f = &mut self.open[i];
        f.used = Instant::now();
        // One write per file per batch; O_APPEND keeps concurrent writers line-atomic per write.
        let res = f.file.write_all(&self.groups[at].buf).and_then(|_| {
            if fsync {
                f.file.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(e) = res {
            let message = io_error(&f.path, &e);
            self.open.swap_remove(i);
            return Err(message);
        }
        Ok(())
    }
}

#[async_trait]
impl Sink for FileSink {
    async fn open(&mut self, _ctx: SinkContext) -> Result<(), SinkError> {
        if let Some(path) = &self.fixed {
            let path = PathBuf::from(path);
            let file = open_file(&path).map_err(|e| SinkError::unavailable(io_error(&path, &e)))?;
            self.state.get_mut().open.push(OpenFile {
                path,
                file,
                used: Instant::now(),
            });
        }
        Ok(())
    }

    async fn send(&self, records: &[RecordRef<'_>]) -> Result<Vec<Outcome>, SinkError> {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        let mut outcomes = vec![Outcome::Delivered; records.len()];
        // Buffers are kept for the next batch, unless many paths have been seen.
        if state.groups.len() > self.max_open_files {
            state.groups.clear();
        }
        for g in &mut state.groups {
            g.buf.clear();
            g.records.clear();
        }
        if let Some(path) = &self.fixed {
            let at = state.group(path);
            let g = &mut state.groups[at];
            for r in records {
                g.buf.extend_from_slice(r.value());
                g.buf.push(b'\n');
            }
            return match state.write(at, self.fsync, self.max_open_files) {
                Ok(()) => Ok(outcomes),
                Err(message) => Err(SinkError::unavailable(message)),
            };
        }
        let now_ms = chrono::Utc::now().timestamp_millis();
        let mut rendered = std::mem::take(&mut state.rendered);
        for (i, r) in records.iter().enumerate() {
            match self.render(r, now_ms, &mut rendered) {
                Ok(()) => {
                    let at = state.group(&rendered);
                    let g = &mut state.groups[at];
                    g.buf.extend_from_slice(r.value());
                    g.buf.push(b'\n');
                    g.records.push(i);
                }
                Err(outcome) => outcomes[i] = outcome,
            }
        }
        state.rendered = rendered;
        let mut failed = 0;
        let mut last_error = String::new();
        for at in 0..state.groups.len() {
            if state.groups[at].records.is_empty() {
                continue;
            }
            if let Err(message) = state.write(at, self.fsync, self.max_open_files) {
                for &i in &state.groups[at].records {
                    outcomes[i] = Outcome::Unavailable(message.clone());
                    failed += 1;
                }
                last_error = message;
            }
        }
        // Files whose name has moved on (yesterday's) or that went quiet are closed.
        let now = Instant::now();
        state
            .open
            .retain(|f| now.duration_since(f.used) < IDLE_CLOSE);
        if failed == records.len() && failed > 0 {
            return Err(SinkError::unavailable(last_error));
        }
        Ok(outcomes)
    }

    async fn close(&self) -> Result<(), SinkError> {
        for f in &self.state.lock().open {
            f.file
                .sync_data()
                .map_err(|e| SinkError::unavailable(io_error(&f.path, &e)))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
