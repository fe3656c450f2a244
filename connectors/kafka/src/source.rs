//! The `kafka` source: a consumer-group member that hands records to the host and stores,
//! per partition, the offset after the host's contiguous done prefix. librdkafka commits what
//! is stored on its interval, on revoke and on close (batched, never per record). Messages
//! are read in batches from the source's own fetch queue ([`crate::fetch_queue`]).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use futures::{FutureExt, StreamExt};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sluice_sdk::{
    Bytes, Checkpoint, Header, Origin, PartitionPosition, Polled, Record, Source, SourceContext,
    SourceError,
};

use crate::config::{Format, SourceConfig, StartFrom};
use crate::context::{ClientState, Context};
use crate::decode;
use crate::fetch_queue::{DrainBuf, FetchQueue, Fetched, Incoming};
use crate::range::PartitionRange;
use crate::schema_registry::{SchemaError, SchemaRegistry};

/// How long `poll` waits for the first message before answering `Idle`.
const POLL_WAIT: Duration = Duration::from_millis(100);
/// Payloads are copied into shared chunks of this size: one allocation per chunk, not per
/// record, and every record value is a cheap slice of it.
const ARENA_CHUNK: usize = 256 * 1024;

type KafkaConsumer = StreamConsumer<Context>;

/// Reads a consumer group's partitions at least once.
pub struct KafkaSource {
    subscription: Vec<String>,
    client_config: ClientConfig,
    format: Format,
    registry: Option<SchemaRegistry>,
    state: Arc<ClientState>,
    consumer: Option<Arc<KafkaConsumer>>,
    /// Where the assigned partitions' messages arrive; also held by the consumer's context,
    /// which forwards each partition to it before assigning it.
    fetch: Option<Arc<FetchQueue>>,
    drain_buf: DrainBuf,
    topics: Vec<TopicState>,
    last_topic: usize,
    seen_generation: u64,
    arena: BytesMut,
    /// Avro records read but not yet decoded because the registry was unreachable; handed
    /// out first by the next `poll`, so nothing read is ever skipped.
    held: Vec<Record>,
    /// Notes the host asked to commit with each partition's next position.
    notes: std::collections::HashMap<(Arc<str>, i32), String>,
    /// A bounded read (`sluice replay`) instead of a group member: assigned partitions read
    /// from their start to their end offset, nothing committed.
    range: Option<Vec<PartitionRange>>,
    /// Jumps in a partition's offsets seen in the current read, for [`Self::report_gaps`].
    gaps: Vec<Gap>,
    /// A range read that met a damaged record batch: it cannot reach its end, so it fails.
    range_damaged: Option<String>,
}

/// Fetch errors that stop a partition until someone acts: no authorization for the topic,
/// a record batch larger than the consumer may receive, a batch failing its checksum (see
/// [`KafkaSource::stop_at_damaged_batch`]) or in a format it cannot decode.
fn stops_the_partition(e: RDKafkaRespErr) -> bool {
    use RDKafkaRespErr as E;
    matches!(
        e,
        E::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED
            | E::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE
            | E::RD_KAFKA_RESP_ERR__BAD_MSG
            | E::RD_KAFKA_RESP_ERR__BAD_COMPRESSION
            | E::RD_KAFKA_RESP_ERR__NOT_IMPLEMENTED
    )
}

/// Offsets `from..to` of a partition that the read jumped over while reading it.
struct Gap {
    topic: usize,
    partition: i32,
    from: i64,
    to: i64,
}

/// Per topic: the shared name and the state of each partition.
struct TopicState {
    name: Arc<str>,
    partitions: Vec<PartitionState>,
}

