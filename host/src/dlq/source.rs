//! The dead-letter source: a pipeline source (for `runtime::run_once`) that reads a DLQ's
//! letters as the records they were, skips those replayed already and those the filters leave
//! out, and saves the positions of the letters the run finished (delivered or dead-lettered
//! again) as its checkpoints: the replay cursor.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sluice_sdk::{
    async_trait, Checkpoint, Origin, Polled, Record, ReplayContext, Source, SourceContext,
    SourceError,
};

use super::cursor::RangeSet;
use super::letters::{FileLetters, Letter, LetterError, RawLines};

/// Which letters a replay (or a listing) takes.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub kind: Option<String>,
    /// `Some(None)`: the letters that name no sink; `Some(Some(s))`: those of sink `s`.
    pub sink: Option<Option<String>>,
    /// Only letters of this stage (`TASK_PUT`).
    pub stage: Option<String>,
    /// Written at or after / before, in milliseconds since the epoch.
    pub since: Option<i64>,
    pub until: Option<i64>,
}

impl Selection {
    pub fn takes(&self, l: &Letter) -> bool {
        let c = &l.context;
        if self.kind.as_deref().is_some_and(|k| k != c.kind) {
            return false;
        }
        if self.stage.as_deref().is_some_and(|s| s != c.stage) {
            return false;
        }
        if let Some(sink) = &self.sink {
            if sink.as_deref() != c.sink.as_deref() {
                return false;
            }
        }
        if let Some(since) = self.since {
            if c.at.is_none_or(|at| at < since) {
                return false;
            }
        }
        if let Some(until) = self.until {
            if c.at.is_none_or(|at| at >= until) {
                return false;
            }
        }
        true
    }
}

/// Where a DLQ's letters come from.
pub enum Letters {
    File(FileLetters),
    /// Handed over to a reading thread.
    Empty,
    #[cfg(feature = "kafka")]
    Kafka(KafkaLetters),
}

/// A Kafka DLQ topic being read, with what was fetched and not yet handed out.
#[cfg(feature = "kafka")]
pub struct KafkaLetters {
    pub reader: sluice_kafka::DlqReader,
    pub buffered: VecDeque<sluice_kafka::DlqMessage>,
    pub done: bool,
}

#[cfg(feature = "kafka")]
impl KafkaLetters {
    fn next(
        &mut self,
        done: &BTreeMap<i32, RangeSet>,
        passed: &mut u64,
    ) -> Result<Option<Result<Letter, LetterError>>, LetterError> {
        loop {
            if self.buffered.is_empty() {
                if self.done {
                    return Ok(None);
                }
                let reader = &mut self.reader;
                let read =
                    tokio::task::block_in_place(|| reader.read(4096, Duration::from_millis(100)))
                        .map_err(LetterError::Kafka)?;
                match read {
                    None => {
                        self.done = true;
                        return Ok(None);
                    }
                    // Nothing within the wait but not at the end yet: the letters
                    // exist, the broker is on its way.
                    Some(v) => self.buffered.extend(v),
                }
            }
            let Some(m) = self.buffered.pop_front() else {
                continue;
            };
            if done.get(&m.partition).is_some_and(|r| r.contains(m.offset)) {
                *passed += 1;
                continue;
            }
            let (topic, partition, offset) =
                (self.reader.topic().to_string(), m.partition, m.offset);
            return Ok(Some(super::letters::from_kafka(m).map_err(|message| {
                LetterError::MalformedMessage {
                    topic,
                    partition,
                    offset,
                    message,
                }
            })));
        }
    }
}

impl Letters {
    /// The next letter not in `done` (counting those passed over in `passed`); `None` at the
    /// end as of opening.
    pub fn next(
        &mut self,
        done: &BTreeMap<i32, RangeSet>,
        passed: &mut u64,
    ) -> Result<Option<Result<Letter, LetterError>>, LetterError> {
        match self {
            #[cfg(feature = "kafka")]
            Letters::Kafka(k) => k.next(done, passed),
            Letters::Empty => Ok(None),
            Letters::File(f) => {
                let replayed = done.get(&0);
                let n = std::cell::Cell::new(0u64);
                let next = f.next_letter(|p| {
                    let skip = replayed.is_some_and(|r| r.contains(p));
                    n.set(n.get() + u64::from(skip));
                    skip
                });
                *passed += n.get();
                next
            }
        }
    }

