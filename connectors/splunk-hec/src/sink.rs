//! The `splunk_hec` sink: encode a batch ([`crate::encoder`]), send it in requests under the
//! byte cap ([`crate::request`]), read the answers ([`crate::response`]), wait for
//! acknowledgements, and answer the host per record.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use sluice_sdk::http::Deprecations;
use sluice_sdk::{
    ConfigError, Health, Outcome, Outcomes, RecordRef, Sink, SinkContext, SinkError, Verdict,
};
use tokio::task::JoinHandle;

use crate::acknowledgements::{Acks, Waiter};
use crate::config::HecConfig;
use crate::encoder::{Encoded, Encoder};
use crate::request::Requester;
use crate::response::{classify, transport_error, HecVerdict, Indexed};

/// Batches in flight by default when acknowledgements are on: each batch waits about one poll
/// interval for its ack, so throughput needs several at once.
const ACK_CONCURRENCY: usize = 8;

/// Batches in flight by default without acknowledgements: the encoding and compression of one
/// overlap the round trip of the other. Events carry their own time, so Splunk does not need
/// batches in order.
const CONCURRENCY: usize = 2;

/// Sends records to Splunk HEC.
pub struct HecSink {
    config: HecConfig,
    bases: Vec<String>,
    encoder: Encoder,
    channel: String,
    deprecations: Deprecations,
    conn: Option<Connection>,
}

/// What `open` sets up.
struct Connection {
    requester: Arc<Requester>,
    acks: Option<Arc<Acks>>,
    poller: Option<JoinHandle<()>>,
    health: Health,
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(p) = &self.poller {
            p.abort();
        }
    }
}

impl HecSink {
    /// Checks the configuration; no I/O.
    pub fn new(config: HecConfig) -> Result<Self, ConfigError> {
        let bases = config.validate()?;
        let deprecations = config.deprecations()?;
        let encoder = Encoder::new(&config);
        Ok(HecSink {
            config,
            bases,
            encoder,
            // One channel per sink instance: ackIds are scoped to it.
            channel: uuid::Uuid::new_v4().to_string(),
            deprecations,
            conn: None,
        })
    }

    /// The channel GUID sent with every request.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// Sends one chunk, trying each endpoint in turn while the answer is "unavailable".
    async fn post(
        &self,
        conn: &Connection,
        body: Bytes,
        events: usize,
    ) -> Result<(usize, HecVerdict), SinkError> {
        let req = &conn.requester;
        let mut last = None;
        for ep in req.order() {
            let base = req.base(ep);
            let answer = match req.post_events(ep, body.clone()).await {
                Ok(r) => classify(base, r.status.as_u16(), r.retry_after(), &r.body, events),
                Err(e) => Verdict::Failed(transport_error(base, &e)),
            };
            match answer {
                Verdict::Failed(e @ SinkError::Unavailable { .. }) => {
                    if req.endpoint_count() > 1 {
                        tracing::debug!(error = %e, "splunk_hec: trying the next endpoint");
                    }
                    last = Some(e);
                }
                Verdict::Failed(e) => return Err(e),
                taken => return Ok((ep, taken)),
            }
        }
        Err(last.unwrap_or_else(|| SinkError::unavailable("no HEC endpoint configured")))
    }
}

#[async_trait]
impl Sink for HecSink {
    async fn open(&mut self, ctx: SinkContext) -> Result<(), SinkError> {
        self.deprecations.warn("splunk_hec");
        let requester = Arc::new(Requester::new(&self.config, &self.bases, &self.channel)?);
        for base in &self.bases {
            if let Ok(url) = url::Url::parse(base) {
                sluice_sdk::http::warn_if_cleartext("splunk_hec", &url, "the HEC token");
            }
        }
        let (acks, poller) = if self.config.acknowledgements {
            let acks = Arc::new(Acks::new(
                self.config.ack_poll_interval,
                self.config.ack_timeout,
            ));
            let task = tokio::spawn(acks.clone().run(requester.clone(), ctx.health.clone()));
            (Some(acks), Some(task))
        } else {
            (None, None)
        };
        tracing::debug!(
            pipeline = %ctx.pipeline,
            endpoints = self.bases.len(),
            channel = %self.channel,
            acknowledgements = self.config.acknowledgements,
            "splunk_hec sink opened"
        );
        self.conn = Some(Connection {
            requester,
            acks,
            poller,
            health: ctx.health,
        });
        Ok(())
    }

