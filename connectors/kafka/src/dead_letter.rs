//! The `kafka` dead-letter queue: the original key, value, headers and timestamp, plus Kafka
//! Connect's `__connect.errors.*` context headers, so any Kafka tool reads it.

use std::sync::Arc;

use async_trait::async_trait;
use futures::future::join_all;
use rdkafka::ClientConfig;
use sluice_sdk::{ConfigError, DeadLetter, DeadLetterError, DeadLetterWriter};
use tokio::sync::OnceCell;

use crate::config::{producer_config, DeadLetterConfig};
use crate::context::ClientState;
use crate::produce::{delivered, KafkaProducer, Outgoing};

/// Appended to the source topic when no DLQ topic is configured.
const DEFAULT_SUFFIX: &str = ".dlq";

/// Writes dead letters to Kafka and returns only once every one was acknowledged.
pub struct KafkaDeadLetter {
    client_config: ClientConfig,
    topic: Option<String>,
    /// Created on first use: factories do no I/O (`sluice validate` builds every DLQ).
    producer: OnceCell<KafkaProducer>,
}

impl KafkaDeadLetter {
    pub fn new(config: DeadLetterConfig, pipeline: &str) -> Result<Self, ConfigError> {
        if config.topic.as_deref() == Some("") {
            return Err(ConfigError::at("topic", "must not be empty"));
        }
        let client_config = producer_config(
            &config.brokers,
            &config.options,
            &format!("sluice-{pipeline}-dlq"),
        )?;
        Ok(KafkaDeadLetter {
            client_config,
            topic: config.topic,
            producer: OnceCell::new(),
        })
    }

    async fn producer(&self) -> Result<&KafkaProducer, DeadLetterError> {
        self.producer
            .get_or_try_init(|| async {
                KafkaProducer::create(
                    &self.client_config,
                    ClientState::new(
                        "dlq producer",
                        self.client_config
                            .get("bootstrap.servers")
                            .unwrap_or_default(),
                    ),
                )
                .map_err(|e| DeadLetterError(format!("kafka producer: {e}")))
            })
            .await
    }
}

#[async_trait]
impl DeadLetterWriter for KafkaDeadLetter {
    async fn write(&self, letters: &[DeadLetter<'_>]) -> Result<(), DeadLetterError> {
        let producer = self.producer().await?;
        let mut pending = Vec::with_capacity(letters.len());
        for letter in letters {
            let record = letter.record;
            let topic: Arc<str> = match &self.topic {
                Some(t) => Arc::from(t.as_str()),
                None => Arc::from(format!("{}{DEFAULT_SUFFIX}", record.origin.stream)),
            };
            let context = letter.context_headers();
            let p = producer
                .enqueue(Outgoing {
                    topic: &topic,
                    key: record.key.as_deref(),
                    value: &record.value,
                    headers: record.view().headers(),
                    extra_headers: &context,
                    timestamp: record.timestamp,
                })
                .await;
            pending.push((topic, p));
        }
        let results = join_all(
            pending
                .into_iter()
                .map(|(topic, p)| async move { (topic, delivered(p).await) }),
        )
        .await;
        let mut failed = results
            .iter()
            .filter_map(|(t, r)| r.as_ref().err().map(|e| (t, e)));
        if let Some((topic, first)) = failed.next() {
            let more = failed.count();
            return Err(DeadLetterError(format!(
                "kafka DLQ topic `{topic}`: {first}{}",
                if more > 0 {
                    format!(" (and {more} more failures)")
                } else {
                    String::new()
                }
            )));
        }
        Ok(())
    }
}
