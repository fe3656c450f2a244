//! The `kafka` sink: an idempotent producer. Every record of a batch is enqueued in order,
//! then all delivery reports are awaited together and turned into per-record outcomes.

use std::borrow::Cow;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::join_all;
use rdkafka::error::KafkaError;
use rdkafka::ClientConfig;
use sluice_sdk::template::Template;
use sluice_sdk::{json, ConfigError, Outcome, RecordRef, Sink, SinkContext, SinkError};

use crate::config::{producer_config, SinkConfig};
use crate::context::ClientState;
use crate::produce::{delivered, KafkaProducer, Outgoing};
use crate::response;

/// Where one record goes.
struct Route<'a> {
    topic: Cow<'a, str>,
    key: Option<Cow<'a, [u8]>>,
}

/// Writes records to a topic (fixed or per record).
pub struct KafkaSink {
    client_config: ClientConfig,
    topic: Template,
    key_field: Option<String>,
    producer: Option<KafkaProducer>,
}

impl KafkaSink {
    pub fn new(config: SinkConfig, pipeline: &str) -> Result<Self, ConfigError> {
        if config.topic.constant() == Some("") {
            return Err(ConfigError::at("topic", "must not be empty"));
        }
        let client_config = producer_config(
            &config.brokers,
            &config.options,
            &format!("sluice-{pipeline}"),
        )?;
        Ok(KafkaSink {
            client_config,
            topic: config.topic,
            key_field: config.key_field,
            producer: None,
        })
    }

    /// Topic and key of one record; fields are read only when the configuration needs them.
    fn route<'a>(&'a self, record: &RecordRef<'a>) -> Result<Route<'a>, Outcome> {
        if self.topic.is_constant() && self.key_field.is_none() {
            return Ok(Route {
                topic: Cow::Borrowed(self.topic.constant().unwrap_or_default()),
                key: record.key().map(Cow::Borrowed),
            });
        }
        let value = record.json().map_err(|e| {
            Outcome::reject("kafka.value_not_json", format!("value is not JSON: {e}"))
        })?;
        let topic = match self.topic.render(&value) {
            Ok(t) => Cow::Owned(t.into_owned()),
            Err(e) => return Err(Outcome::reject("kafka.topic_field_missing", e.to_string())),
        };
        let key = match &self.key_field {
            None => record.key().map(Cow::Borrowed),
            Some(field) => {
                let text = json::get(&value, field)
                    .and_then(json::as_text)
                    .ok_or_else(|| {
                        Outcome::reject(
                            "kafka.key_field_missing",
                            format!("key field `{field}` is missing or not a scalar"),
                        )
                    })?;
                Some(Cow::Owned(text.into_owned().into_bytes()))
            }
        };
        Ok(Route { topic, key })
    }
}

#[async_trait]
impl Sink for KafkaSink {
    async fn open(&mut self, ctx: SinkContext) -> Result<(), SinkError> {
        let state = ClientState::new(
            "producer",
            self.client_config
                .get("bootstrap.servers")
                .unwrap_or_default(),
        );
        state.attach(ctx.health.clone());
        let producer = KafkaProducer::create(&self.client_config, state)
            .map_err(|e| SinkError::Fatal(format!("kafka producer: {e}")))?;
        self.producer = Some(producer);
        Ok(())
    }

    async fn send(&self, records: &[RecordRef<'_>]) -> Result<Vec<Outcome>, SinkError> {
        let producer = self
            .producer
            .as_ref()
            .ok_or_else(|| SinkError::Fatal("kafka sink used before open".into()))?;
        if let Some(fatal) = producer.fatal_error() {
            return Err(SinkError::Fatal(format!(
                "kafka producer unusable: {fatal}"
            )));
        }
        // Refused before sending (template, key field), or waiting for a delivery report.
        let mut pending = Vec::with_capacity(records.len());
        for record in records {
            let slot = match self.route(record) {
                Err(outcome) => Err(outcome),
                Ok(route) => Ok(producer
                    .enqueue(Outgoing {
                        topic: &route.topic,
                        key: route.key.as_deref(),
                        value: record.value(),
                        headers: record.headers(),
                        extra_headers: &[],
                        timestamp: record.timestamp(),
                    })
                    .await),
            };
            pending.push(slot);
        }
        let reports = join_all(pending.into_iter().map(|slot| async move {
            match slot {
                Err(outcome) => Err(outcome),
                Ok(p) => Ok(delivered(p).await),
            }
        }))
        .await;

        let failures: Vec<&KafkaError> = reports
            .iter()
            .filter_map(|r| match r {
                Ok(Err(e)) => Some(e),
                _ => None,
            })
            .collect();
        if let Some(e) = response::batch_error(&failures, records.len()) {
            return Err(e);
        }
        if reports.iter().any(|r| matches!(r, Ok(Ok(())))) {
            producer.state.mark_working();
        }
        Ok(reports
            .into_iter()
            .map(|r| match r {
                Err(refused) => refused,
                Ok(Ok(())) => Outcome::Delivered,
                Ok(Err(e)) => response::outcome(&e),
            })
            .collect())
    }

    async fn close(&self) -> Result<(), SinkError> {
        if let Some(p) = &self.producer {
            p.flush(Duration::from_secs(10))
                .await
                .map_err(|e| SinkError::unavailable(format!("kafka flush: {e}")))?;
        }
        Ok(())
    }
}