    async fn send(&self, records: &[RecordRef<'_>]) -> Result<Vec<Outcome>, SinkError> {
        let conn = self
            .conn
            .as_ref()
            .ok_or_else(|| SinkError::Fatal("splunk_hec: send before open".into()))?;
        let Encoded {
            body: encoded,
            chunks,
            events,
            mut outcomes,
        } = self.encoder.encode(records);
        let encoded = Bytes::from(encoded);
        let mut waits: Vec<(Range<usize>, Waiter)> = Vec::new();
        let mut accepted_any = false;

        for (i, chunk) in chunks.iter().enumerate() {
            let body = conn.requester.body(&encoded, chunk.bytes.clone())?;
            let (ep, answer) = match self.post(conn, body, chunk.events.len()).await {
                Ok(taken) => taken,
                Err(e) => {
                    if let SinkError::Unauthorized(m) | SinkError::Unavailable { message: m, .. } =
                        &e
                    {
                        conn.health.set_unhealthy(m.clone());
                    }
                    if i == 0 || matches!(e, SinkError::Fatal(_)) {
                        // Nothing of this batch reached HEC: the host keeps it whole.
                        return Err(e);
                    }
                    // Earlier requests went through; the rest met an outage, not a refusal:
                    // the host resends it without counting an attempt against the records.
                    let rest = Outcome::Unavailable(e.to_string());
                    outcomes.set_each(events[chunk.events.start..].iter().copied(), &rest);
                    break;
                }
            };
            accepted_any |= matches!(answer, Verdict::Delivered(_));
            if let Some(wait) = record_answer(
                conn,
                ep,
                chunk.events.clone(),
                &events,
                answer,
                &mut outcomes,
            )? {
                waits.push(wait);
            }
        }
        if accepted_any {
            conn.health.set_healthy();
        }
        if let Some(acks) = &conn.acks {
            // The waits run concurrently: the poller completes them all.
            for (range, waiter) in waits {
                let o = match acks.wait(waiter).await {
                    Ok(()) => Outcome::Delivered,
                    Err(reason) => Outcome::Retry(reason.to_string()),
                };
                outcomes.set_each(events[range].iter().copied(), &o);
            }
        }
        Ok(outcomes.finish())
    }

    fn default_concurrency(&self) -> usize {
        if self.config.acknowledgements {
            ACK_CONCURRENCY
        } else {
            CONCURRENCY
        }
    }

    async fn close(&self) -> Result<(), SinkError> {
        if let Some(p) = self.conn.as_ref().and_then(|c| c.poller.as_ref()) {
            p.abort();
        }
        Ok(())
    }
}

/// Writes what one request's answer means into `outcomes`: `range` are its events (indexes
/// into `events`, the record of each event). An answer whose ackId is still to come is
/// returned to be waited for.
fn record_answer(
    conn: &Connection,
    ep: usize,
    range: Range<usize>,
    events: &[usize],
    answer: HecVerdict,
    outcomes: &mut Outcomes,
) -> Result<Option<(Range<usize>, Waiter)>, SinkError> {
    let records = |r: Range<usize>| events[r].iter().copied();
    match answer {
        Verdict::Delivered(Indexed::All { ack_id }) => match (&conn.acks, ack_id) {
            (Some(acks), Some(id)) => return Ok(Some((range, acks.register(ep, id)))),
            (Some(acks), None) => {
                acks.trusting_200(conn.requester.base(ep));
                outcomes.set_each(records(range), &Outcome::Delivered);
            }
            (None, _) => outcomes.set_each(records(range), &Outcome::Delivered),
        },
        Verdict::Delivered(Indexed::UpTo { index, rejection }) => {
            // HEC indexed the events before the bad one and none after it.
            let bad = range.start + index;
            outcomes.set_each(records(range.start..bad), &Outcome::Delivered);
            outcomes.reject(events[bad], rejection);
            // Never attempted: resent without counting an attempt against them.
            let retry = Outcome::Unavailable(format!(
                "not indexed: HEC stopped at an invalid event earlier in the request (event {index})"
            ));
            outcomes.set_each(records(bad + 1..range.end), &retry);
        }
        Verdict::Rejected(rejection) => {
            outcomes.set_each(records(range), &Outcome::Reject(rejection))
        }
        Verdict::Failed(e) => return Err(e),
    }
    Ok(None)
}