    /// How far reading got, and where it ends, for progress.
    pub fn progress(&self) -> (u64, u64) {
        match self {
            Letters::File(f) => (f.position() as u64, f.end() as u64),
            Letters::Empty => (0, 0),
            #[cfg(feature = "kafka")]
            Letters::Kafka(k) => k.reader.progress(),
        }
    }

    /// After letters were replayed: a Kafka DLQ's replay group commits, per partition, where
    /// every letter below is replayed (from where reading started), so its lag is what is left.
    pub fn replayed(&self, done: &BTreeMap<i32, RangeSet>) -> Result<(), LetterError> {
        match self {
            Letters::File(_) | Letters::Empty => Ok(()),
            #[cfg(feature = "kafka")]
            Letters::Kafka(k) => {
                let offsets: Vec<(i32, i64)> = k
                    .reader
                    .starts()
                    .into_iter()
                    .filter_map(|(p, start)| {
                        let upto = done.get(&p)?.covered_from(start);
                        (upto > start).then_some((p, upto))
                    })
                    .collect();
                if offsets.is_empty() {
                    return Ok(());
                }
                let reader = &k.reader;
                tokio::task::block_in_place(|| reader.commit(&offsets)).map_err(LetterError::Kafka)
            }
        }
    }
}

/// Counts shown while a replay runs and in its summary.
#[derive(Debug, Default)]
pub struct Counts {
    /// Letters sent into the pipeline.
    pub sent: AtomicU64,
    /// Letters the run finished (delivered, filtered by a transform, or dead-lettered again).
    pub done: AtomicU64,
    pub skipped_by_filter: AtomicU64,
    pub replayed_before: AtomicU64,
    /// Bytes (file) or letters (Kafka) read of what there is to read, for the progress bar.
    pub read_position: AtomicU64,
    pub read_end: AtomicU64,
}

/// The letters a run has in flight, by partition in DLQ order: their span and what they carry
/// into a new failure. Shared with the run's dead-letter path ([`InFlight::lookup`]).
#[derive(Default)]
pub struct InFlight {
    parts: Mutex<BTreeMap<i32, VecDeque<Sent>>>,
}

/// A letter sent by this run: its span in the DLQ and what it carries into a new failure.
type Sent = (i64, i64, Arc<ReplayContext>);

impl InFlight {
    /// The letter at `origin`, if it is one this run sent.
    pub fn lookup(&self, origin: &Origin) -> Option<Arc<ReplayContext>> {
        let parts = self.parts.lock();
        let q = parts.get(&origin.partition)?;
        let i = q.partition_point(|e| e.0 < origin.offset);
        q.get(i)
            .filter(|e| e.0 == origin.offset)
            .map(|e| e.2.clone())
    }
}

/// Letters of a file DLQ read on a thread of their own and parsed and selected on a few
/// more: parsing is most of a replay's work, and this way it is spread over the cores and
/// overlaps with delivery and tracking. Chunk `k` of lines goes to parser `k % n`, and the
/// source takes each parser's answer in turn, so letters keep the file's order.
struct Ahead {
    parsed: Vec<tokio::sync::mpsc::Receiver<Parsed>>,
    /// The parser whose answer comes next.
    turn: usize,
    buffered: VecDeque<Letter>,
    /// A malformed line (or a read error) met after the letters buffered: reported once
    /// they are handed out.
    failed: Option<LetterError>,
    ended: bool,
}

/// A parser's answer for one chunk: its selected letters, up to the first malformed line.
struct Parsed {
    letters: Vec<Letter>,
    failed: Option<LetterError>,
}

/// Lines per chunk handed to a parser.
const AHEAD_BATCH: usize = 1024;

/// Parsing threads: one per core, at least one and at most four.
fn parsers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 4))
}