#[derive(Clone, Copy)]
struct PartitionState {
    /// Highest offset handed to the host; after a revoke and re-assign librdkafka fetches
    /// again from the committed offset, and records already handed out are skipped so
    /// offsets stay strictly increasing.
    emitted: i64,
    /// First offset fetched since the partition was last assigned. A commit below it would
    /// move the group's offset back (another member committed further meanwhile), so it is
    /// not stored. `None` until the first message after an assignment.
    floor: Option<i64>,
    /// A range read's end offset (excluded); `i64::MAX` for a group member.
    end: i64,
    /// The fetch error last reported for the partition, until it yields a record again.
    failing: Option<RDKafkaRespErr>,
    /// Stopped (paused) at a record batch that failed its checksum: nothing after it is read
    /// until the group's position is moved past it and the pipeline restarts.
    damaged: bool,
}

const FRESH: PartitionState = PartitionState {
    emitted: -1,
    floor: None,
    end: i64::MAX,
    failing: None,
    damaged: false,
};

impl KafkaSource {
    pub fn new(config: SourceConfig, pipeline: &str) -> Result<Self, sluice_sdk::ConfigError> {
        let subscription = config.subscription()?;
        let client_config = config.client_config(pipeline)?;
        let registry = match (&config.format, &config.schema_registry) {
            (Format::Avro, Some(r)) => Some(
                SchemaRegistry::new(r)
                    .map_err(|e| sluice_sdk::ConfigError::at("schema_registry", e))?,
            ),
            _ => None,
        };
        let state = ClientState::new("consumer", &config.brokers);
        state.set_start_latest(config.start_from == StartFrom::Latest);
        Ok(KafkaSource {
            subscription,
            client_config,
            format: config.format,
            registry,
            state,
            consumer: None,
            fetch: None,
            drain_buf: DrainBuf::default(),
            topics: Vec::new(),
            last_topic: 0,
            seen_generation: 0,
            arena: BytesMut::new(),
            held: Vec::new(),
            notes: std::collections::HashMap::new(),
            range: None,
            gaps: Vec::new(),
            range_damaged: None,
        })
    }

    /// A bounded read of `ranges` for `sluice replay`: assigned (never subscribed) under a
    /// replay-only group that is never committed; `poll` answers `Finished` once every
    /// partition reached its end.
    pub fn range(
        config: SourceConfig,
        pipeline: &str,
        ranges: Vec<PartitionRange>,
    ) -> Result<Self, crate::range::RangeError> {
        let client_config = crate::range::client_config(&config, pipeline)?;
        let mut source = KafkaSource::new(config, pipeline)?;
        source.client_config = client_config;
        for r in &ranges {
            let t = source.topic_index(&r.topic);
            if let Some(p) = source.partition_mut(t, r.partition) {
                p.end = r.end;
                if r.start >= r.end {
                    p.emitted = i64::MAX;
                }
            }
        }
        source.range = Some(ranges);
        Ok(source)
    }

    /// Whether a range read has reached the end of every partition.
    fn range_done(&self) -> bool {
        self.range.as_ref().is_some_and(|ranges| {
            ranges.iter().all(|r| {
                self.partition(&r.topic, r.partition)
                    .is_none_or(|p| p.emitted >= r.end - 1)
            })
        })
    }

    /// At a partition end: the range partitions whose position reached their end are done.
    fn range_eof(&mut self) {
        let Some(consumer) = self.consumer.clone() else {
            return;
        };
        let Ok(tpl) = consumer.position() else {
            return;
        };
        for e in tpl.elements() {
            let Some(pos) = e.offset().to_raw() else {
                continue;
            };
            let t = self.topic_index(e.topic());
            if let Some(p) = self.partition_mut(t, e.partition()) {
                if pos >= p.end {
                    p.emitted = p.emitted.max(p.end - 1);
                }
            }
        }
    }

    fn copy(&mut self, bytes: &[u8]) -> Bytes {
        if self.arena.capacity() - self.arena.len() < bytes.len() {
            self.arena.reserve(bytes.len().max(ARENA_CHUNK));
        }
        self.arena.extend_from_slice(bytes);
        self.arena.split().freeze()
    }

    fn topic_index(&mut self, topic: &str) -> usize {
        if let Some(t) = self.topics.get(self.last_topic) {
            if &*t.name == topic {
                return self.last_topic;
            }
        }
        let i = match self.topics.iter().position(|t| &*t.name == topic) {
            Some(i) => i,
            None => {
                self.topics.push(TopicState {
                    name: Arc::from(topic),
                    partitions: Vec::new(),
                });
                self.topics.len() - 1
            }
        };
        self.last_topic = i;
        i
    }

