//! Indexer acknowledgement.
//!
//! With `useACK` on the token, a 200 only says HEC received a request; the `ackId` in the answer
//! becomes `true` on `/services/collector/ack` once the events are replicated. Rules that shape
//! this module:
//! * ackIds are per channel and per HEC node: an id is polled on the endpoint that issued it,
//!   with the sink's channel (sent as a header on every request).
//! * HEC forgets an id once it has answered `true`; polling it again yields `false`. So one
//!   poller owns all polls and hands each `true` to the waiting batch exactly once.
//! * `false` cannot tell "pending" from "lost": after `ack_timeout` the batch is resent
//!   (at-least-once; a late ack then means a duplicate in Splunk).
//! * A 400 code 14 (ACK disabled on the token) falls back to trusting the 200, with a warning.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Deserialize;
use sluice_sdk::Health;
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

use crate::request::Requester;
use crate::response::{classify, Reply};
use sluice_sdk::Verdict;

/// Ids per ack query: keeps one poll request small even with many batches pending.
const MAX_IDS_PER_POLL: usize = 10_000;

/// Reason given to the host when an ack does not come in time.
pub const ACK_TIMEOUT: &str = "HEC ack timeout";

/// Pending ackIds and the batches waiting for them.
#[derive(Debug)]
pub struct Acks {
    pending: Mutex<HashMap<(usize, u64), oneshot::Sender<()>>>,
    wake: Notify,
    poll_interval: Duration,
    timeout: Duration,
    warned_disabled: AtomicBool,
}

/// A batch's claim on one ackId.
#[derive(Debug)]
pub struct Waiter {
    key: (usize, u64),
    deadline: Instant,
    rx: oneshot::Receiver<()>,
}

#[derive(Deserialize)]
struct AckReply {
    acks: HashMap<String, bool>,
}

impl Acks {
    pub fn new(poll_interval: Duration, timeout: Duration) -> Self {
        Acks {
            pending: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            poll_interval,
            timeout,
            warned_disabled: AtomicBool::new(false),
        }
    }

    /// Starts tracking `ack_id` issued by `endpoint`.
    pub fn register(&self, endpoint: usize, ack_id: u64) -> Waiter {
        let (tx, rx) = oneshot::channel();
        // A reused id (HEC restarted and counts from 0 again) drops the old sender: the old
        // waiter then resends, which is the safe answer.
        self.pending.lock().insert((endpoint, ack_id), tx);
        self.wake.notify_one();
        Waiter {
            key: (endpoint, ack_id),
            deadline: Instant::now() + self.timeout,
            rx,
        }
    }

    /// Waits until the ackId is true. `Err` with the reason to resend otherwise.
    pub async fn wait(&self, waiter: Waiter) -> Result<(), &'static str> {
        match tokio::time::timeout_at(waiter.deadline, waiter.rx).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err("HEC ack lost (ackId reused by the server)"),
            Err(_) => {
                self.pending.lock().remove(&waiter.key);
                Err(ACK_TIMEOUT)
            }
        }
    }

    /// A 200 without `ackId` although acknowledgements are on: the token has none, so the
    /// 200 is all HEC offers. Warns once.
    pub fn trusting_200(&self, endpoint: &str) {
        if !self.warned_disabled.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                endpoint,
                "splunk_hec: acknowledgements are on but HEC answered without an ackId: the \
                 token has no indexer acknowledgement; trusting HTTP 200 instead"
            );
        }
    }

    /// Number of ackIds waited for.
    pub fn pending(&self) -> usize {
        self.pending.lock().len()
    }

    /// Polls pending ackIds every `poll_interval` until aborted.
    pub async fn run(self: Arc<Self>, requester: Arc<Requester>, health: Health) {
        loop {
            if self.pending.lock().is_empty() {
                self.wake.notified().await;
                continue;
            }
            tokio::time::sleep(self.poll_interval).await;
            let mut by_endpoint: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
            {
                let mut pending = self.pending.lock();
                // A batch that stopped waiting (its send was cancelled) needs no more polls.
                pending.retain(|_, tx| !tx.is_closed());
                for &(ep, id) in pending.keys() {
                    by_endpoint.entry(ep).or_default().push(id);
                }
            }
            for (ep, mut ids) in by_endpoint {
                ids.sort_unstable();
                for chunk in ids.chunks(MAX_IDS_PER_POLL) {
                    self.poll(&requester, &health, ep, chunk).await;
                }
            }
        }
    }

    async fn poll(&self, requester: &Requester, health: &Health, ep: usize, ids: &[u64]) {
        let mut body = Vec::with_capacity(10 + ids.len() * 8);
        body.extend_from_slice(br#"{"acks":["#);
        let mut num = itoa::Buffer::new();
        for (i, id) in ids.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(num.format(*id).as_bytes());
        }
        body.extend_from_slice(b"]}");
        let base = requester.base(ep);
        let resp = match requester.post_acks(ep, body).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(endpoint = base, error = %e, "splunk_hec: ack poll failed");
                return;
            }
        };
        if resp.status == 200 {
            match serde_json::from_slice::<AckReply>(&resp.body) {
                Ok(reply) => self.complete(ep, &reply),
                Err(e) => {
                    tracing::warn!(endpoint = base, error = %e, "splunk_hec: unreadable ack answer")
                }
            }
            return;
        }
        let status = resp.status.as_u16();
        match classify(base, status, None, &resp.body, 0) {
            Verdict::Failed(sluice_sdk::SinkError::Unauthorized(m)) => health.set_unhealthy(m),
            _ if status == 400 && is_ack_disabled(&resp.body) => {
                if !self.warned_disabled.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        endpoint = base,
                        "splunk_hec: HEC answered \"ACK is disabled\" (code 14): the token has no \
                         indexer acknowledgement; trusting HTTP 200 instead"
                    );
                }
                let mut pending = self.pending.lock();
                for id in ids {
                    if let Some(tx) = pending.remove(&(ep, *id)) {
                        let _ = tx.send(());
                    }
                }
            }
            other => {
                tracing::warn!(endpoint = base, status, answer = ?other, "splunk_hec: ack poll refused")
            }
        }
    }

    fn complete(&self, ep: usize, reply: &AckReply) {
        let mut pending = self.pending.lock();
        for (id, acked) in &reply.acks {
            if !acked {
                continue;
            }
            let Ok(id) = id.parse::<u64>() else { continue };
            if let Some(tx) = pending.remove(&(ep, id)) {
                // The batch may have timed out and gone; then the ack is simply late.
                let _ = tx.send(());
            }
        }
    }
}

fn is_ack_disabled(body: &[u8]) -> bool {
    serde_json::from_slice::<Reply>(body).is_ok_and(|r| r.code == Some(14))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn true_completes_and_timeout_forgets() {
        let acks = Acks::new(Duration::from_millis(10), Duration::from_millis(50));
        let a = acks.register(0, 1);
        let b = acks.register(0, 2);
        let c = acks.register(1, 1);
        acks.complete(
            0,
            &serde_json::from_str(r#"{"acks":{"1":true,"2":false}}"#).unwrap(),
        );
        assert_eq!(acks.wait(a).await, Ok(()));
        assert_eq!(acks.pending(), 2, "only endpoint 0's id 1 is done");
        assert_eq!(acks.wait(b).await, Err(ACK_TIMEOUT));
        assert_eq!(acks.pending(), 1);
        acks.complete(1, &serde_json::from_str(r#"{"acks":{"1":true}}"#).unwrap());
        assert_eq!(acks.wait(c).await, Ok(()));
        assert_eq!(acks.pending(), 0);
    }
}
