//! The `sluice dlq` commands: what the operator sees, and the replay run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::source::{Counts, DeadLetterSource, InFlight, Selection};
use super::{dlqs_of, open_letters, Dlq, DlqError, Letter, RangeSet};
use crate::pipeline::{HostEnv, Input, PipelineDef, PipelineError, RunEnd};
use crate::progress_bar::{Progress, TICK};
use crate::status::PipelineStatus;
use crate::{emit, prepare, Plugins};

/// A time given as RFC 3339 or as a humantime duration before now (`2h`), in milliseconds
/// since the epoch.
pub fn parse_when(text: &str) -> Result<i64, String> {
    if let Some(ms) = super::letters::parse_time(text) {
        return Ok(ms);
    }
    let ago = humantime::parse_duration(text)
        .map_err(|_| format!("`{text}` is neither an RFC 3339 time nor a duration such as `2h`"))?;
    Ok(chrono::Utc::now().timestamp_millis() - ago.as_millis() as i64)
}

/// Every letter of a DLQ in order, with whether a replay sent it already.
fn each_letter(dlq: &Dlq, mut f: impl FnMut(Letter, bool) -> bool) -> Result<(), DlqError> {
    let replayed = dlq.replayed()?;
    let mut letters = open_letters(dlq, true)?;
    let none = BTreeMap::new();
    let mut passed = 0;
    while let Some(l) = letters.next(&none, &mut passed)? {
        let l = l?;
        let done = replayed
            .get(&l.partition)
            .is_some_and(|r: &RangeSet| r.contains(l.position));
        if !f(l, done) {
            break;
        }
    }
    Ok(())
}

fn load(
    config: &[PathBuf],
    plugins: Plugins,
) -> Result<
    (
        crate::config::Config,
        sluice_sdk::Registry,
        Vec<PipelineDef>,
    ),
    ExitCode,
> {
    prepare(config, plugins)
}

fn find<'a>(defs: &'a [PipelineDef], name: &str) -> Result<&'a PipelineDef, ExitCode> {
    defs.iter().find(|d| &*d.name == name).ok_or_else(|| {
        let names: Vec<&str> = defs.iter().map(|d| &*d.name).collect();
        eprintln!(
            "error: no pipeline `{name}` in the configuration (pipelines: {})",
            names.join(", ")
        );
        ExitCode::from(1)
    })
}

#[derive(Default)]
struct Group {
    letters: u64,
    pending: u64,
    oldest: Option<(i64, String)>,
    newest: Option<(i64, String)>,
}

