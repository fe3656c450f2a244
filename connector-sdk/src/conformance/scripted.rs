//! Connectors whose answers are scripted by the records themselves, to check that every kind
//! of outcome, error, panic and every record field crosses a plugin boundary intact. The same
//! code is registered in-process and exported by the `sluice-test-plugin` library.
//!
//! Sink `conformance` (config `{ path }`): a record whose value starts with `retry` is
//! answered `Retry`, `reject` is rejected, anything else is delivered and described as one
//! JSON line appended to `path` (see [`describe`]). A value starting with
//! `error:unavailable|unauthorized|too_large|fatal` fails the whole batch that way (and marks
//! the sink unhealthy while unavailable); `panic` panics.
//!
//! Source `conformance` (config `{ count, partitions }`): `count` records over `partitions`
//! partitions of stream `conformance`, with keys, headers, timestamps and a decode error on
//! every tenth; resumes from its checkpoints (next offset per partition).

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::{
    async_trait, Checkpoint, Header, Health, Origin, Outcome, Polled, Record, RecordRef, Registry,
    Sink, SinkContext, SinkError, Source, SourceContext, SourceError,
};
use base64::Engine;
use parking_lot::Mutex;
use serde::Deserialize;

/// Type name of both scripted connectors.
pub const TYPE: &str = "conformance";

/// Registers the scripted sink and source.
pub fn register(registry: &mut Registry) {
    registry.register_sink(TYPE, "1.0.0", |cfg: SinkConfig, _| {
        Ok(Box::new(ScriptedSink {
            path: cfg.path,
            health: Mutex::new(None),
        }))
    });
    registry.register_source(TYPE, "1.0.0", |cfg: SourceConfig, _| {
        Ok(Box::new(ScriptedSource {
            cfg,
            stream: Arc::from(TYPE),
            next: Vec::new(),
        }))
    });
}

/// One line describing every field of a record, so both ends of a boundary can be compared.
pub fn describe(r: &Record) -> String {
    describe_with(&r.view(), r.decode_error.as_deref())
}

/// [`describe`] of a record as a sink reads it (a sink never sees a decode error).
fn describe_with(r: &RecordRef<'_>, decode_error: Option<&str>) -> String {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    serde_json::json!({
        "key": r.key().map(b64),
        "value": b64(r.value()),
        "headers": r.headers().iter()
            .map(|h| (h.key, h.value.map(b64)))
            .collect::<Vec<_>>(),
        "timestamp": r.timestamp(),
        "stream": r.origin().stream,
        "partition": r.origin().partition,
        "offset": r.origin().offset,
        "decode_error": decode_error,
    })
    .to_string()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    pub path: PathBuf,
}

struct ScriptedSink {
    path: PathBuf,
    health: Mutex<Option<Health>>,
}

