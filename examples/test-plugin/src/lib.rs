//! Test fixture plugin.
//!
//! * `conformance` sink and source: the scripted connectors of
//!   `sluice_testkit::conformance::scripted`, so the conformance suite can compare them built
//!   in and across the plugin boundary.
//! * `panic_once` sink (config `{ path, marker }`): appends each record's value as a line to
//!   `path`, but the first time in the life of the process that a batch holds a record whose
//!   value contains `marker`, it panics instead. The library is never unloaded, so the flag
//!   survives the restart of the instance: the resent batch is then delivered. This is how the
//!   end-to-end tests show that a panicking plugin loses no record.
//! * `stall` sink (config `{ path }`): appends `sending` to `path` and then never answers.
//!   When its send is dropped (the host gave up on it), it appends `let go of <first value>`,
//!   read from the batch the host lent it: that shows the batch is still there at that point
//!   and that the drop happened before the host's cancel returned.
//! * A library initialiser (`.init_array`, run by the dynamic loader when the library is
//!   opened, before any plugin symbol is called): when `SLUICE_TEST_PLUGIN_INIT_MARKER` names
//!   a file, it appends `loaded` to it. This shows whether a command opened the library.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Deserialize;
use sluice_sdk::{async_trait, Outcome, RecordRef, Registry, Sink, SinkError};

static PANICKED: AtomicBool = AtomicBool::new(false);

/// Runs when the library is loaded: leaves a trace in `$SLUICE_TEST_PLUGIN_INIT_MARKER`.
#[cfg(target_os = "linux")]
#[used]
#[link_section = ".init_array"]
static ON_LOAD: extern "C" fn() = on_load;

#[cfg(target_os = "linux")]
extern "C" fn on_load() {
    if let Some(path) = std::env::var_os("SLUICE_TEST_PLUGIN_INIT_MARKER") {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = f.write_all(b"loaded\n");
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PanicOnceConfig {
    path: PathBuf,
    marker: String,
}

struct PanicOnceSink {
    cfg: PanicOnceConfig,
}

#[async_trait]
impl Sink for PanicOnceSink {
    async fn send(&self, records: &[RecordRef<'_>]) -> Result<Vec<Outcome>, SinkError> {
        let marker = self.cfg.marker.as_bytes();
        if let Some(r) = records
            .iter()
            .find(|r| r.value().windows(marker.len()).any(|w| w == marker))
        {
            if !PANICKED.swap(true, Ordering::SeqCst) {
                panic!(
                    "panic_once: found the marker in the record at offset {}",
                    r.origin().offset
                );
            }
        }
        let mut body = Vec::new();
        for r in records {
            body.extend_from_slice(r.value());
            body.push(b'\n');
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.cfg.path)
            .and_then(|mut f| f.write_all(&body))
            .map_err(|e| SinkError::unavailable(format!("{}: {e}", self.cfg.path.display())))?;
        Ok(vec![Outcome::Delivered; records.len()])
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StallConfig {
    path: PathBuf,
}

struct StallSink {
    cfg: StallConfig,
}

fn append(path: &std::path::Path, line: &str) {
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{line}");
    }
}

/// Writes what it last saw of the batch when the send holding it is dropped.
struct LetGo<'a> {
    path: &'a std::path::Path,
    first: &'a [u8],
}

impl Drop for LetGo<'_> {
    fn drop(&mut self) {
        append(
            self.path,
            &format!("let go of {}", String::from_utf8_lossy(self.first)),
        );
    }
}

#[async_trait]
impl Sink for StallSink {
    async fn send(&self, records: &[RecordRef<'_>]) -> Result<Vec<Outcome>, SinkError> {
        append(&self.cfg.path, "sending");
        let _guard = LetGo {
            path: &self.cfg.path,
            first: records.first().map_or(&[][..], |r| r.value()),
        };
        std::future::pending::<()>().await;
        Ok(vec![Outcome::Delivered; records.len()])
    }
}

fn register(registry: &mut Registry) {
    sluice_testkit::conformance::scripted::register(registry);
    registry.register_sink(
        "panic_once",
        env!("CARGO_PKG_VERSION"),
        |cfg: PanicOnceConfig, _| Ok(Box::new(PanicOnceSink { cfg })),
    );
    registry.register_sink("stall", env!("CARGO_PKG_VERSION"), |cfg: StallConfig, _| {
        Ok(Box::new(StallSink { cfg }))
    });
}

sluice_sdk::export_plugin!(register);
