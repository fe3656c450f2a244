//! `json-scan`: the per-record JSON reads on their own, in process and on one thread: the
//! check of a `format: json` source (`sluice_sdk::json::is_json`) and the member scan a route
//! reads its field from (`sluice_sdk::json::scan_members`), the search for one member
//! (`sluice_sdk::json::MemberFinder`, `splunk_hec`'s `time_field`), over the Kafka scenarios'
//! events, and the writing of a whole event as a JSON string (Datadog's `message`:
//! `sluice_sdk::json::write_str`, beside `serde_json`'s writer).
//! In the pipelines they hide in the broker's and the scheduler's noise; here a change to them
//! shows.

use std::time::{Duration, Instant};

use sluice_sdk::json::{is_json, scan_members, write_str, MemberFinder, MemberSpans};

use crate::kafka::event;
use crate::measure::Report;

const EVENTS: u64 = 100_000;
const ROUNDS: u64 = 20;

pub fn run() -> Result<Vec<Report>, String> {
    let mut buf = Vec::new();
    let events: Vec<Vec<u8>> = (0..EVENTS)
        .map(|seq| {
            // Spread like a topic's offsets, so the values are not all alike.
            event(seq * 7919, &mut buf);
            buf.clone()
        })
        .collect();
    let check = timed("json::is_json (kafka bench events)", || {
        events.iter().filter(|e| is_json(e)).count() as u64
    })?;
    let mut spans = MemberSpans::new();
    let scan = timed("json::scan_members (kafka bench events)", || {
        events
            .iter()
            .filter(|e| scan_members(e, &mut spans) && spans.len() == 12)
            .count() as u64
    })?;
    let finder = MemberFinder::new("timestamp");
    let find = timed(
        "json::MemberFinder of `timestamp` (kafka bench events)",
        || {
            events
                .iter()
                .filter(|e| matches!(finder.find(e, &mut spans), Some(Some(v)) if v.len() == 26))
                .count() as u64
        },
    )?;
    let texts: Vec<&str> = events
        .iter()
        .map(|e| std::str::from_utf8(e).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    // Each written string must be longer than its text: every event has quotes to escape.
    let mut out = Vec::new();
    let escape = timed("json::write_str (kafka bench events)", || {
        texts
            .iter()
            .filter(|t| {
                out.clear();
                write_str(&mut out, t);
                out.len() > t.len() + 2
            })
            .count() as u64
    })?;
    let serde = timed("serde_json::to_writer of a str (the same)", || {
        texts
            .iter()
            .filter(|t| {
                out.clear();
                serde_json::to_writer(&mut out, *t).is_ok() && out.len() > t.len() + 2
            })
            .count() as u64
    })?;
    Ok(vec![check, scan, find, escape, serde])
}

/// `ROUNDS` passes of `pass` over the events, each of which must find every event good; the
/// CPU is the wall time of this one thread.
fn timed(name: &str, mut pass: impl FnMut() -> u64) -> Result<Report, String> {
    let mut wall = Duration::ZERO;
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let good = pass();
        wall += t.elapsed();
        if good != EVENTS {
            return Err(format!("{name}: {good} of {EVENTS} events passed"));
        }
    }
    Ok(Report {
        scenario: name.into(),
        records: EVENTS * ROUNDS,
        wall,
        cpu: wall,
        baseline: true,
    })
}
