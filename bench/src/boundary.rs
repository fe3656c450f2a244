//! `plugin-boundary`: what one 1,000-record batch costs to cross the plugin ABI, in process
//! and on one thread, in each direction.
//!
//! * A sink batch is lent: the host lays out descriptors of its records and the plugin reads
//!   them as the records its sink takes. Both pipelines, built in or plugin, make the views
//!   of the host's records; only the descriptors and reading them back are the crossing.
//! * A source batch is encoded by the plugin into a pooled buffer and decoded by the host into
//!   records that share that buffer, which the host drops after delivery.
//! * A source that writes its values in place (`Source::poll_into`) builds no records in the
//!   plugin: its values are encoded as they are written. Against the same writes built in
//!   (records sharing one buffer), the crossing is the encoding writes plus the host's decode
//!   minus the built-in writes.
//!
//! The pipeline scenarios (`generator-file-plugin`) show the same costs with the page cache's
//! and the scheduler's noise around them; this one shows them alone, steady enough to measure
//! a change to the crossing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_sdk::plugin::abi::Buffer;
use sluice_sdk::plugin::codec::{self, StreamInterner};
use sluice_sdk::plugin::lend::{LentBatchBuf, LentViews};
use sluice_sdk::plugin::{BufferPool, ForeignBuffer};
use sluice_sdk::{views, BatchWriter, Origin, PollEnd, Polled, Record, RecordHead};

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

/// What the host does with a poll result handed over by the plugin: records that share it.
fn host_decode(handed: Buffer, interner: &mut StreamInterner) -> Result<Polled, String> {
    // SAFETY: the caller handed the buffer over just before; it is released once, by the
    // records.
    let bytes: Bytes = unsafe { ForeignBuffer::new(handed) }.into_bytes();
    codec::decode_polled(&bytes, interner).map_err(|e| e.to_string())
}

pub fn run() -> Result<Vec<Report>, String> {
    let records = batch();
    let (mut lend_t, mut borrow_t) = (Duration::ZERO, Duration::ZERO);
    let mut read = LentViews::new();
    for _ in 0..BATCHES {
        let views = views(&records);
        let t0 = Instant::now();
        let lent = LentBatchBuf::new(&views);
        let t1 = Instant::now();
        // SAFETY: `lent` and the records outlive `borrowed`.
        let borrowed = unsafe { read.read(lent.batch()) }.map_err(|e| e.to_string())?;
        let t2 = Instant::now();
        if borrowed.len() != BATCH || borrowed[BATCH - 1].value() != &records[BATCH - 1].value[..] {
            return Err("the sink batch did not cross intact".into());
        }
        lend_t += t1 - t0;
        borrow_t += t2 - t1;
    }

    let pool = BufferPool::new();
    let mut interner = StreamInterner::default();
    let polled = Polled::Records(records);
    let (mut encode, mut decode, mut drop_t) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    for _ in 0..BATCHES {
        let t0 = Instant::now();
        let mut buf = pool.take();
        codec::encode_polled_into(&mut buf, &polled);
        let handed = pool.hand_over(buf);
        let t1 = Instant::now();
        let decoded = host_decode(handed, &mut interner)?;
        let t2 = Instant::now();
        let Polled::Records(decoded) = decoded else {
            return Err("the source batch did not cross intact".into());
        };
        if decoded.len() != BATCH {
            return Err("the source batch did not cross intact".into());
        }
        drop(decoded);
        let t3 = Instant::now();
        encode += t1 - t0;
        decode += t2 - t1;
        drop_t += t3 - t2;
    }

    // The same values, written in place.
    let Polled::Records(records) = polled else {
        return Err("the sample batch is gone".into());
    };
    let stream = records[0].origin.stream.clone();
    let write = |w: &mut BatchWriter<'_>| {
        w.reserve(records.len(), records.len() * 340);
        for r in &records {
            let head = RecordHead {
                stream: &stream,
                partition: 0,
                offset: r.origin.offset,
                timestamp: r.timestamp,
                key: None,
            };
            w.push_with(head, |b| b.extend_from_slice(&r.value));
        }
    };
    let (mut collect, mut written, mut read) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    for _ in 0..BATCHES {
        let t0 = Instant::now();
        let mut w = BatchWriter::new();
        write(&mut w);
        let built_in = w.into_polled(PollEnd::More);
        let t1 = Instant::now();
        drop(built_in);
        let t2 = Instant::now();
        let mut buf = pool.take();
        let mut w = codec::poll_writer(&mut buf);
        write(&mut w);
        codec::finish_poll(w, PollEnd::More).map_err(|e| e.to_string())?;
        let handed = pool.hand_over(buf);
        let t3 = Instant::now();
        let decoded = host_decode(handed, &mut interner)?;
        let t4 = Instant::now();
        match &decoded {
            Polled::Records(d) if d.len() == BATCH && d[BATCH - 1] == records[BATCH - 1] => {}
            _ => return Err("the written source batch did not cross intact".into()),
        }
        collect += t1 - t0;
        written += t3 - t2;
        read += t4 - t3;
    }

    let report = |scenario: &str, time: Duration| Report {
        scenario: scenario.into(),
        records: (BATCH * BATCHES) as u64,
        wall: time,
        cpu: time,
        baseline: true,
    };
    Ok(vec![
        report("sink batch: lend (host)", lend_t),
        report("sink batch: borrow (plugin)", borrow_t),
        report("sink batch: the whole crossing", lend_t + borrow_t),
        report("source batch: encode (plugin)", encode),
        report("source batch: decode (host)", decode),
        report("source batch: drop (host)", drop_t),
        report("source batch: the whole crossing", encode + decode + drop_t),
        report("written in place, built in: collect", collect),
        report("written in place, plugin: encode", written),
        report("written in place, host: decode", read),
        report(
            "written in place: the crossing",
            (written + read).saturating_sub(collect),
        ),
    ])
}
