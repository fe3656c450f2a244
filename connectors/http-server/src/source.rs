//! The `http_server` source: serves the endpoint and hands the pipeline what its log holds.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sluice_sdk::{
    async_trait, Checkpoint, ConfigError, Origin, PartitionPosition, Polled, Record, Source,
    SourceContext, SourceError,
};
use tokio_util::sync::CancellationToken;

use crate::config::HttpServerConfig;
use crate::schema::Schema;
use crate::server::{self, tls, Ingest};
use crate::wal::{Limits, Reader, Wal};

/// The log is one partition.
pub(crate) const PARTITION: i32 = 0;

/// Reads events posted over HTTP, through the write-ahead log in `data_dir/wal/<pipeline>`.
/// A record's offset is its entry's log offset; its checkpoint is the offset after the entry.
pub struct HttpServerSource {
    cfg: HttpServerConfig,
    listen: SocketAddr,
    dir: PathBuf,
    stream: Arc<str>,
    limits: Limits,
    run: Option<Running>,
    pending: Pending,
    committed: Option<u64>,
}

/// The (offset, end) of each record handed out and not yet committed.
#[derive(Default)]
pub(crate) struct Pending(VecDeque<(i64, u64)>);

impl Pending {
    /// The records of `entries`, each remembered until committed.
    pub(crate) fn hand_out(
        &mut self,
        stream: &Arc<str>,
        entries: Vec<crate::wal::Entry>,
    ) -> Vec<Record> {
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            self.0.push_back((e.offset as i64, e.end));
            out.push(record(stream, e));
        }
        out
    }

    /// Forgets the records up to the last of `through` on the log's partition and returns the
    /// log offset after them: the position to save.
    pub(crate) fn commit(&mut self, through: &[Origin]) -> Option<u64> {
        let last = through
            .iter()
            .filter(|o| o.partition == PARTITION)
            .map(|o| o.offset)
            .max()?;
        let mut end = None;
        while let Some(&(off, e)) = self.0.front() {
            if off > last {
                break;
            }
            end = Some(e);
            self.0.pop_front();
        }
        end
    }
}

/// A record of the log's entry `e`: its offset is the entry's log offset, its timestamp the
/// receive time.
fn record(stream: &Arc<str>, e: crate::wal::Entry) -> Record {
    let mut rec = Record::new(
        e.payload,
        Origin::new(stream.clone(), PARTITION, e.offset as i64),
    );
    rec.timestamp = Some(e.ts_ms);
    rec
}

/// How often an idle source deletes the delivered segments past `retain_delivered.max_age`.
const RETIRE_EVERY: Duration = Duration::from_secs(1);

struct Running {
    wal: Arc<Wal>,
    reader: Reader,
    local: SocketAddr,
    stop: CancellationToken,
    server: Option<tokio::task::JoinHandle<()>>,
    retired: std::time::Instant,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(s) = self.server.take() {
            s.abort();
        }
        // No request may append once a later run may own the log.
        self.wal.close();
    }
}

impl HttpServerSource {
    /// Checks the configuration (no I/O: `sluice validate` builds sources too).
    pub fn new(
        cfg: HttpServerConfig,
        data_dir: &Path,
        pipeline: &str,
    ) -> Result<Self, ConfigError> {
        let listen: SocketAddr = cfg
            .listen
            .parse()
            .map_err(|e| ConfigError::at("listen", format!("`{}`: {e}", cfg.listen)))?;
        if let Some(a) = &cfg.auth {
            if a.tokens.is_empty() {
                return Err(ConfigError::at("auth.tokens", "name at least one tenant"));
            }
        }
        for (key, p) in [
            ("paths.single", &cfg.paths.single),
            ("paths.bulk", &cfg.paths.bulk),
        ] {
            if !p.starts_with('/') {
                return Err(ConfigError::at(key, "a path starts with `/`"));
            }
        }
        if cfg.paths.single == cfg.paths.bulk {
            return Err(ConfigError::at(
                "paths.bulk",
                "must differ from paths.single",
            ));
        }
        if cfg.max_events_per_request == 0 {
            return Err(ConfigError::at(
                "max_events_per_request",
                "must be at least 1",
            ));
        }
        let high_water = cfg.high_water_bytes.unwrap_or(cfg.max_bytes / 2);
        if high_water > cfg.max_bytes {
            return Err(ConfigError::at(
                "high_water_bytes",
                "must not be over max_bytes",
            ));
        }
        if cfg.segment_bytes == 0 || cfg.segment_bytes > cfg.max_bytes {
            return Err(ConfigError::at(
                "segment_bytes",
                "must be over 0 and not over max_bytes",
            ));
        }
        if let Some(m) = cfg.retain_delivered.and_then(|r| r.max_bytes) {
            if m > cfg.max_bytes {
                return Err(ConfigError::at(
                    "retain_delivered.max_bytes",
                    "must not be over max_bytes (retained segments count toward it)",
                ));
            }
        }
        if let crate::config::FsyncConfig::Interval(d) = cfg.fsync {
            if d.is_zero() {
                return Err(ConfigError::at(
                    "fsync.interval",
                    "must be over 0 (or use `fsync: always`)",
                ));
            }
        }
        Ok(HttpServerSource {
            limits: Limits {
                max_bytes: cfg.max_bytes,
                high_water_bytes: high_water,
                segment_bytes: cfg.segment_bytes,
                retain: cfg.retain_delivered.map(|r| r.retain()),
            },
            listen,
            dir: crate::wal::dir(data_dir, pipeline),
            stream: pipeline.into(),
            cfg,
            run: None,
            pending: Pending::default(),
            committed: None,
        })
    }

