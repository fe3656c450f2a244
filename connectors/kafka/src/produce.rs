//! Producing messages: enqueue one message per record in order, then await every delivery
//! report of the batch together. Shared by the sink and the dead-letter queue.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::future_producer::OwnedDeliveryResult;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;
use sluice_sdk::Headers;

use crate::context::{ClientState, Context};

/// How long to wait before offering a message again when librdkafka's queue is full.
const QUEUE_FULL_PAUSE: Duration = Duration::from_millis(5);

/// A producer plus what its context learns (health).
pub struct KafkaProducer {
    inner: FutureProducer<Context>,
    pub state: Arc<ClientState>,
}

/// One message to produce, borrowing from the record.
pub struct Outgoing<'a> {
    pub topic: &'a str,
    pub key: Option<&'a [u8]>,
    pub value: &'a [u8],
    pub headers: Headers<'a>,
    /// Added after the record's own headers (DLQ context).
    pub extra_headers: &'a [(&'static str, String)],
    pub timestamp: Option<i64>,
}

impl KafkaProducer {
    pub fn create(config: &ClientConfig, state: Arc<ClientState>) -> Result<Self, KafkaError> {
        let inner = config.create_with_context(Context::new(state.clone()))?;
        Ok(KafkaProducer { inner, state })
    }

    /// Hands one message to librdkafka, waiting while its queue is full so messages of a
    /// batch keep their order. The returned future resolves with the delivery report.
    pub async fn enqueue(&self, msg: Outgoing<'_>) -> Result<DeliveryFuture, KafkaError> {
        let mut record = FutureRecord::<[u8], [u8]>::to(msg.topic).payload(msg.value);
        if let Some(k) = msg.key {
            record = record.key(k);
        }
        if let Some(ts) = msg.timestamp {
            record = record.timestamp(ts);
        }
        let header_count = msg.headers.len() + msg.extra_headers.len();
        if header_count > 0 {
            let mut hs = OwnedHeaders::new_with_capacity(header_count);
            for h in msg.headers.iter() {
                hs = hs.insert(KafkaHeader {
                    key: h.key,
                    value: h.value,
                });
            }
            for (k, v) in msg.extra_headers {
                hs = hs.insert(KafkaHeader {
                    key: k,
                    value: Some(v.as_bytes()),
                });
            }
            record = record.headers(hs);
        }
        loop {
            match self.inner.send_result(record) {
                Ok(delivery) => return Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(QUEUE_FULL_PAUSE).await;
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// The producer's fatal error, if librdkafka raised one (idempotence guarantees lost).
    pub fn fatal_error(&self) -> Option<String> {
        self.inner
            .client()
            .fatal_error()
            .map(|(code, reason)| format!("{code}: {reason}"))
    }

    /// Waits for what is still queued, off the async workers.
    pub async fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.flush(timeout))
            .await
            .map_err(|_| KafkaError::Canceled)?
    }
}

/// A delivery report as a plain result.
pub async fn delivered(pending: Result<DeliveryFuture, KafkaError>) -> Result<(), KafkaError> {
    let future = pending?;
    match future.await {
        Ok(OwnedDeliveryResult::Ok(_)) => Ok(()),
        Ok(Err((e, _message))) => Err(e),
        Err(_canceled) => Err(KafkaError::Canceled),
    }
}