    fn partition_mut(&mut self, topic: usize, partition: i32) -> Option<&mut PartitionState> {
        let idx = usize::try_from(partition).ok()?;
        let parts = &mut self.topics[topic].partitions;
        if parts.len() <= idx {
            parts.resize(idx + 1, FRESH);
        }
        parts.get_mut(idx)
    }

    fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionState> {
        let t = self.topics.iter().find(|t| &*t.name == topic)?;
        t.partitions.get(usize::try_from(partition).ok()?)
    }

    /// Partitions assigned since the last look start over: their floor is learned again,
    /// and a fetch failure is news again. One that had stopped at a damaged batch is
    /// resumed, so that it reads the batch again and stops there again if it is still
    /// damaged (whether librdkafka keeps a pause across an assignment is not relied on).
    fn apply_assignments(&mut self) {
        let generation = self.state.assign_generation();
        if generation == self.seen_generation {
            return;
        }
        self.seen_generation = generation;
        let mut resume = TopicPartitionList::new();
        for (topic, partition) in self.state.take_assigned() {
            let t = self.topic_index(&topic);
            if let Some(p) = self.partition_mut(t, partition) {
                p.floor = None;
                p.failing = None;
                if std::mem::take(&mut p.damaged) {
                    resume.add_partition(&topic, partition);
                }
            }
        }
        if resume.count() > 0 {
            if let Some(Err(e)) = self.consumer.as_ref().map(|c| c.resume(&resume)) {
                tracing::warn!(error = %e, "kafka: resuming a reassigned partition failed");
            }
        }
    }

    /// Turns one consumer-queue result into a record (or nothing, for a duplicate or an
    /// error librdkafka recovers from by itself).
    fn take_polled(
        &mut self,
        msg: Result<BorrowedMessage<'_>, KafkaError>,
        out: &mut Vec<Record>,
    ) -> Result<(), SourceError> {
        match msg {
            Ok(m) => self.take(&m, out),
            Err(KafkaError::MessageConsumptionFatal(code)) => {
                return Err(SourceError::Fatal(format!("kafka consumer failed: {code}")))
            }
            Err(KafkaError::PartitionEOF(_)) => {
                if self.range.is_some() {
                    self.range_eof();
                }
            }
            // Already reported to health by the context's error callback; librdkafka keeps
            // reconnecting and refetching on its own.
            Err(e) => tracing::debug!(error = %e, "kafka consumer error"),
        }
        Ok(())
    }