    /// The address the endpoint listens on, once open (the port when `listen` asked for 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.run.as_ref().map(|r| r.local)
    }

    /// The directory of the write-ahead log.
    pub fn wal_dir(&self) -> &Path {
        &self.dir
    }
}

fn fatal(e: impl std::fmt::Display) -> SourceError {
    SourceError::Fatal(e.to_string())
}

#[async_trait]
impl Source for HttpServerSource {
    async fn open(&mut self, ctx: SourceContext) -> Result<(), SourceError> {
        let committed = match ctx.checkpoints.get(&PARTITION) {
            None => None,
            Some(p) => Some(p.parse::<u64>().map_err(|_| {
                fatal(format!(
                    "stored write-ahead log position `{p}` is not a number"
                ))
            })?),
        };
        self.committed = committed;
        if let Some(a) = &self.cfg.auth {
            for (tenant, _) in a.tokens.iter().filter(|(_, s)| s.expose().is_empty()) {
                tracing::warn!(pipeline = %ctx.pipeline, %tenant, "http_server: tenant {tenant} has an empty token; its requests are refused (401)");
            }
        }
        let schema = match &self.cfg.schema {
            Some(p) => Some(Schema::load(p).map_err(fatal)?),
            None => None,
        };
        let acceptor = self
            .cfg
            .tls
            .as_ref()
            .map(tls::acceptor)
            .transpose()
            .map_err(fatal)?;
        let (dir, fsync, limits) = (self.dir.clone(), self.cfg.fsync.mode(), self.limits);
        let opened = tokio::task::spawn_blocking(move || Wal::open(&dir, committed, fsync, limits))
            .await
            .map_err(fatal)?
            .map_err(fatal)?;
        let listener = tokio::net::TcpListener::bind(self.listen)
            .await
            .map_err(|e| {
                SourceError::Unavailable(format!("http_server listen {}: {e}", self.listen))
            })?;
        let local = listener.local_addr().map_err(fatal)?;
        let ingest = Arc::new(Ingest::new(
            &self.cfg,
            &ctx.pipeline,
            opened.wal.clone(),
            schema,
            ctx.health.clone(),
        ));
        let app = server::router(ingest, &self.cfg.paths.single, &self.cfg.paths.bulk);
        let stop = CancellationToken::new();
        let s = stop.clone();
        let scheme = if acceptor.is_some() { "https" } else { "http" };
        let server = tokio::spawn(async move {
            let done = s.clone();
            let result = match acceptor {
                None => {
                    axum::serve(listener, app)
                        .with_graceful_shutdown(async move { done.cancelled().await })
                        .await
                }
                Some(acceptor) => {
                    let tls = tls::TlsListener::start(listener, acceptor, s.clone(), "http_server");
                    axum::serve(tls, app)
                        .with_graceful_shutdown(async move { done.cancelled().await })
                        .await
                }
            };
            if let Err(e) = result {
                tracing::error!(error = %e, "http_server stopped serving");
            }
        });
        tracing::info!(
            pipeline = %ctx.pipeline,
            listen = %local,
            wal = %self.dir.display(),
            position = opened.start,
            "http_server listening on {scheme}://{local}, write-ahead log resumed at offset {}",
            opened.start
        );
        self.run = Some(Running {
            wal: opened.wal,
            reader: opened.reader,
            local,
            stop,
            server: Some(server),
            retired: std::time::Instant::now(),
        });
        Ok(())
    }

    async fn poll(&mut self, max: usize) -> Result<Polled, SourceError> {
        let Some(run) = self.run.as_mut() else {
            return Err(fatal("http_server polled before open"));
        };
        let mut entries = run.reader.read(max).map_err(fatal)?;
        if entries.is_empty() {
            if let Some(why) = run.wal.failure() {
                return Err(fatal(format!("write-ahead log failed: {why}")));
            }
            let ages = self.limits.retain.is_some_and(|r| r.max_age.is_some());
            if ages && run.retired.elapsed() >= RETIRE_EVERY {
                run.retired = std::time::Instant::now();
                let wal = run.wal.clone();
                tokio::task::spawn_blocking(move || wal.retire())
                    .await
                    .map_err(fatal)?
                    .map_err(fatal)?;
            }
            run.reader.wait(Duration::from_millis(100)).await;
            entries = run.reader.read(max).map_err(fatal)?;
            if entries.is_empty() {
                return Ok(Polled::Idle);
            }
        }
        Ok(Polled::Records(
            self.pending.hand_out(&self.stream, entries),
        ))
    }

    async fn commit(&mut self, through: &[Origin]) -> Result<Vec<Checkpoint>, SourceError> {
        let Some(end) = self.pending.commit(through) else {
            return Ok(Vec::new());
        };
        self.committed = Some(end);
        if let Some(run) = &self.run {
            run.wal.commit(end).map_err(fatal)?;
        }
        Ok(vec![Checkpoint {
            partition: PARTITION,
            position: end.to_string(),
        }])
    }

    fn positions(&self) -> Option<Vec<PartitionPosition>> {
        let run = self.run.as_ref()?;
        Some(vec![PartitionPosition {
            stream: self.stream.to_string(),
            partition: PARTITION,
            committed: self.committed.map(|c| c as i64),
            end: Some(run.wal.durable_end() as i64),
            lag: None,
        }])
    }

    async fn close(&mut self) -> Result<(), SourceError> {
        if let Some(mut run) = self.run.take() {
            run.stop.cancel();
            if let Some(server) = run.server.take() {
                let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
            }
            // The writer finishes its last fsync off the runtime's threads.
            let wal = run.wal.clone();
            let _ = tokio::task::spawn_blocking(move || wal.close()).await;
            drop(run);
        }
        Ok(())
    }
}