impl Ahead {
    fn start(
        letters: Letters,
        done: BTreeMap<i32, RangeSet>,
        selection: Selection,
        counts: Arc<Counts>,
    ) -> std::io::Result<Ahead> {
        let Letters::File(mut file) = letters else {
            return Ok(Ahead {
                parsed: Vec::new(),
                turn: 0,
                buffered: VecDeque::new(),
                failed: None,
                ended: true,
            });
        };
        let path = file.path().to_path_buf();
        let mut chunks = Vec::new();
        let mut parsed = Vec::new();
        for i in 0..parsers() {
            let (chunk_tx, chunk_rx) =
                std::sync::mpsc::sync_channel::<Result<RawLines, LetterError>>(2);
            let (tx, rx) = tokio::sync::mpsc::channel(2);
            let (selection, counts, path) = (selection.clone(), counts.clone(), path.clone());
            std::thread::Builder::new()
                .name(format!("dlq-parser-{i}"))
                .spawn(move || {
                    for chunk in chunk_rx {
                        let mut letters = Vec::with_capacity(AHEAD_BATCH);
                        let failed = chunk
                            .and_then(|raw| {
                                raw.parse(&path, |l| {
                                    if selection.takes(&l) {
                                        letters.push(l);
                                    } else {
                                        counts.skipped_by_filter.fetch_add(1, Ordering::Relaxed);
                                    }
                                })
                            })
                            .err();
                        let stop = failed.is_some();
                        // Every chunk is answered, even with nothing, to keep the turns.
                        if tx.blocking_send(Parsed { letters, failed }).is_err() || stop {
                            return;
                        }
                    }
                })?;
            chunks.push(chunk_tx);
            parsed.push(rx);
        }
        let replayed = done.get(&0).cloned().unwrap_or_default();
        std::thread::Builder::new()
            .name("dlq-reader".into())
            .spawn(move || {
                for turn in (0..chunks.len()).cycle() {
                    let mut raw = RawLines::default();
                    let passed = std::cell::Cell::new(0u64);
                    let read = file.read_lines(
                        AHEAD_BATCH,
                        |p| {
                            let skip = replayed.contains(p);
                            passed.set(passed.get() + u64::from(skip));
                            skip
                        },
                        &mut raw,
                    );
                    counts
                        .replayed_before
                        .fetch_add(passed.get(), Ordering::Relaxed);
                    counts
                        .read_position
                        .store(file.position() as u64, Ordering::Relaxed);
                    let more = matches!(read, Ok(true));
                    // The source is gone (the run stopped): nothing more to read. At the end
                    // the senders are dropped and the parsers finish what they hold.
                    if chunks[turn].send(read.map(|_| raw)).is_err() || !more {
                        return;
                    }
                }
            })?;
        Ok(Ahead {
            parsed,
            turn: 0,
            buffered: VecDeque::new(),
            failed: None,
            ended: false,
        })
    }

    /// Waits (a little) for letters; `false` when none came in time and more may come.
    async fn fill(&mut self) -> Result<bool, SourceError> {
        let deadline = tokio::time::Instant::now() + POLL_BUDGET;
        while self.buffered.is_empty() && !self.ended {
            if let Some(e) = self.failed.take() {
                return Err(SourceError::Fatal(e.to_string()));
            }
            let Some(rx) = self.parsed.get_mut(self.turn) else {
                self.ended = true;
                break;
            };
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Err(_) => return Ok(false),
                // That parser got no more chunks: the reader reached the end.
                Ok(None) => self.ended = true,
                Ok(Some(Parsed { letters, failed })) => {
                    self.buffered.extend(letters);
                    self.failed = failed;
                    self.turn = (self.turn + 1) % self.parsed.len();
                }
            }
        }
        Ok(true)
    }
}

/// Reads one DLQ for a replay.
pub struct DeadLetterSource {
    letters: Letters,
    /// The records' stream name (the DLQ's path or topic).
    stream: Arc<str>,
    selection: Selection,
    limit: Option<u64>,
    /// The positions replayed (by earlier runs, and by this one as records finish).
    done: BTreeMap<i32, RangeSet>,
    in_flight: Arc<InFlight>,
    counts: Arc<Counts>,
    finished: bool,
    /// A file DLQ's letters, once open: read on their own thread.
    ahead: Option<Ahead>,
}

