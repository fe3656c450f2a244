//! `http-sink`: the `http` sink reading the real Kafka broker, against a local counting server
//! (testkit's receiver, which answers every request 202 and counts it).
//!
//! - `batch: ndjson`: 1,000,000 events on 4 partitions, beside the bare consumer of the same
//!   topic (the target compares the two).
//! - One call per record: 100,000 events on 8 partitions with `max_in_flight: 8`: the order of
//!   each partition kept, with batches of 2,000 (and the host's `concurrency: 8`) and with
//!   batches of 25,000 that span every partition; then `ordering: none` (docs/connectors/http.md,
//!   Ordering).

use std::sync::atomic::Ordering;

use crate::kafka::{
    bare_consumer, brokers, counting_receiver, filled_topic, sluice, sluice_batched, BATCH,
};
use crate::measure::Report;

const BATCHED: u64 = 1_000_000;
const BATCHED_PARTITIONS: i32 = 4;
const PER_RECORD: u64 = 100_000;
const PER_RECORD_PARTITIONS: i32 = 8;

pub fn run_all() -> Result<Vec<Report>, String> {
    let (_rt, (server, count)) = counting_receiver(sluice_testkit::datadog::start_counter)?;
    let url = format!("{}/api/v2/logs", server.url());
    let brokers = brokers();
    let mut reports = Vec::new();

    let topic = filled_topic(&brokers, BATCHED, BATCHED_PARTITIONS)?;
    let mut base = bare_consumer(&brokers, &topic, BATCHED)?;
    base.baseline = true;
    reports.push(base);
    let before = count.load(Ordering::Relaxed);
    reports.push(sluice(
        "sluice kafka(json) -> http batch: ndjson",
        &brokers,
        &topic,
        BATCHED,
        "json",
        &format!("{{ type: http, url: \"{url}\", batch: ndjson }}"),
    )?);
    let calls = count.load(Ordering::Relaxed) - before;
    eprintln!("batch: ndjson: {calls} calls for {BATCHED} records");

    let topic = filled_topic(&brokers, PER_RECORD, PER_RECORD_PARTITIONS)?;
    let mut base = bare_consumer(&brokers, &topic, PER_RECORD)?;
    base.baseline = true;
    reports.push(base);
    // Order kept: calls of a partition one after another, batches of a partition never in
    // flight together. The Kafka source hands over a partition's records in runs of a fetch
    // (a producer's record batch, here about 3,000 events), so a batch of 2,000 holds one or
    // two partitions and few calls are in flight; a batch large enough to span every
    // partition (8 x 3,000) keeps `max_in_flight` calls going, each partition's in order.
    let spanning = "{ max_events: 25000, max_bytes: 16MiB, linger: 50ms }";
    for (name, sink, batch) in [
        (
            "sluice kafka(json) -> http per record, max_in_flight 8, concurrency 8",
            format!("{{ type: http, url: \"{url}\", max_in_flight: 8 }}\n    concurrency: 8"),
            BATCH,
        ),
        (
            "sluice kafka(json) -> http per record, max_in_flight 8, batches of 25,000",
            format!("{{ type: http, url: \"{url}\", max_in_flight: 8 }}"),
            spanning,
        ),
        (
            "sluice kafka(json) -> http per record, max_in_flight 8, ordering: none",
            format!("{{ type: http, url: \"{url}\", max_in_flight: 8, ordering: none }}"),
            BATCH,
        ),
    ] {
        let before = count.load(Ordering::Relaxed);
        reports.push(sluice_batched(
            name, &brokers, &topic, PER_RECORD, "json", &sink, batch,
        )?);
        let calls = count.load(Ordering::Relaxed) - before;
        if calls < PER_RECORD {
            return Err(format!("{calls} calls for {PER_RECORD} records"));
        }
    }
    Ok(reports)
}