/// One description per record, in order.
fn describe_all(records: &[RecordRef<'_>]) -> Vec<String> {
    records.iter().map(|r| describe_with(r, None)).collect()
}

impl ScriptedSink {
    /// The scripted answer to a batch, appending the descriptions of what it delivers.
    fn write(
        &self,
        records: &[RecordRef<'_>],
        descriptions: Vec<String>,
    ) -> Result<Vec<Outcome>, SinkError> {
        for r in records {
            let v = r.value();
            if v.starts_with(b"panic") {
                panic!("scripted panic on record {}", r.origin().offset);
            }
            if v.starts_with(b"error:unavailable") {
                self.set_health(Some("scripted outage"));
                return Err(SinkError::Unavailable {
                    message: "scripted outage".into(),
                    retry_after: Some(Duration::from_millis(1500)),
                });
            }
            if v.starts_with(b"error:unauthorized") {
                return Err(SinkError::Unauthorized("scripted bad token".into()));
            }
            if v.starts_with(b"error:too_large") {
                return Err(SinkError::TooLarge("scripted 413".into()));
            }
            if v.starts_with(b"error:fatal") {
                return Err(SinkError::Fatal("scripted fatal".into()));
            }
        }
        let mut lines = String::new();
        let outcomes = records
            .iter()
            .zip(descriptions)
            .map(|(r, description)| {
                if r.value().starts_with(b"retry") {
                    Outcome::Retry(format!("scripted retry of {}", r.origin().offset))
                } else if r.value().starts_with(b"reject") {
                    Outcome::reject(
                        "conformance.reject",
                        format!("scripted rejection of {}", r.origin().offset),
                    )
                } else {
                    lines.push_str(&description);
                    lines.push('\n');
                    Outcome::Delivered
                }
            })
            .collect();
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut f| f.write_all(lines.as_bytes()))
            .map_err(|e| SinkError::unavailable(format!("{}: {e}", self.path.display())))?;
        self.set_health(None);
        Ok(outcomes)
    }

    fn set_health(&self, problem: Option<&str>) {
        if let Some(h) = self.health.lock().as_ref() {
            match problem {
                Some(p) => h.set_unhealthy(p),
                None => h.set_healthy(),
            }
        }
    }
}

#[async_trait]
impl Sink for ScriptedSink {
    async fn open(&mut self, ctx: SinkContext) -> Result<(), SinkError> {
        *self.health.lock() = Some(ctx.health);
        Ok(())
    }

    async fn send(&self, records: &[RecordRef<'_>]) -> Result<Vec<Outcome>, SinkError> {
        self.write(records, describe_all(records))
    }

    fn default_concurrency(&self) -> usize {
        3
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub count: i64,
    #[serde(default = "two")]
    pub partitions: i32,
    /// `poll` panics when it reaches this record number.
    #[serde(default)]
    pub panic_at: Option<i64>,
    /// `open` fails with this error: `unavailable`, `unauthorized` or `fatal`.
    #[serde(default)]
    pub fail_open: Option<String>,
}

fn two() -> i32 {
    2
}

struct ScriptedSource {
    cfg: SourceConfig,
    stream: Arc<str>,
    /// Next offset per partition.
    next: Vec<i64>,
}

impl ScriptedSource {
    /// Record number `n` lives in partition `n % partitions` at offset `n / partitions`.
    fn record(&self, n: i64) -> Record {
        let p = self.cfg.partitions as i64;
        let mut r = Record::new(
            format!("{{\"n\":{n},\"text\":\"événement {n}\"}}").into_bytes(),
            Origin::new(self.stream.clone(), (n % p) as i32, n / p),
        );
        if n % 2 == 0 {
            r.key = Some(format!("key-{n}").into_bytes().into());
        }
        if n % 3 == 0 {
            r.headers = vec![
                Header::new("n", n.to_string()),
                Header {
                    key: "empty".into(),
                    value: None,
                },
            ];
        }
        if n % 4 != 1 {
            r.timestamp = Some(1_700_000_000_000 + n);
        }
        if n % 10 == 9 {
            r.decode_error = Some(format!("scripted decode error {n}").into());
        }
        r
    }

    fn lag(&self) -> i64 {
        let p = self.cfg.partitions as i64;
        (0..p)
            .map(|i| {
                let total = (self.cfg.count - i + p - 1) / p;
                (total - self.next[i as usize]).max(0)
            })
            .sum()
    }
}

#[async_trait]
impl Source for ScriptedSource {
    async fn open(&mut self, ctx: SourceContext) -> Result<(), SourceError> {
        match self.cfg.fail_open.as_deref() {
            None => {}
            Some("unavailable") => return Err(SourceError::Unavailable("scripted outage".into())),
            Some("unauthorized") => {
                return Err(SourceError::Unauthorized("scripted bad token".into()))
            }
            Some(_) => return Err(SourceError::Fatal("scripted fatal".into())),
        }
        let p = self.cfg.partitions.max(1);
        self.cfg.partitions = p;
        self.next = (0..p)
            .map(|i| {
                ctx.checkpoints
                    .get(&i)
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0)
            })
            .collect();
        Ok(())
    }

    async fn poll(&mut self, max: usize) -> Result<Polled, SourceError> {
        let p = self.cfg.partitions as i64;
        // Interleave partitions in record-number order.
        let mut n_next: Vec<i64> = (0..p).map(|i| self.next[i as usize] * p + i).collect();
        let mut out = Vec::new();
        while out.len() < max {
            let Some((i, &n)) = n_next.iter().enumerate().min_by_key(|(_, n)| **n) else {
                break;
            };
            if n >= self.cfg.count {
                break;
            }
            if self.cfg.panic_at == Some(n) {
                panic!("scripted source panic at record {n}");
            }
            out.push(self.record(n));
            self.next[i] += 1;
            n_next[i] += p;
        }
        if out.is_empty() {
            return Ok(Polled::Finished);
        }
        Ok(Polled::Records(out))
    }

    async fn commit(&mut self, through: &[Origin]) -> Result<Vec<Checkpoint>, SourceError> {
        Ok(through
            .iter()
            .map(|o| Checkpoint {
                partition: o.partition,
                position: (o.offset + 1).to_string(),
            })
            .collect())
    }

    fn lag(&self) -> Option<u64> {
        if self.next.is_empty() {
            return None;
        }
        Some(self.lag() as u64)
    }
}

/// Checkpoint positions as the host would hand them back on the next open.
pub fn checkpoint_map(checkpoints: &[Checkpoint]) -> HashMap<i32, String> {
    checkpoints
        .iter()
        .map(|c| (c.partition, c.position.clone()))
        .collect()
}