impl DeadLetterSource {
    /// Up to `room` selected letters read on this task (a Kafka DLQ, whose reader also
    /// commits the replay group).
    fn read_inline(&mut self, room: usize) -> Result<Vec<Letter>, SourceError> {
        let started = Instant::now();
        let mut taken = Vec::with_capacity(room.min(4096));
        let mut read = 0usize;
        while taken.len() < room {
            let mut passed = 0;
            let next = self
                .letters
                .next(&self.done, &mut passed)
                .map_err(|e| SourceError::Fatal(e.to_string()))?;
            self.counts
                .replayed_before
                .fetch_add(passed, Ordering::Relaxed);
            let letter = match next {
                None => {
                    self.finished = true;
                    break;
                }
                Some(Err(e)) => return Err(SourceError::Fatal(e.to_string())),
                Some(Ok(l)) => l,
            };
            read += 1;
            if self.selection.takes(&letter) {
                taken.push(letter);
            } else {
                self.counts
                    .skipped_by_filter
                    .fetch_add(1, Ordering::Relaxed);
            }
            if read.is_multiple_of(1024) && started.elapsed() > POLL_BUDGET {
                break;
            }
        }
        Ok(taken)
    }

    pub fn new(
        letters: Letters,
        stream: Arc<str>,
        selection: Selection,
        limit: Option<u64>,
        in_flight: Arc<InFlight>,
        counts: Arc<Counts>,
    ) -> Self {
        DeadLetterSource {
            letters,
            stream,
            selection,
            limit,
            done: BTreeMap::new(),
            in_flight,
            counts,
            finished: false,
            ahead: None,
        }
    }

    fn record(&self, l: Letter) -> Record {
        Record {
            key: l.key,
            value: l.value,
            headers: l.headers,
            timestamp: l.timestamp,
            origin: Origin::new(self.stream.clone(), l.partition, l.position),
            decode_error: None,
            json_checked: Default::default(),
        }
    }
}

/// How long one poll may read before it hands back what it has (the host wants an answer
/// within about 100 ms).
const POLL_BUDGET: Duration = Duration::from_millis(50);

#[async_trait]
impl Source for DeadLetterSource {
    async fn open(&mut self, ctx: SourceContext) -> Result<(), SourceError> {
        for (partition, text) in &ctx.checkpoints {
            let set = RangeSet::parse(text).map_err(|e| SourceError::Fatal(e.to_string()))?;
            self.done.insert(*partition, set);
        }
        self.counts
            .read_end
            .store(self.letters.progress().1, Ordering::Relaxed);
        if matches!(self.letters, Letters::File(_)) {
            let letters = std::mem::replace(&mut self.letters, Letters::Empty);
            let ahead = Ahead::start(
                letters,
                self.done.clone(),
                self.selection.clone(),
                self.counts.clone(),
            )
            .map_err(|e| SourceError::Fatal(format!("cannot start the DLQ reader: {e}")))?;
            self.ahead = Some(ahead);
        }
        Ok(())
    }

    async fn poll(&mut self, max: usize) -> Result<Polled, SourceError> {
        if self.finished {
            return Ok(Polled::Finished);
        }
        let sent = self.counts.sent.load(Ordering::Relaxed);
        let room = match self.limit {
            Some(l) => max.min(l.saturating_sub(sent) as usize),
            None => max,
        };
        if room == 0 {
            self.finished = true;
            return Ok(Polled::Finished);
        }
        let taken = match &mut self.ahead {
            Some(ahead) => {
                if !ahead.fill().await? {
                    return Ok(Polled::Idle);
                }
                let n = room.min(ahead.buffered.len());
                let taken: Vec<Letter> = ahead.buffered.drain(..n).collect();
                if ahead.buffered.is_empty() && ahead.ended {
                    self.finished = true;
                }
                taken
            }
            None => self.read_inline(room)?,
        };
        let mut out = Vec::with_capacity(taken.len());
        let mut replays = Vec::with_capacity(taken.len());
        for mut letter in taken {
            let context = std::mem::take(&mut letter.context);
            replays.push((
                letter.partition,
                letter.position,
                letter.end,
                Arc::new(context.into_replay()),
            ));
            out.push(self.record(letter));
        }
        if self.ahead.is_none() {
            self.counts
                .read_position
                .store(self.letters.progress().0, Ordering::Relaxed);
        }
        if !replays.is_empty() {
            let mut parts = self.in_flight.parts.lock();
            for (partition, start, end, ctx) in replays {
                parts
                    .entry(partition)
                    .or_default()
                    .push_back((start, end, ctx));
            }
        }
        self.counts
            .sent
            .fetch_add(out.len() as u64, Ordering::Relaxed);
        if out.is_empty() && self.finished {
            return Ok(Polled::Finished);
        }
        Ok(Polled::Records(out))
    }