/// `sluice dlq list`: letters per pipeline, DLQ, sink, kind and stage.
pub fn list(config: &[PathBuf], pipeline: Option<&str>, as_json: bool) -> ExitCode {
    let (_, _, defs) = match load(config, Plugins::CheckOnly) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let selected: Vec<&PipelineDef> = match pipeline {
        Some(p) => match find(&defs, p) {
            Ok(d) => vec![d],
            Err(c) => return c,
        },
        None => defs.iter().collect(),
    };
    let mut rows = Vec::new();
    for def in selected {
        let dlqs = match dlqs_of(def) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("error: pipeline `{}`: {e}", def.name);
                return ExitCode::from(1);
            }
        };
        for dlq in &dlqs {
            let mut groups: BTreeMap<(String, String, String), Group> = BTreeMap::new();
            let read = each_letter(dlq, |l, done| {
                let c = &l.context;
                let g = groups
                    .entry((
                        c.sink.clone().unwrap_or_default(),
                        c.kind.clone(),
                        c.stage.clone(),
                    ))
                    .or_default();
                g.letters += 1;
                if !done {
                    g.pending += 1;
                }
                if let (Some(at), Some(text)) = (c.at, &c.at_text) {
                    if g.oldest.as_ref().is_none_or(|o| at < o.0) {
                        g.oldest = Some((at, text.clone()));
                    }
                    if g.newest.as_ref().is_none_or(|n| at > n.0) {
                        g.newest = Some((at, text.clone()));
                    }
                }
                true
            });
            if let Err(e) = read {
                eprintln!("error: pipeline `{}`: {e}", def.name);
                return ExitCode::from(1);
            }
            for ((sink, kind, stage), g) in groups {
                rows.push(json!({
                    "pipeline": &*def.name,
                    "dlq": dlq.describe(),
                    "sink": if sink.is_empty() { Value::Null } else { Value::String(sink) },
                    "kind": kind,
                    "stage": stage,
                    "letters": g.letters,
                    "pending": g.pending,
                    "oldest": g.oldest.map(|o| o.1),
                    "newest": g.newest.map(|n| n.1),
                }));
            }
        }
    }
    if as_json {
        return emit(&format!("{}\n", Value::Array(rows)));
    }
    if rows.is_empty() {
        return emit("no dead letters\n");
    }
    let s = |v: &Value| v.as_str().unwrap_or("-").to_string();
    let mut text = format!(
        "{:<20} {:<12} {:<24} {:<16} {:>8} {:>8}  {:<24} {:<24} DLQ\n",
        "PIPELINE", "SINK", "KIND", "STAGE", "LETTERS", "PENDING", "OLDEST", "NEWEST"
    );
    for r in &rows {
        let _ = writeln!(
            text,
            "{:<20} {:<12} {:<24} {:<16} {:>8} {:>8}  {:<24} {:<24} {}",
            s(&r["pipeline"]),
            s(&r["sink"]),
            s(&r["kind"]),
            s(&r["stage"]),
            r["letters"].as_u64().unwrap_or_default(),
            r["pending"].as_u64().unwrap_or_default(),
            s(&r["oldest"]),
            s(&r["newest"]),
            s(&r["dlq"]),
        );
    }
    emit(&text)
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn letter_json(dlq: &Dlq, l: &Letter, replayed: bool) -> Value {
    let c = &l.context;
    json!({
        "dlq": dlq.describe(),
        "partition": l.partition,
        "position": l.position,
        "replayed": replayed,
        "kind": c.kind,
        "stage": c.stage,
        "message": c.message,
        "sink": c.sink,
        "attempts": c.attempts,
        "dead_lettered_at": c.at_text,
        "source": { "topic": c.topic, "partition": c.partition, "offset": c.offset },
        "replay_count": c.replay_count,
        "original": c.original.as_ref().map(|(k, s, m)| json!({"kind": k, "stage": s, "message": m})),
        "timestamp": l.timestamp,
        "key": l.key.as_deref().map(lossy),
        "headers": l.headers.iter().map(|h| json!({"key": h.key, "value": h.value.as_deref().map(lossy)})).collect::<Vec<_>>(),
        "value": lossy(&l.value),
    })
}

/// `sluice dlq show`: the letters of one pipeline with their context, oldest first.
pub fn show(
    config: &[PathBuf],
    pipeline: &str,
    kind: Option<&str>,
    limit: Option<usize>,
    as_json: bool,
) -> ExitCode {
    let (_, _, defs) = match load(config, Plugins::CheckOnly) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let def = match find(&defs, pipeline) {
        Ok(d) => d,
        Err(c) => return c,
    };
    let dlqs = match dlqs_of(def) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: pipeline `{pipeline}`: {e}");
            return ExitCode::from(1);
        }
    };
    let limit = limit.unwrap_or(usize::MAX);
    let mut shown = Vec::new();
    for dlq in &dlqs {
        let read = each_letter(dlq, |l, replayed| {
            if kind.is_none_or(|k| k == l.context.kind) {
                shown.push(letter_json(dlq, &l, replayed));
            }
            shown.len() < limit
        });
        if let Err(e) = read {
            eprintln!("error: pipeline `{pipeline}`: {e}");
            return ExitCode::from(1);
        }
        if shown.len() >= limit {
            break;
        }
    }
    if as_json {
        return emit(&format!("{}\n", Value::Array(shown)));
    }
    let mut text = String::new();
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    for l in &shown {
        let _ = writeln!(
            text,
            "--- {} position {}{}",
            s(&l["dlq"]),
            l["position"],
            if l["replayed"] == true {
                " (replayed)"
            } else {
                ""
            }
        );
        let _ = writeln!(
            text,
            "kind: {}  stage: {}  sink: {}  attempts: {}  at: {}",
            s(&l["kind"]),
            s(&l["stage"]),
            s(&l["sink"]),
            s(&l["attempts"]),
            s(&l["dead_lettered_at"])
        );
        let src = &l["source"];
        let _ = writeln!(
            text,
            "source: {} partition {} offset {}",
            s(&src["topic"]),
            s(&src["partition"]),
            s(&src["offset"])
        );
        if let Some(o) = l["original"].as_object() {
            let _ = writeln!(
                text,
                "replays: {}  first failure: {} at {}: {}",
                l["replay_count"],
                s(&o["kind"]),
                s(&o["stage"]),
                s(&o["message"])
            );
        }
        let _ = writeln!(text, "message: {}", s(&l["message"]));
        if !l["key"].is_null() {
            let _ = writeln!(text, "key: {}", s(&l["key"]));
        }
        for h in l["headers"].as_array().into_iter().flatten() {
            let _ = writeln!(text, "header: {}={}", s(&h["key"]), s(&h["value"]));
        }
        let _ = writeln!(text, "value: {}", s(&l["value"]));
    }
    if shown.is_empty() {
        text.push_str("no dead letters\n");
    }
    emit(&text)
}

