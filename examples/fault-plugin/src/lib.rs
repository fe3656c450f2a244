//! Test fixture plugin: sources that break the source contract on purpose, so the end-to-end
//! tests can show what the host does with a misbehaving plugin.
//!
//! Both emit JSON records `{"seq": n}` on stream `fault`, partition 0, and return checkpoints
//! (`"0"`: the next offset) from which they resume.
//!
//! * `repeat_offset` (config `{ count, repeat_at }`): offsets `0..count`, but the record at
//!   `repeat_at` is followed by a second record with the same offset, in the same poll.
//! * `overfill` (config `{ count, factor }`): every poll returns `factor` times the records the
//!   host asked for (until `count`), as a source ignoring `max` would.
//!
//! And a sink for a destination partly down:
//!
//! * `half_down` (config `{ path, down_while }`): appends each record's value as a line to
//!   `path`, and one line per send to `<path>.sends`. While the file `down_while` exists it
//!   answers [`Outcome::Unavailable`] for the records with an odd `"seq":` (as a Kafka producer
//!   does for a partition without a leader) and delivers the others.

use std::sync::Arc;

use serde::Deserialize;
use std::io::Write;
use std::path::PathBuf;

use sluice_sdk::{
    async_trait, Checkpoint, Origin, Outcome, Polled, Record, RecordRef, Registry, Sink, SinkError,
    Source, SourceContext, SourceError,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RepeatConfig {
    count: i64,
    repeat_at: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OverfillConfig {
    count: i64,
    factor: usize,
}

/// What the two sources share: the stream, the next offset and the commit answer.
struct Cursor {
    stream: Arc<str>,
    next: i64,
}

impl Cursor {
    fn new() -> Self {
        Cursor {
            stream: "fault".into(),
            next: 0,
        }
    }

    fn open(&mut self, ctx: &SourceContext) {
        self.next = ctx
            .checkpoints
            .get("0")
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
    }

    fn record(&self, offset: i64, seq: i64) -> Record {
        Record::new(
            format!("{{\"seq\":{seq}}}").into_bytes(),
            Origin::new(self.stream.clone(), 0, offset),
        )
    }
}

fn checkpoints(through: &[Origin]) -> Vec<Checkpoint> {
    through
        .iter()
        .map(|o| Checkpoint {
            partition: o.partition.to_string(),
            position: (o.offset + 1).to_string(),
        })
        .collect()
}

struct RepeatSource {
    cfg: RepeatConfig,
    at: Cursor,
}

#[async_trait]
impl Source for RepeatSource {
    async fn open(&mut self, ctx: SourceContext) -> Result<(), SourceError> {
        self.at.open(&ctx);
        Ok(())
    }

    async fn poll(&mut self, max: usize) -> Result<Polled, SourceError> {
        let mut out = Vec::new();
        while out.len() < max && self.at.next < self.cfg.count {
            let n = self.at.next;
            out.push(self.at.record(n, n));
            if n == self.cfg.repeat_at {
                // A second, different record claiming the same position.
                out.push(self.at.record(n, self.cfg.count + n));
            }
            self.at.next += 1;
        }
        if out.is_empty() {
            return Ok(Polled::Finished);
        }
        Ok(Polled::Records(out))
    }

    async fn commit(&mut self, through: &[Origin]) -> Result<Vec<Checkpoint>, SourceError> {
        Ok(checkpoints(through))
    }
}

struct OverfillSource {
    cfg: OverfillConfig,
    at: Cursor,
}

#[async_trait]
impl Source for OverfillSource {
    async fn open(&mut self, ctx: SourceContext) -> Result<(), SourceError> {
        self.at.open(&ctx);
        Ok(())
    }

    async fn poll(&mut self, max: usize) -> Result<Polled, SourceError> {
        let mut out = Vec::new();
        while out.len() < max.saturating_mul(self.cfg.factor) && self.at.next < self.cfg.count {
            out.push(self.at.record(self.at.next, self.at.next));
            self.at.next += 1;
        }
        if out.is_empty() {
            return Ok(Polled::Finished);
        }
        Ok(Polled::Records(out))
    }

    async fn commit(&mut self, through: &[Origin]) -> Result<Vec<Checkpoint>, SourceError> {
        Ok(checkpoints(through))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HalfDownConfig {
    path: PathBuf,
    down_while: PathBuf,
}

struct HalfDownSink {
    cfg: HalfDownConfig,
}

impl HalfDownSink {
    fn append(path: &PathBuf, text: &[u8]) -> Result<(), SinkError> {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(text))
            .map_err(|e| SinkError::Fatal(format!("{}: {e}", path.display())))
    }
}

/// Whether the value's `"seq":` number is odd (ASCII digits share their number's parity).
fn seq_is_odd(value: &[u8]) -> bool {
    let key = b"\"seq\":";
    value
        .windows(key.len())
        .position(|w| w == key)
        .and_then(|i| {
            value[i + key.len()..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .last()
        })
        .is_some_and(|d| d % 2 == 1)
}

#[async_trait]
impl Sink for HalfDownSink {
    async fn send(&self, records: &[RecordRef<'_>]) -> Result<Vec<Outcome>, SinkError> {
        let mut sends = self.cfg.path.clone().into_os_string();
        sends.push(".sends");
        Self::append(&PathBuf::from(sends), b"send\n")?;
        let down = self.cfg.down_while.exists();
        let mut out = Vec::new();
        let mut outcomes = Vec::with_capacity(records.len());
        for r in records {
            let odd = seq_is_odd(r.value());
            if down && odd {
                outcomes.push(Outcome::Unavailable(
                    "partition 1 has no leader".to_string(),
                ));
            } else {
                out.extend_from_slice(r.value());
                out.push(b'\n');
                outcomes.push(Outcome::Delivered);
            }
        }
        Self::append(&self.cfg.path, &out)?;
        Ok(outcomes)
    }
}

fn register(registry: &mut Registry) {
    registry.register_source(
        "repeat_offset",
        env!("CARGO_PKG_VERSION"),
        |cfg: RepeatConfig, _| {
            Ok(Box::new(RepeatSource {
                cfg,
                at: Cursor::new(),
            }))
        },
    );
    registry.register_source(
        "overfill",
        env!("CARGO_PKG_VERSION"),
        |cfg: OverfillConfig, _| {
            Ok(Box::new(OverfillSource {
                cfg,
                at: Cursor::new(),
            }))
        },
    );
    registry.register_sink(
        "half_down",
        env!("CARGO_PKG_VERSION"),
        |cfg: HalfDownConfig, _| Ok(Box::new(HalfDownSink { cfg })),
    );
}

sluice_sdk::export_plugin!(register);
