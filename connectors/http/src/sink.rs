//! The sink: one call per record (with `ordering: partition`, records of a source partition
//! one after another, up to `max_in_flight` partitions at once; with `ordering: none`, up to
//! `max_in_flight` records at once), or one call per batch.

use std::collections::HashMap;

use futures::stream::{self, StreamExt};
use sluice_sdk::{
    async_trait, ConfigError, Health, Outcome, Outcomes, RecordRef, Sink, SinkContext, SinkError,
    Verdict,
};

use crate::auth::Authorizer;
use crate::body::BatchFormat;
use crate::config::{HttpConfig, Ordering};
use crate::request::{Api, Shape};
use crate::response::{Answer, Answers};

/// Calls a REST API for each record (or batch).
pub struct HttpSink {
    config: HttpConfig,
    shape: Shape,
    answers: Answers,
    auth: Option<Authorizer>,
    api: Option<Api>,
    health: Health,
}

/// What one partition's records came to: their outcomes, and the error that stopped them.
#[derive(Default)]
struct Lane {
    outcomes: Vec<(usize, Outcome)>,
    stopped: Option<SinkError>,
}

impl HttpSink {
    /// Checks the configuration and every template; the client is made in `open`.
    pub fn new(config: HttpConfig) -> Result<Self, ConfigError> {
        if config.max_in_flight == 0 {
            return Err(ConfigError::at("max_in_flight", "must be at least 1"));
        }
        if let Some(tls) = &config.tls {
            tls.validate("tls")?;
        }
        let shape = Shape::new(&config)?;
        let answers = Answers::new(&config.responses, config.batch.is_none())?;
        let auth = Authorizer::new(config.auth.as_ref())?;
        Ok(HttpSink {
            config,
            shape,
            answers,
            auth: Some(auth),
            api: None,
            health: Health::new(),
        })
    }

    fn api(&self) -> Result<&Api, SinkError> {
        self.api
            .as_ref()
            .ok_or_else(|| SinkError::Fatal("http sink used before open".into()))
    }

