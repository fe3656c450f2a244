//! Routes the plugin's `tracing` events and panics to the host's logger.
//!
//! The plugin has its own copy of `tracing`, whose global dispatcher the host's subscriber
//! never sees; this subscriber forwards each enabled event as one line through the host's
//! log callback. Spans are accepted and ignored.

use std::ffi::c_void;
use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

use crate::plugin::abi::{level, HostApi, Slice};

struct HostLog {
    ctx: usize,
    log: unsafe extern "C" fn(ctx: *const c_void, level: u32, target: Slice, message: Slice),
    max_level: u32,
}

static HOST_LOG: OnceLock<HostLog> = OnceLock::new();

/// Remembers the host's log callback and installs the forwarding subscriber and panic hook.
pub(super) fn connect(host: &HostApi) {
    let first = HOST_LOG
        .set(HostLog {
            ctx: host.ctx as usize,
            log: host.log,
            max_level: host.max_log_level,
        })
        .is_ok();
    if !first {
        return;
    }
    let max = match host.max_log_level {
        level::OFF => LevelFilter::OFF,
        level::ERROR => LevelFilter::ERROR,
        level::WARN => LevelFilter::WARN,
        level::INFO => LevelFilter::INFO,
        level::DEBUG => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    };
    // A plugin that installed its own subscriber keeps it.
    let _ = tracing::subscriber::set_global_default(HostSubscriber {
        max,
        next_span: AtomicU64::new(1),
    });
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_else(|| "an unknown location".into());
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(non-text payload)");
        let thread = std::thread::current();
        emit(
            level::ERROR,
            "sluice_sdk::plugin",
            &format!(
                "plugin thread '{}' panicked at {location}: {msg}",
                thread.name().unwrap_or("<unnamed>")
            ),
        );
        super::ops::note_panic_location(location);
    }));
}

/// Sends one line to the host log if the host wants this level.
pub(super) fn emit(lvl: u32, target: &str, message: &str) {
    if let Some(h) = HOST_LOG.get() {
        if lvl <= h.max_level {
            // SAFETY: the host keeps the callback and its context valid for the process.
            unsafe {
                (h.log)(
                    h.ctx as *const c_void,
                    lvl,
                    Slice::new(target.as_bytes()),
                    Slice::new(message.as_bytes()),
                )
            }
        }
    }
}

fn level_code(l: &Level) -> u32 {
    match *l {
        Level::ERROR => level::ERROR,
        Level::WARN => level::WARN,
        Level::INFO => level::INFO,
        Level::DEBUG => level::DEBUG,
        Level::TRACE => level::TRACE,
    }
}

struct HostSubscriber {
    max: LevelFilter,
    next_span: AtomicU64,
}

impl Subscriber for HostSubscriber {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= self.max
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.max)
    }

    fn new_span(&self, _span: &Attributes<'_>) -> Id {
        Id::from_u64(self.next_span.fetch_add(1, Ordering::Relaxed))
    }

    fn record(&self, _span: &Id, _values: &Record<'_>) {}

    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut line = Line::default();
        event.record(&mut line);
        if !line.fields.is_empty() {
            if !line.message.is_empty() {
                line.message.push(' ');
            }
            line.message.push_str(&line.fields);
        }
        emit(
            level_code(event.metadata().level()),
            event.metadata().target(),
            &line.message,
        );
    }

    fn enter(&self, _span: &Id) {}

    fn exit(&self, _span: &Id) {}
}

/// An event as `message key=value key=value`.
#[derive(Default)]
struct Line {
    message: String,
    fields: String,
}

impl Visit for Line {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            if !self.fields.is_empty() {
                self.fields.push(' ');
            }
            let _ = write!(self.fields, "{}={value:?}", field.name());
        }
    }
}