    async fn commit(&mut self, through: &[Origin]) -> Result<Vec<Checkpoint>, SourceError> {
        let mut changed = Vec::new();
        {
            let mut parts = self.in_flight.parts.lock();
            for o in through {
                let Some(q) = parts.get_mut(&o.partition) else {
                    continue;
                };
                let set = self.done.entry(o.partition).or_default();
                let mut n = 0u64;
                while let Some(&(start, end, _)) = q.front() {
                    if start > o.offset {
                        break;
                    }
                    set.insert(start, end);
                    q.pop_front();
                    n += 1;
                }
                self.counts.done.fetch_add(n, Ordering::Relaxed);
                changed.push(o.partition);
            }
        }
        if !changed.is_empty() {
            self.letters
                .replayed(&self.done)
                .map_err(|e| SourceError::Unavailable(e.to_string()))?;
        }
        Ok(changed
            .into_iter()
            .filter_map(|p| {
                self.done.get(&p).map(|set| Checkpoint {
                    partition: p,
                    position: set.to_string(),
                })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::{DeadLetter, ErrorContext, Health, Stage};

    /// A file DLQ of `kinds.len()` letters, one per kind given.
    fn dlq(dir: &std::path::Path, kinds: &[&str]) -> std::path::PathBuf {
        let path = dir.join("p.jsonl");
        let mut body = Vec::new();
        for (i, kind) in kinds.iter().enumerate() {
            let r = Record::new(
                format!(r#"{{"i":{i}}}"#).into_bytes(),
                Origin::new("src".into(), 0, i as i64 * 10),
            );
            let error = ErrorContext {
                pipeline: "p".into(),
                stage: Stage::Sink,
                kind: kind.to_string(),
                message: "m".into(),
                attempts: 1,
                sink: None,
                replay: None,
            };
            let line = sluice_builtin::file_dlq_line(&DeadLetter {
                record: &r,
                error: &error,
            });
            serde_json::to_writer(&mut body, &line).unwrap();
            body.push(b'\n');
        }
        std::fs::write(&path, body).unwrap();
        path
    }

    fn source(path: &std::path::Path, kind: Option<&str>) -> (DeadLetterSource, Arc<InFlight>) {
        let in_flight = Arc::new(InFlight::default());
        let s = DeadLetterSource::new(
            Letters::File(FileLetters::open(path).unwrap()),
            "dlq".into(),
            Selection {
                kind: kind.map(str::to_string),
                ..Selection::default()
            },
            None,
            in_flight.clone(),
            Arc::new(Counts::default()),
        );
        (s, in_flight)
    }

    fn ctx(checkpoint: Option<&str>) -> SourceContext {
        SourceContext {
            pipeline: "p".into(),
            checkpoints: checkpoint
                .map(|c| [(0, c.to_string())].into_iter().collect())
                .unwrap_or_default(),
            health: Health::new(),
        }
    }

    async fn records(s: &mut DeadLetterSource) -> Vec<Record> {
        let mut all = Vec::new();
        loop {
            match s.poll(100).await.unwrap() {
                Polled::Records(r) => all.extend(r),
                Polled::Finished => return all,
                Polled::Idle => {}
            }
        }
    }

    #[tokio::test]
    async fn only_what_finished_is_saved_and_filters_leave_the_rest_for_later() {
        let dir = tempfile::tempdir().unwrap();
        let path = dlq(dir.path(), &["a", "b", "a", "a", "b"]);
        let (mut s, in_flight) = source(&path, Some("a"));
        s.open(ctx(None)).await.unwrap();
        let sent = records(&mut s).await;
        assert_eq!(sent.len(), 3);
        let values: Vec<&[u8]> = sent.iter().map(|r| &r.value[..]).collect();
        assert_eq!(values, [&br#"{"i":0}"#[..], br#"{"i":2}"#, br#"{"i":3}"#]);
        // What a letter that fails again keeps: the source record's position.
        let back = in_flight.lookup(&sent[1].origin).unwrap();
        assert_eq!((back.offset.as_str(), back.count), ("20", 1));
        // The first two finished; the third is still in flight.
        let saved = s.commit(&[sent[1].origin.clone()]).await.unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let mut starts = vec![0i64];
        starts.extend(
            bytes
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i as i64 + 1),
        );
        assert_eq!(sent[1].origin.offset, starts[2]);
        assert_eq!(
            saved[0].position,
            format!("0-{},{}-{}", starts[1], starts[2], starts[3]),
            "letters 0 and 2, not 1 (another kind)"
        );
        assert!(
            in_flight.lookup(&sent[0].origin).is_none(),
            "done: forgotten"
        );
        assert!(in_flight.lookup(&sent[2].origin).is_some());

        // The next replay of everything sends the letters not finished: 1, 3 and 4.
        let (mut s, _) = source(&path, None);
        s.open(ctx(Some(&saved[0].position))).await.unwrap();
        let again = records(&mut s).await;
        let values: Vec<&[u8]> = again.iter().map(|r| &r.value[..]).collect();
        assert_eq!(values, [&br#"{"i":1}"#[..], br#"{"i":3}"#, br#"{"i":4}"#]);
        let last = again.last().unwrap().origin.clone();
        let saved = s.commit(&[last]).await.unwrap();
        let end = std::fs::metadata(&path).unwrap().len();
        assert_eq!(saved[0].position, format!("0-{end}"));
        assert_eq!(s.counts.replayed_before.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn letters_parsed_on_several_threads_keep_the_file_order_and_stop_at_a_bad_line() {
        let dir = tempfile::tempdir().unwrap();
        let kinds: Vec<&str> = (0..5_000)
            .map(|i| if i % 3 == 0 { "b" } else { "a" })
            .collect();
        let path = dlq(dir.path(), &kinds);
        let (mut s, _) = source(&path, Some("a"));
        s.open(ctx(None)).await.unwrap();
        let sent = records(&mut s).await;
        let want: Vec<String> = (0..5_000)
            .filter(|i| i % 3 != 0)
            .map(|i| format!(r#"{{"i":{i}}}"#))
            .collect();
        let got: Vec<String> = sent
            .iter()
            .map(|r| String::from_utf8(r.value.to_vec()).unwrap())
            .collect();
        assert_eq!(got, want, "every selected letter once, in the file's order");
        assert!(sent
            .windows(2)
            .all(|w| w[0].origin.offset < w[1].origin.offset));
        assert_eq!(s.counts.skipped_by_filter.load(Ordering::Relaxed), 1_667);

        // A malformed line in the fourth chunk: the letters before it come out, then the error
        // naming it; nothing after it.
        let mut body = std::fs::read(&path).unwrap();
        let line_starts: Vec<usize> = std::iter::once(0)
            .chain(
                body.iter()
                    .enumerate()
                    .filter(|(_, b)| **b == b'\n')
                    .map(|(i, _)| i + 1),
            )
            .collect();
        let bad = 3_500;
        body.splice(
            line_starts[bad]..line_starts[bad + 1] - 1,
            *b"{\"value\":\"v\"}",
        );
        std::fs::write(&path, &body).unwrap();
        let (mut s, _) = source(&path, None);
        s.open(ctx(None)).await.unwrap();
        let mut seen = 0;
        let error = loop {
            match s.poll(100).await {
                Ok(Polled::Records(r)) => seen += r.len(),
                Ok(Polled::Idle) => {}
                Ok(Polled::Finished) => panic!("the bad line was passed over"),
                Err(e) => break e.to_string(),
            }
        };
        assert_eq!(seen, bad);
        assert!(error.contains(&format!(":{} (byte ", bad + 1)), "{error}");
    }
}