    /// One call per record, partitions in parallel.
    async fn send_each(
        &self,
        api: &Api,
        records: &[RecordRef<'_>],
    ) -> Result<Vec<Outcome>, SinkError> {
        let lanes = match self.config.ordering {
            Ordering::Partition => lanes(records),
            Ordering::None => (0..records.len()).map(|i| vec![i]).collect(),
        };
        let done: Vec<Lane> = stream::iter(lanes)
            .map(|lane| self.run_lane(api, records, lane))
            .buffer_unordered(self.config.max_in_flight)
            .collect()
            .await;
        let mut outcomes = Outcomes::new(records.len());
        let mut settled = false;
        let mut delivered = false;
        let mut error: Option<SinkError> = None;
        for lane in done {
            for (i, o) in lane.outcomes {
                settled |= !matches!(o, Outcome::Unavailable(_));
                delivered |= matches!(o, Outcome::Delivered);
                outcomes.set(i, o);
            }
            if let Some(e) = lane.stopped {
                error = Some(match error {
                    Some(prev) => worse(prev, e),
                    None => e,
                });
            }
        }
        self.settle_health(delivered, error.as_ref());
        match error {
            // Nothing taken: the whole batch goes back, with the destination's Retry-After.
            Some(e) if !settled || matches!(e, SinkError::Fatal(_)) => Err(e),
            _ => Ok(outcomes.finish()),
        }
    }

    /// A partition's records in order, each sent after the previous one was answered. A
    /// failure of the destination stops the lane: that record and the rest go back to the
    /// host together, in order.
    async fn run_lane(&self, api: &Api, records: &[RecordRef<'_>], lane: Vec<usize>) -> Lane {
        let mut out = Lane::default();
        for (k, &i) in lane.iter().enumerate() {
            let call = match self.shape.one(&records[i]) {
                Ok(call) => call,
                Err(rejection) => {
                    out.outcomes.push((i, Outcome::Reject(rejection)));
                    continue;
                }
            };
            let failure = match api.send(&call).await {
                Ok(resp) => match self.answers.read(&resp) {
                    Answer::Verdict(Verdict::Delivered(())) => {
                        out.outcomes.push((i, Outcome::Delivered));
                        continue;
                    }
                    Answer::Verdict(Verdict::Rejected(r)) => {
                        out.outcomes.push((i, Outcome::Reject(r)));
                        continue;
                    }
                    Answer::Retry(why) => {
                        out.outcomes.push((i, Outcome::Retry(why)));
                        continue;
                    }
                    Answer::Verdict(Verdict::Failed(e)) => e,
                },
                Err(e) => e,
            };
            let why = Outcome::Unavailable(failure.to_string());
            out.outcomes
                .extend(lane[k..].iter().map(|&j| (j, why.clone())));
            out.stopped = Some(failure);
            break;
        }
        out
    }

    /// One call for the whole batch.
    async fn send_batch(
        &self,
        api: &Api,
        format: BatchFormat,
        records: &[RecordRef<'_>],
    ) -> Result<Vec<Outcome>, SinkError> {
        let (call, included, refused) = self.shape.batch(format, records)?;
        let mut outcomes = Outcomes::new(records.len());
        let settled = !refused.is_empty();
        for (i, r) in refused {
            outcomes.reject(i, r);
        }
        let Some(call) = call else {
            return Ok(outcomes.finish());
        };
        let failure = match api.send(&call).await {
            Ok(resp) => match self.answers.read(&resp) {
                Answer::Verdict(Verdict::Delivered(())) => {
                    self.settle_health(true, None);
                    outcomes.set_each(included, &Outcome::Delivered);
                    return Ok(outcomes.finish());
                }
                Answer::Verdict(Verdict::Rejected(r)) => {
                    outcomes.set_each(included, &Outcome::Reject(r));
                    return Ok(outcomes.finish());
                }
                Answer::Retry(why) => {
                    outcomes.set_each(included, &Outcome::Retry(why));
                    return Ok(outcomes.finish());
                }
                Answer::Verdict(Verdict::Failed(e)) => e,
            },
            Err(e) => e,
        };
        self.settle_health(false, Some(&failure));
        if !settled || matches!(failure, SinkError::Fatal(_) | SinkError::TooLarge(_)) {
            return Err(failure);
        }
        outcomes.set_each(included, &Outcome::Unavailable(failure.to_string()));
        Ok(outcomes.finish())
    }

    /// Refused credentials show on `/health` until a call is taken again.
    fn settle_health(&self, delivered: bool, error: Option<&SinkError>) {
        match error {
            Some(SinkError::Unauthorized(m)) => self.health.set_unhealthy(m.clone()),
            _ if delivered => self.health.set_healthy(),
            _ => {}
        }
    }
}

/// The batch's record indices grouped by source partition, each group in batch order.
fn lanes(records: &[RecordRef<'_>]) -> Vec<Vec<usize>> {
    let mut index: HashMap<(&str, i32), usize> = HashMap::new();
    let mut lanes: Vec<Vec<usize>> = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let o = r.origin();
        let lane = *index.entry((o.stream, o.partition)).or_insert_with(|| {
            lanes.push(Vec::new());
            lanes.len() - 1
        });
        lanes[lane].push(i);
    }
    lanes
}

/// Of two errors, the one the host should act on: a fatal one, then refused credentials,
/// then an outage (the longer `Retry-After` wins).
fn worse(a: SinkError, b: SinkError) -> SinkError {
    fn rank(e: &SinkError) -> u8 {
        match e {
            SinkError::Fatal(_) => 3,
            SinkError::Unauthorized(_) => 2,
            SinkError::TooLarge(_) => 1,
            SinkError::Unavailable { .. } => 0,
        }
    }
    match (&a, &b) {
        (
            SinkError::Unavailable {
                retry_after: ra, ..
            },
            SinkError::Unavailable {
                retry_after: rb, ..
            },
        ) => {
            if rb > ra {
                b
            } else {
                a
            }
        }
        _ if rank(&b) > rank(&a) => b,
        _ => a,
    }
}

#[async_trait]
impl Sink for HttpSink {
    async fn open(&mut self, ctx: SinkContext) -> Result<(), SinkError> {
        self.health = ctx.health;
        let auth = match self.auth.take() {
            Some(a) => a,
            None => Authorizer::new(self.config.auth.as_ref())
                .map_err(|e| SinkError::Fatal(e.to_string()))?,
        };
        if let Some(tls) = &self.config.tls {
            tls.warn_if_insecure("http");
        }
        if !matches!(auth, Authorizer::None) {
            if let Ok(u) = url::Url::parse(&self.shape.url.display()) {
                sluice_sdk::http::warn_if_cleartext("http", &u, "the credential");
            }
        }
        self.api = Some(Api::new(&self.config, auth, self.shape.method.clone())?);
        tracing::info!(
            pipeline = %ctx.pipeline,
            method = %self.shape.method,
            max_in_flight = self.config.max_in_flight,
            "calling {}",
            self.shape.url.display()
        );
        Ok(())
    }

    async fn send(&self, records: &[RecordRef<'_>]) -> Result<Vec<Outcome>, SinkError> {
        let api = self.api()?;
        match self.shape.batch {
            Some(format) => self.send_batch(api, format, records).await,
            None => self.send_each(api, records).await,
        }
    }

    /// Four batches in flight; batches sharing a source partition never overlap
    /// ([`orders_partitions`](Sink::orders_partitions)), so a partition's records still reach
    /// the API in order across batches.
    fn default_concurrency(&self) -> usize {
        4
    }

    fn orders_partitions(&self) -> bool {
        self.config.ordering == Ordering::Partition
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::{Origin, Record};
    use std::time::Duration;

    #[test]
    fn lanes_keep_each_partition_in_order() {
        let recs: Vec<Record> = [(0, 1), (1, 2), (0, 3), (2, 4), (1, 5)]
            .iter()
            .map(|&(p, o)| Record::new(&b"{}"[..], Origin::new("t".into(), p, o)))
            .collect();
        let views: Vec<RecordRef<'_>> = recs.iter().map(Record::view).collect();
        assert_eq!(lanes(&views), vec![vec![0, 2], vec![1, 4], vec![3]]);
    }

    #[test]
    fn the_worse_error_wins() {
        let u = |s| SinkError::Unavailable {
            message: String::new(),
            retry_after: Some(Duration::from_secs(s)),
        };
        assert!(matches!(
            worse(u(1), SinkError::Unauthorized(String::new())),
            SinkError::Unauthorized(_)
        ));
        assert!(matches!(
            worse(u(1), u(5)),
            SinkError::Unavailable { retry_after: Some(d), .. } if d.as_secs() == 5
        ));
        assert!(matches!(
            worse(SinkError::Fatal(String::new()), u(5)),
            SinkError::Fatal(_)
        ));
    }
}
