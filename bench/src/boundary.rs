//! `plugin-boundary`: what one 1,000-record batch costs to cross the plugin ABI, in process
//! and on one thread, split into the three steps a sink batch takes: the host encodes it
//! into a pooled buffer, the plugin decodes it into records that share that buffer, and the
//! plugin releases them after the send. The pipeline scenarios (`generator-file-plugin`) show
//! the same cost with the page cache's and the scheduler's noise around it; this one shows
//! it alone, steady enough to measure a change to the codec.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_sdk::plugin::codec::{self, StreamInterner};
use sluice_sdk::plugin::{BufferPool, ForeignBuffer};
use sluice_sdk::{Origin, Record};

use crate::measure::Report;

const BATCH: usize = 1000;
const BATCHES: usize = 3000;

/// Records shaped like the generator's: a ~330-byte JSON value on one stream, each value its
/// own allocation (as a source's records are), timestamps set.
fn batch() -> Vec<Record> {
    let stream: Arc<str> = Arc::from("generator");
    (0..BATCH)
        .map(|i| {
            let value = format!(
                "{{\"id\":\"{i:08}\",\"time\":\"2026-11-23T10:00:00.000Z\",\"host\":\"web-{}\",\"user\":\"user{}@example.com\",\"action\":\"login\",\"outcome\":\"success\",\"source_ip\":\"10.0.{}.{}\",\"message\":\"{}\"}}",
                i % 16,
                i % 1000,
                i % 256,
                i % 200,
                "x".repeat(140)
            );
            let mut r = Record::new(value.into_bytes(), Origin::new(stream.clone(), 0, i as i64));
            r.timestamp = Some(1_795_000_000_000 + i as i64);
            r
        })
        .collect()
}

pub fn run() -> Result<Vec<Report>, String> {
    let records = batch();
    let pool = BufferPool::new();
    let mut interner = StreamInterner::default();
    let mut decoded: Vec<Record> = Vec::new();
    let (mut encode, mut decode, mut release) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    for _ in 0..BATCHES {
        let t0 = Instant::now();
        let mut buf = pool.take();
        codec::encode_records_into(&mut buf, &records);
        let handed = pool.hand_over(buf);
        let t1 = Instant::now();
        // SAFETY: the buffer was handed over just above and is released once, by the records.
        let bytes: Bytes = unsafe { ForeignBuffer::new(handed) }.into_bytes();
        codec::decode_records_into(&bytes, &mut interner, &mut decoded)
            .map_err(|e| e.to_string())?;
        drop(bytes);
        let t2 = Instant::now();
        if decoded.len() != BATCH || decoded[BATCH - 1].value != records[BATCH - 1].value {
            return Err("the batch did not round-trip".into());
        }
        codec::release_payloads(&mut decoded);
        let t3 = Instant::now();
        encode += t1 - t0;
        decode += t2 - t1;
        release += t3 - t2;
    }
    let report = |scenario: &str, time: Duration| Report {
        scenario: scenario.into(),
        records: (BATCH * BATCHES) as u64,
        wall: time,
        cpu: time,
        baseline: true,
    };
    Ok(vec![
        report("encode (host)", encode),
        report("decode (plugin)", decode),
        report("release (plugin)", release),
        report("the whole crossing", encode + decode + release),
    ])
}