    /// [`Self::take_polled`] for a message of the fetch queue. Fatal errors are raised on
    /// the consumer queue, not here.
    fn take_fetched(&mut self, msg: Fetched<'_>, out: &mut Vec<Record>) {
        match msg.error() {
            None => self.take(&msg, out),
            Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR__PARTITION_EOF) => {
                if self.range.is_some() {
                    self.range_eof();
                }
            }
            Some(e) if stops_the_partition(e) => self.fetch_failed(&msg, e),
            // Leadership moves, timeouts: librdkafka refetches and they pass by themselves.
            Some(e) => tracing::debug!(error = ?e, "kafka fetch error"),
        }
    }

    /// A partition's fetch failed in a way that does not pass by itself (see
    /// [`stops_the_partition`]). librdkafka retries on its own and reports each new error
    /// once; the source says so once per partition and error (WARN and `/health`) until the
    /// partition yields a record again, so a partition that stopped is not only seen as lag.
    /// librdkafka's text names the broker and the error, never record contents.
    fn fetch_failed(&mut self, msg: &Fetched<'_>, error: RDKafkaRespErr) {
        self.apply_assignments();
        let t = self.topic_index(msg.topic());
        let partition = msg.partition();
        let Some(p) = self.partition_mut(t, partition) else {
            return;
        };
        if p.damaged || p.failing == Some(error) {
            // What librdkafka reads after a damaged batch is not to be trusted (see below).
            return;
        }
        p.failing = Some(error);
        let detail = msg
            .payload()
            .map(String::from_utf8_lossy)
            .unwrap_or_else(|| format!("{error:?}").into());
        if error == RDKafkaRespErr::RD_KAFKA_RESP_ERR__BAD_MSG && detail.contains("CRC") {
            p.damaged = true;
            self.stop_at_damaged_batch(t, partition, msg.offset(), &detail);
            return;
        }
        let topic = &self.topics[t].name;
        tracing::warn!(
            topic = %topic,
            partition,
            offset = msg.offset(),
            "kafka: fetching {topic}/{partition} failed: {detail}"
        );
        self.state
            .report_text(&format!("fetching {topic}/{partition} failed: {detail}"));
    }

    /// A record batch of the partition failed its CRC-32C check (`check.crcs`): its bytes
    /// changed after the producer wrote them, on the broker's disk or on the way. Its
    /// records are not delivered altered, and not skipped either: the partition is paused at
    /// the batch, with a WARN and `/health` naming it, and the rest of the group's
    /// partitions go on. librdkafka itself would not stop there: it reads on from a wrong
    /// place in the fetch response and resets the partition to its earliest record, again
    /// and again. Records of the reset that were handed out already are dropped by `take`.
    fn stop_at_damaged_batch(&mut self, t: usize, partition: i32, offset: i64, detail: &str) {
        let topic = self.topics[t].name.clone();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&topic, partition);
        if let Some(Err(e)) = self.consumer.as_ref().map(|c| c.pause(&tpl)) {
            tracing::warn!(topic = %topic, partition, error = %e, "kafka: pausing a partition failed");
        }
        tracing::warn!(
            topic = %topic,
            partition,
            offset,
            "kafka: {topic}/{partition} stopped at offset {offset}: its record batch failed its checksum ({detail}); nothing after it is read until it is repaired on the broker or the group's offset is moved past it (`sluice offsets reset`)"
        );
        let problem = format!(
            "{topic}/{partition} stopped at offset {offset}: its record batch failed its checksum"
        );
        if self.range.is_some() {
            self.range_damaged = Some(problem);
        } else {
            self.state.report_stopped(&topic, partition, &problem);
        }
    }

    /// Turns one message into a record, unless it was handed out already or lies past a
    /// range read's end.
    fn take(&mut self, msg: &impl Incoming, out: &mut Vec<Record>) {
        self.apply_assignments();
        let offset = msg.offset();
        let partition = msg.partition();
        let t = self.topic_index(msg.topic());
        let Some(p) = self.partition_mut(t, partition) else {
            return;
        };
        let reading = p.floor.is_some();
        if !reading {
            p.floor = Some(offset);
        }
        if offset <= p.emitted {
            // Re-read after a rebalance while the first copy is still with the host.
            return;
        }
        if offset >= p.end {
            // Past a range read's end: the partition is done.
            p.emitted = p.end - 1;
            return;
        }
        let next = p.emitted + 1;
        p.emitted = offset;
        p.failing = None;
        if std::mem::take(&mut p.damaged) {
            let topic = &self.topics[t].name;
            self.state.clear_stopped([(&**topic, partition)]);
        }
        if reading && offset > next {
            // Offsets skip transaction markers, aborted ranges and compacted keys; whether
            // retention deleted part of the gap is checked after the batch (`report_gaps`).
            // A gap at assignment is the context's (`choose_starts`).
            self.gaps.push(Gap {
                topic: t,
                partition,
                from: next,
                to: offset,
            });
        }
        let origin = Origin::new(self.topics[t].name.clone(), partition, offset);
        let value = match msg.payload() {
            Some(v) => self.copy(v),
            None => Bytes::new(),
        };
        let key = msg.key().map(|k| self.copy(k));
        let mut headers = Vec::new();
        msg.headers(|key, value| {
            let value = value.map(|b| self.copy(b));
            headers.push(Header {
                key: key.to_string(),
                value,
            });
        });
        out.push(Record {
            key,
            value,
            headers,
            timestamp: msg.timestamp(),
            origin,
            decode_error: None,
            json_checked: Default::default(),
        });
    }

    /// Reads up to `max` messages: what both queues already hold, else waits up to
    /// [`POLL_WAIT`] for the first and then takes what arrived with it.
    async fn read(&mut self, max: usize) -> Result<Vec<Record>, SourceError> {
        let consumer = self
            .consumer
            .clone()
            .ok_or_else(|| SourceError::Fatal("kafka source polled before open".into()))?;
        let fetch = self.fetch.clone();
        let mut out = Vec::with_capacity(max.min(4096));
        self.gather(&consumer, fetch.as_deref(), max, &mut out)?;
        if !out.is_empty() {
            return Ok(out);
        }
        // Polling the consumer queue also serves rebalances and errors while waiting.
        let polled = {
            let mut stream = consumer.stream();
            tokio::select! {
                m = stream.next() => Some(m),
                () = arrival(fetch.as_deref()) => None,
                () = tokio::time::sleep(POLL_WAIT) => return Ok(out),
            }
        };
        match polled {
            Some(None) => return Err(SourceError::Fatal("kafka consumer stream ended".into())),
            Some(Some(m)) => self.take_polled(m, &mut out)?,
            None => {}
        }
        self.gather(&consumer, fetch.as_deref(), max, &mut out)?;
        Ok(out)
    }

    /// Takes what the consumer queue holds (serving rebalances and errors on the way), then
    /// up to `max` messages of the fetch queue, without waiting.
    fn gather(
        &mut self,
        consumer: &KafkaConsumer,
        fetch: Option<&FetchQueue>,
        max: usize,
        out: &mut Vec<Record>,
    ) -> Result<(), SourceError> {
        let mut stream = consumer.stream();
        while out.len() < max {
            match stream.next().now_or_never() {
                Some(Some(m)) => self.take_polled(m, out)?,
                _ => break,
            }
        }
        drop(stream);
        // An assignment served above may have no message yet (a partition stopped at a
        // damaged batch is paused): see to it now.
        self.apply_assignments();
        if let Some(fetch) = fetch {
            let mut buf = std::mem::take(&mut self.drain_buf);
            while out.len() < max {
                if fetch.drain(max - out.len(), &mut buf, |m| self.take_fetched(m, out)) == 0 {
                    break;
                }
            }
            self.drain_buf = buf;
        }
        self.report_gaps(fetch);
        if let Some(problem) = self.range_damaged.take() {
            return Err(SourceError::Fatal(format!("kafka: {problem}")));
        }
        Ok(())
    }

    /// Counts, with a WARN, the part of each gap read over that lies below its partition's
    /// log start: records retention (or a deletion) removed before the pipeline read them,
    /// after which librdkafka went on from the earliest record. Gaps above the log start
    /// are transaction markers, aborted ranges or compaction, and are not reported.
    /// The log start is looked up once per partition and read (a transactional topic has a
    /// gap at every commit marker).
    fn report_gaps(&mut self, fetch: Option<&FetchQueue>) {
        let mut starts: Vec<(usize, i32, Option<i64>)> = Vec::new();
        for gap in self.gaps.drain(..) {
            let topic = &self.topics[gap.topic].name;
            let known = starts
                .iter()
                .find(|(t, p, _)| *t == gap.topic && *p == gap.partition)
                .map(|(_, _, low)| *low);
            let low = known.unwrap_or_else(|| {
                let low = fetch.and_then(|f| f.log_start(topic, gap.partition));
                starts.push((gap.topic, gap.partition, low));
                low
            });
            let Some(low) = low else {
                continue;
            };
            let deleted_to = low.min(gap.to);
            if deleted_to <= gap.from {
                continue;
            }
            let skipped = (deleted_to - gap.from) as u64;
            tracing::warn!(
                topic = %topic,
                partition = gap.partition,
                first = gap.from,
                earliest = deleted_to,
                skipped,
                "kafka: records were deleted before they were read (retention overtook the pipeline); {skipped} records skipped, reading on from the earliest record"
            );
            self.state.add_skipped(skipped);
        }
    }

    /// Applies the value format. Avro records whose schema cannot be fetched right now are
    /// held back (with everything after them) for the next poll.
    async fn decode(&mut self, mut records: Vec<Record>) -> Result<Polled, SourceError> {
        match self.format {
            Format::Raw => {}
            Format::Json => records.iter_mut().for_each(decode::check_json),
            Format::Avro => {
                let Some(registry) = self.registry.as_mut() else {
                    return Err(SourceError::Fatal("avro format without a registry".into()));
                };
                for i in 0..records.len() {
                    if let Err(e) = decode::decode_avro(registry, &mut records[i]).await {
                        self.held = records.split_off(i);
                        let reason = e.to_string();
                        self.state.report_text(&reason);
                        if records.is_empty() {
                            return Err(match e {
                                SchemaError::Unauthorized(m) => SourceError::Unauthorized(m),
                                other => SourceError::Unavailable(other.to_string()),
                            });
                        }
                        break;
                    }
                }
            }
        }
        if records.is_empty() {
            return Ok(Polled::Idle);
        }
        self.state.mark_working();
        Ok(Polled::Records(records))
    }
}

