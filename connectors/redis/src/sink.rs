//! The `redis` sink: each batch is one pipeline (no MULTI), sent in one round trip.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sluice_sdk::{
    async_trait, Health, Outcome, Outcomes, RecordRef, Sink, SinkContext, SinkError, Verdict,
};
use tokio::sync::Mutex;

use crate::config::{RedisConfig, Settings};
use crate::encoder;
use crate::response;

/// Writes records to Redis as stream entries, hashes, list items, messages or keys.
pub struct RedisSink {
    client: redis::Client,
    tls: bool,
    settings: Settings,
    connect_timeout: Duration,
    request_timeout: Duration,
    health: Health,
    /// Created on the first successful connection; it reconnects by itself afterwards.
    conn: Mutex<Option<ConnectionManager>>,
}

impl RedisSink {
    /// Checks the configuration; connects only in `open`.
    pub fn new(cfg: RedisConfig) -> Result<Self, sluice_sdk::ConfigError> {
        let settings = cfg.settings()?;
        let client = redis::Client::open(cfg.url.expose())
            .map_err(|_| sluice_sdk::ConfigError::at("url", "not a valid Redis URL"))?;
        Ok(RedisSink {
            tls: cfg.url.expose().starts_with("rediss:"),
            client,
            settings,
            connect_timeout: cfg.connect_timeout,
            request_timeout: cfg.request_timeout,
            health: Health::new(),
            conn: Mutex::new(None),
        })
    }

    async fn connection(&self) -> Result<ConnectionManager, SinkError> {
        let mut guard = self.conn.lock().await;
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        if self.tls {
            // redis-rs builds its rustls config from the process default provider; make
            // sure there is one (no-op when the host already installed one).
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(self.connect_timeout)
            .set_response_timeout(self.request_timeout)
            .set_number_of_retries(1);
        let c = tokio::time::timeout(
            self.connect_timeout * 2,
            ConnectionManager::new_with_config(self.client.clone(), config),
        )
        .await
        .map_err(|_| SinkError::unavailable("Redis: connection timed out"))?
        .map_err(|e| response::batch(&e))?;
        *guard = Some(c.clone());
        Ok(c)
    }

    async fn write(&self, records: &[RecordRef<'_>]) -> Result<Vec<Outcome>, SinkError> {
        let mut outcomes = Outcomes::new(records.len());
        let enc = encoder::encode(&self.settings, records, &mut outcomes);
        if enc.commands > 0 {
            let mut conn = self.connection().await?;
            let replies = tokio::time::timeout(
                self.request_timeout,
                conn.send_packed_commands(&enc.pipe, 0, enc.commands),
            )
            .await
            .map_err(|_| {
                SinkError::unavailable(format!(
                    "Redis did not answer within {:?}",
                    self.request_timeout
                ))
            })?
            .map_err(|e| response::batch(&e))?;
            if replies.len() != enc.commands {
                return Err(SinkError::unavailable(format!(
                    "Redis answered {} of {} commands",
                    replies.len(),
                    enc.commands
                )));
            }
            let mut at = 0;
            for &(record, n) in &enc.spans {
                let mut outcome = Outcome::Delivered;
                for v in &replies[at..at + n] {
                    match response::reply(v) {
                        Verdict::Delivered(()) => {}
                        Verdict::Rejected(rejection) => {
                            outcome = Outcome::Reject(rejection);
                            break;
                        }
                        Verdict::Failed(e) => return Err(e),
                    }
                }
                outcomes.set(record, outcome);
                at += n;
            }
        }
        Ok(outcomes.finish())
    }
}

#[async_trait]
impl Sink for RedisSink {
    async fn open(&mut self, ctx: SinkContext) -> Result<(), SinkError> {
        self.health = ctx.health;
        match self.connection().await {
            Ok(_) => {
                self.health.set_healthy();
                Ok(())
            }
            Err(e) => {
                self.health.set_unhealthy(e.to_string());
                Err(e)
            }
        }
    }

    async fn send(&self, records: &[RecordRef<'_>]) -> Result<Vec<Outcome>, SinkError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        match self.write(records).await {
            Ok(outcomes) => {
                self.health.set_healthy();
                Ok(outcomes)
            }
            Err(e) => {
                self.health.set_unhealthy(e.to_string());
                Err(e)
            }
        }
    }
}