/// What `sluice dlq replay` was asked.
pub struct ReplayArgs {
    pub config: Vec<PathBuf>,
    pub pipeline: String,
    pub sink: Option<String>,
    pub kind: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub limit: Option<u64>,
    pub dry_run: bool,
}

/// The pipeline a `--sink S` replay runs: no pipeline transforms, no routing, only `S` (with
/// its own transforms, batching, retry and DLQ).
fn straight_to(
    def: &PipelineDef,
    sink: &str,
    registry: &sluice_sdk::Registry,
    data_dir: &std::path::Path,
) -> Result<PipelineDef, String> {
    let mut cfg = def.cfg.clone();
    cfg.transforms.clear();
    if cfg.sink.is_none() {
        cfg.sinks.retain(|s| s.name == sink);
        for s in &mut cfg.sinks {
            s.route = None;
        }
    }
    PipelineDef::validate(&cfg, registry, data_dir).map_err(|errors| {
        errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// `sluice dlq replay`.
pub async fn replay(a: ReplayArgs) -> ExitCode {
    let (cfg, registry, defs) = match load(&a.config, Plugins::Load) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let def = match find(&defs, &a.pipeline) {
        Ok(d) => d,
        Err(c) => return c,
    };
    let mut selection = Selection {
        kind: a.kind.clone(),
        ..Selection::default()
    };
    for (arg, slot) in [
        (&a.since, &mut selection.since),
        (&a.until, &mut selection.until),
    ] {
        if let Some(t) = arg {
            match parse_when(t) {
                Ok(ms) => *slot = Some(ms),
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            }
        }
    }
    let all = match dlqs_of(def) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: pipeline `{}`: {e}", def.name);
            return ExitCode::from(1);
        }
    };
    let (targets, run_def): (Vec<Dlq>, Option<PipelineDef>) = match &a.sink {
        None => (all, None),
        Some(s) => {
            let Some(sdef) = def.sinks.iter().find(|d| &*d.name == s.as_str()) else {
                let names: Vec<&str> = def.sinks.iter().map(|d| &*d.name).collect();
                eprintln!(
                    "error: pipeline `{}` has no sink `{s}` (sinks: {})",
                    def.name,
                    names.join(", ")
                );
                return ExitCode::from(1);
            };
            // A named sink's letters name it; a single `sink:`'s are those of the sink stage
            // without a name.
            if sdef.plan.named {
                selection.sink = Some(Some(s.clone()));
            } else {
                selection.sink = Some(None);
                selection.stage = Some(sluice_sdk::Stage::Sink.as_str().to_string());
            }
            let target: Vec<Dlq> = all
                .into_iter()
                .filter(|d| d.sinks.iter().any(|n| n == s))
                .collect();
            match straight_to(def, s, &registry, &cfg.host.data_dir) {
                Ok(d) => (target, Some(d)),
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(1);
                }
            }
        }
    };

    if a.dry_run {
        return dry_run(&def.name, &targets, &selection, a.limit);
    }
    // A replay would restart the sinks' integrity chains from a store of its own and append
    // to the pipeline's digest log: refused rather than leave conflicting stamps.
    if let Some(s) = def.sinks.iter().find(|s| s.plan.integrity.is_some()) {
        eprintln!(
            "error: sink `{}` of pipeline `{}` has `integrity:`; dead letters of a pipeline with integrity-stamped sinks cannot be replayed (the replay would restart the chains)",
            s.name, def.name
        );
        return ExitCode::from(1);
    }

    let _lock = match crate::lock::acquire(&cfg.host.data_dir, &def.name) {
        Ok(l) => l,
        Err(crate::lock::LockError::Busy { .. }) => {
            eprintln!(
                "error: pipeline `{}` is running (another sluice process holds it): stop it before replaying its dead letters, so the replay does not race it for the DLQ",
                def.name
            );
            return ExitCode::from(1);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };

    let mut run_def = match run_def {
        Some(d) => d,
        None => match PipelineDef::validate(&def.cfg, &registry, &cfg.host.data_dir) {
            Ok(d) => d,
            Err(e) => {
                for e in e {
                    eprintln!("{e}");
                }
                return ExitCode::from(1);
            }
        },
    };
    // What the run's log lines name as its source.
    run_def.cfg.source.type_name = "dead_letters".into();
    let run_def = Arc::new(run_def);
    let env = Arc::new(HostEnv {
        registry,
        metrics: Arc::new(crate::metrics::Metrics::new()),
        data_dir: cfg.host.data_dir.clone(),
        shutdown_timeout: cfg.host.shutdown_timeout,
    });
    let stop = CancellationToken::new();
    let abort = CancellationToken::new();
    let signals = {
        let (stop, abort) = (stop.clone(), abort.clone());
        tokio::spawn(async move {
            crate::wait_for_signal().await;
            eprintln!("interrupted: finishing the letters in flight and saving the cursor (again to stop at once)");
            stop.cancel();
            crate::wait_for_signal().await;
            abort.cancel();
        })
    };

    let mut total = Summary::default();
    let mut failed = false;
    for dlq in &targets {
        let counts = Arc::new(Counts::default());
        // `--limit` counts over every DLQ of the replay.
        let limit = a.limit.map(|l| l.saturating_sub(total.sent));
        if limit == Some(0) {
            break;
        }
        let r = replay_one(
            &run_def, &env, dlq, &selection, limit, &counts, &stop, &abort,
        )
        .await;
        let (_, dead) = env.metrics.totals(&run_def.name);
        let s = Summary {
            done: counts.done.load(Ordering::Relaxed),
            sent: counts.sent.load(Ordering::Relaxed),
            failed_again: dead - total.failed_again,
            skipped_by_filter: counts.skipped_by_filter.load(Ordering::Relaxed),
            replayed_before: counts.replayed_before.load(Ordering::Relaxed),
        };
        total.add(&s);
        match r {
            Ok(RunEnd::Finished) => {}
            Ok(RunEnd::Stopped) => {
                eprintln!(
                    "{}: stopped before the end; the same command resumes where this one stopped",
                    dlq.describe()
                );
                break;
            }
            Err(e) => {
                eprintln!("error: replaying {}: {e}", dlq.describe());
                failed = true;
                break;
            }
        }
    }
    signals.abort();
    let text = format!(
        "replayed {} letter(s) of pipeline `{}`: {} delivered, {} failed again (back in the dead-letter queue); {} skipped by filter, {} replayed before\n",
        total.done,
        run_def.name,
        total.done.saturating_sub(total.failed_again),
        total.failed_again,
        total.skipped_by_filter,
        total.replayed_before,
    );
    let _ = emit(&text);
    if failed || total.failed_again > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

#[derive(Default)]
struct Summary {
    sent: u64,
    done: u64,
    failed_again: u64,
    skipped_by_filter: u64,
    replayed_before: u64,
}

impl Summary {
    fn add(&mut self, o: &Summary) {
        self.sent += o.sent;
        self.done += o.done;
        self.failed_again += o.failed_again;
        self.skipped_by_filter += o.skipped_by_filter;
        self.replayed_before += o.replayed_before;
    }
}

/// Replays one DLQ through `def`: the dead-letter source as the run's input, its cursor as
/// the run's store.
#[allow(clippy::too_many_arguments)]
async fn replay_one(
    def: &Arc<PipelineDef>,
    env: &Arc<HostEnv>,
    dlq: &Dlq,
    selection: &Selection,
    limit: Option<u64>,
    counts: &Arc<Counts>,
    stop: &CancellationToken,
    abort: &CancellationToken,
) -> Result<RunEnd, PipelineError> {
    let in_flight = Arc::new(InFlight::default());
    let source = {
        let (dlq, selection, counts, in_flight) = (
            dlq.clone(),
            selection.clone(),
            counts.clone(),
            in_flight.clone(),
        );
        move || -> Result<Box<dyn sluice_sdk::Source>, PipelineError> {
            let letters =
                open_letters(&dlq, false).map_err(|e| PipelineError::Source(e.to_string()))?;
            Ok(Box::new(DeadLetterSource::new(
                letters,
                Arc::from(dlq.describe()),
                selection.clone(),
                limit,
                in_flight.clone(),
                counts.clone(),
            )))
        }
    };
    let lookup = in_flight.clone();
    let input = Input {
        source: Some(Arc::new(source)),
        store: Some(dlq.cursor_path()),
        replayed: Some(Arc::new(move |o: &sluice_sdk::Origin| lookup.lookup(o))),
    };
    let status = Arc::new(PipelineStatus::new(&def.name));
    let metrics = env.metrics.pipeline(&def.name);
    let progress = tokio::spawn(show_progress(
        dlq.describe(),
        counts.clone(),
        env.clone(),
        def.name.clone(),
    ));
    let r = crate::pipeline::run_once(def, env, &status, &metrics, stop, abort, &input).await;
    progress.abort();
    let _ = progress.await;
    r
}

/// Progress of the replay on stderr (see [`crate::progress_bar`]).
async fn show_progress(what: String, counts: Arc<Counts>, env: Arc<HostEnv>, pipeline: Arc<str>) {
    let total = || counts.read_end.load(Ordering::Relaxed).max(1);
    let mut bar = Progress::new(format!("dlq replay {what}"), Some(total()));
    let started = Instant::now();
    loop {
        tokio::time::sleep(TICK).await;
        let done = counts.done.load(Ordering::Relaxed);
        let (_, dead) = env.metrics.totals(&pipeline);
        let rate = done as f64 / started.elapsed().as_secs_f64().max(0.001);
        bar.update(
            counts.read_position.load(Ordering::Relaxed),
            Some(total()),
            format!(
                "{done} replayed, {dead} failed again, {} skipped by filter ({rate:.0} letters/s)",
                counts.skipped_by_filter.load(Ordering::Relaxed)
            ),
        );
    }
}

/// `--dry-run`: what a replay would send, per DLQ, sink and kind; nothing is sent.
fn dry_run(pipeline: &str, targets: &[Dlq], selection: &Selection, limit: Option<u64>) -> ExitCode {
    let mut text = String::new();
    let mut left = limit.unwrap_or(u64::MAX);
    let mut total = 0u64;
    for dlq in targets {
        let mut by: BTreeMap<(String, String), u64> = BTreeMap::new();
        let (mut skipped, mut before) = (0u64, 0u64);
        let read = each_letter(dlq, |l, replayed| {
            if replayed {
                before += 1;
            } else if !selection.takes(&l) {
                skipped += 1;
            } else if left > 0 {
                left -= 1;
                *by.entry((
                    l.context.sink.clone().unwrap_or_else(|| "-".into()),
                    l.context.kind.clone(),
                ))
                .or_default() += 1;
            }
            true
        });
        if let Err(e) = read {
            eprintln!("error: pipeline `{pipeline}`: {e}");
            return ExitCode::from(1);
        }
        let n: u64 = by.values().sum();
        total += n;
        let _ = writeln!(
            text,
            "{}: would send {n} letter(s) ({skipped} skipped by filter, {before} replayed before)",
            dlq.describe()
        );
        for ((sink, kind), c) in by {
            let _ = writeln!(text, "  sink {sink:<12} kind {kind:<24} {c}");
        }
    }
    let _ = writeln!(
        text,
        "dry run: {total} letter(s) would be sent; nothing was sent"
    );
    emit(&text)
}