#[async_trait]
impl Source for KafkaSource {
    async fn open(&mut self, ctx: SourceContext) -> Result<(), SourceError> {
        self.state.attach(ctx.health.clone());
        let consumer: KafkaConsumer = self
            .client_config
            .create_with_context(Context::new(self.state.clone()))
            .map_err(|e| SourceError::Fatal(format!("kafka consumer: {e}")))?;
        let fetch = FetchQueue::new(consumer.client().native_ptr())
            .map(Arc::new)
            .ok_or_else(|| SourceError::Fatal("kafka consumer: no fetch queue".into()))?;
        self.state.set_fetch_queue(fetch.clone());
        self.fetch = Some(fetch);
        if let Some(ranges) = &self.range {
            let mut tpl = TopicPartitionList::with_capacity(ranges.len());
            for r in ranges.iter().filter(|r| r.start < r.end) {
                tpl.add_partition_offset(&r.topic, r.partition, Offset::Offset(r.start))
                    .map_err(|e| SourceError::Fatal(format!("kafka range: {e}")))?;
            }
            self.state.adopt(&tpl);
            consumer
                .assign(&tpl)
                .map_err(|e| SourceError::Fatal(format!("kafka assign: {e}")))?;
            tracing::info!(pipeline = %ctx.pipeline, partitions = tpl.count(), "kafka range read assigned");
            self.consumer = Some(Arc::new(consumer));
            return Ok(());
        }
        let topics: Vec<&str> = self.subscription.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| SourceError::Fatal(format!("kafka subscribe {topics:?}: {e}")))?;
        tracing::info!(
            pipeline = %ctx.pipeline,
            topics = ?self.subscription,
            group = self.client_config.get("group.id").unwrap_or_default(),
            "kafka source subscribed"
        );
        self.consumer = Some(Arc::new(consumer));
        Ok(())
    }

    async fn poll(&mut self, max: usize) -> Result<Polled, SourceError> {
        if !self.held.is_empty() {
            let held = std::mem::take(&mut self.held);
            return self.decode(held).await;
        }
        if self.range.is_some() && self.range_done() {
            return Ok(Polled::Finished);
        }
        let records = self.read(max.max(1)).await?;
        if records.is_empty() {
            return Ok(Polled::Idle);
        }
        self.decode(records).await
    }

    async fn commit(&mut self, through: &[Origin]) -> Result<Vec<Checkpoint>, SourceError> {
        let Some(consumer) = &self.consumer else {
            return Ok(Vec::new());
        };
        if self.range.is_some() {
            // A range read keeps no position anywhere.
            return Ok(Vec::new());
        }
        let mut tpl = TopicPartitionList::with_capacity(through.len());
        for o in through {
            let Some(p) = self.partition(&o.stream, o.partition) else {
                continue;
            };
            match p.floor {
                Some(floor) if o.offset >= floor => {}
                // Read before the partition was last assigned: storing it could move the
                // group's offset back; the records after it will commit past it.
                _ => continue,
            }
            let mut e = tpl.add_partition(&o.stream, o.partition);
            e.set_offset(Offset::Offset(o.offset + 1))
                .map_err(|e| SourceError::Fatal(format!("kafka offset list: {e}")))?;
            // Stored with the offset, and so committed atomically with it.
            if let Some(note) = self.notes.get(&(o.stream.clone(), o.partition)) {
                e.set_metadata(note);
            }
        }
        if tpl.count() == 0 {
            return Ok(Vec::new());
        }
        match consumer.store_offsets(&tpl) {
            Ok(()) => {}
            // None of the partitions is assigned any more (revoked meanwhile): their next
            // owner reads those records again.
            Err(KafkaError::StoreOffset(
                RDKafkaErrorCode::State | RDKafkaErrorCode::UnknownPartition,
            )) => {
                tracing::debug!("kafka offsets not stored: partitions no longer assigned");
            }
            Err(e) => {
                return Err(SourceError::Unavailable(format!(
                    "kafka store offsets: {e}"
                )))
            }
        }
        Ok(Vec::new())
    }

    fn keeps_notes(&self) -> bool {
        // A range read commits nothing, so it has nowhere to keep notes.
        self.range.is_none()
    }

    fn note(&mut self, notes: Vec<(Arc<str>, i32, String)>) {
        for (stream, partition, note) in notes {
            self.notes.insert((stream, partition), note);
        }
    }

    fn take_assigned_notes(&mut self) -> Vec<sluice_sdk::Resumed> {
        self.state.take_assigned_notes()
    }

    fn lag(&self) -> Option<u64> {
        self.state.lag()
    }

    fn take_skipped(&mut self) -> u64 {
        self.state.take_skipped()
    }

    fn positions(&self) -> Option<Vec<PartitionPosition>> {
        self.consumer.as_ref().map(|_| self.state.positions())
    }

    async fn stored_positions(&mut self) -> Result<Option<Vec<PartitionPosition>>, SourceError> {
        let config = self.client_config.clone();
        let subscription = self.subscription.clone();
        tokio::task::spawn_blocking(move || {
            let consumer: rdkafka::consumer::BaseConsumer = config
                .create()
                .map_err(|e| SourceError::Fatal(format!("kafka consumer: {e}")))?;
            crate::positions::stored(&consumer, &subscription)
                .map(Some)
                .map_err(|e| SourceError::Unavailable(format!("kafka: {e}")))
        })
        .await
        .map_err(|e| SourceError::Fatal(format!("kafka positions: {e}")))?
    }

    async fn close(&mut self) -> Result<(), SourceError> {
        self.drop_fetch_queue();
        let Some(consumer) = self.consumer.take() else {
            return Ok(());
        };
        if self.range.is_some() {
            // A range read has nothing to commit and no group to leave: nothing waits for
            // its client's threads to be joined.
            std::thread::spawn(move || drop(consumer));
            return Ok(());
        }
        // Closing commits the stored offsets and leaves the group; it blocks on the broker,
        // so it runs off the async workers.
        tokio::task::spawn_blocking(move || drop(consumer))
            .await
            .map_err(|e| SourceError::Fatal(format!("kafka consumer close: {e}")))?;
        Ok(())
    }
}

impl KafkaSource {
    /// Drops the fetch queue, which must go before its consumer.
    fn drop_fetch_queue(&mut self) {
        self.fetch = None;
        drop(self.state.take_fetch_queue());
    }
}

impl Drop for KafkaSource {
    fn drop(&mut self) {
        // Runs before the fields: the consumer is dropped after its queue.
        self.drop_fetch_queue();
    }
}

/// Resolves when a message may have arrived in the fetch queue; never without one.
async fn arrival(fetch: Option<&FetchQueue>) {
    match fetch {
        Some(f) => f.arrived().await,
        None => std::future::pending().await,
    }
}
