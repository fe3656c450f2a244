//! `sluice dlq list|show|replay` with the real binary: a real failing run into PostgreSQL
//! fills the dead-letter queue (file, then Kafka on the real broker) with 1,000 letters of
//! three kinds; after each fix a filtered replay sends exactly its letters, a repeated replay
//! sends nothing, a replay stopped with SIGINT resumes without duplicates or gaps, letters
//! that fail again are back with `sluice.replay.count` and their first failure, and a replay
//! is refused while `sluice run` holds the pipeline. `--sink` sends one sink's letters to that
//! sink alone.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;
use crate::postgres::Pg;

const MISSING_KEY: &str = "postgres.missing_key";
const CHECK: &str = "postgres.sqlstate=23514";

/// How many times each id was written (from the table's write log).
fn writes(pg: &Pg, log: &str) -> HashMap<String, i64> {
    pg.rows(&format!("SELECT id, count(*) FROM {log} GROUP BY id"))
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

fn ids(pg: &Pg, table: &str) -> BTreeSet<String> {
    pg.rows(&format!("SELECT id FROM {table}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// What the letters' records are, by group of `i % 12`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Good,
    /// `ident` instead of `id`: the upsert key is missing (a mapping problem).
    MissingKey,
    /// A negative `n`: the table's CHECK (n >= 0) refuses it; `n < -50` for half of them.
    Negative,
    /// `n` is text: the integer column refuses it.
    Text,
}

fn case(i: usize) -> Case {
    match i % 12 {
        0 | 1 => Case::Good,
        2..=5 => Case::MissingKey,
        6..=8 => Case::Negative,
        _ => Case::Text,
    }
}

fn id(i: usize) -> String {
    format!("r{i:04}")
}

fn negative(i: usize) -> i64 {
    -(((i / 12) % 100) as i64) - 1
}

fn record(i: usize) -> String {
    match case(i) {
        Case::Good => format!(r#"{{"id":"{}","n":{i}}}"#, id(i)),
        Case::MissingKey => format!(r#"{{"ident":"{}","n":{i}}}"#, id(i)),
        Case::Negative => format!(r#"{{"id":"{}","n":{}}}"#, id(i), negative(i)),
        Case::Text => format!(r#"{{"id":"{}","n":"x{i}"}}"#, id(i)),
    }
}

const RECORDS: usize = 1200;

fn ids_of(c: Case) -> BTreeSet<String> {
    (0..RECORDS).filter(|&i| case(i) == c).map(id).collect()
}

/// Where the letters go.
enum Dlq {
    File,
    Kafka { brokers: String, topic: String },
}

/// A letter as the test reads it from the DLQ itself (not through `sluice`).
#[derive(Debug)]
struct Seen {
    value: Value,
    context: HashMap<String, String>,
}

impl Seen {
    fn id(&self) -> String {
        self.value
            .get("id")
            .or_else(|| self.value.get("ident"))
            .and_then(Value::as_str)
            .unwrap()
            .to_string()
    }
    fn kind(&self) -> &str {
        &self.context["__connect.errors.exception.class.name"]
    }
}

impl Dlq {
    fn yaml(&self) -> String {
        match self {
            Dlq::File => "{ type: file }".into(),
            Dlq::Kafka { brokers, topic } => {
                format!("{{ type: kafka, brokers: \"{brokers}\", topic: {topic} }}")
            }
        }
    }

    fn letters(&self, w: &Workdir, pipeline: &str, want: usize) -> Vec<Seen> {
        match self {
            Dlq::File => read_jsonl(&w.join(&format!("data/dlq/{pipeline}.jsonl")))
                .into_iter()
                .map(|d| Seen {
                    value: serde_json::from_str(d["value"].as_str().unwrap()).unwrap(),
                    context: d
                        .as_object()
                        .unwrap()
                        .iter()
                        .filter(|(k, _)| k.starts_with("__connect.") || k.starts_with("sluice."))
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                        .collect(),
                })
                .collect(),
            Dlq::Kafka { brokers, topic } => {
                sluice_testkit::kafka::read_topic(brokers, topic, want, Duration::from_secs(60))
                    .into_iter()
                    .map(|m| Seen {
                        value: serde_json::from_slice(&m.value).unwrap(),
                        context: m
                            .headers
                            .iter()
                            .filter(|(k, _)| {
                                k.starts_with("__connect.") || k.starts_with("sluice.")
                            })
                            .map(|(k, v)| {
                                (
                                    k.clone(),
                                    String::from_utf8(v.clone().unwrap_or_default()).unwrap(),
                                )
                            })
                            .collect(),
                    })
                    .collect()
            }
        }
    }
}

/// The pipeline's configuration; `transforms` and `extra` are the fixes and the rate limit.
fn config(
    w: &Workdir,
    name: &str,
    pipeline: &str,
    table: &str,
    dlq: &Dlq,
    at_end: &str,
    extra: &str,
) -> std::path::PathBuf {
    w.config(
        name,
        &format!(
            r#"host: {{ data_dir: "{{dir}}/data" }}
pipelines:
  - name: {pipeline}
    source: {{ type: file, path: "{{dir}}/in.jsonl", at_end: {at_end} }}
    sink:
      type: postgres
      url: "{url}"
      table: {table}
      mode: upsert
      key: [id]
      columns: {{ id: id, n: n, payload: $value }}
    batch: {{ max_events: 50, linger: 20ms }}
    commit_interval: 100ms
    dead_letter: {dlq}
{extra}"#,
            url = sluice_testkit::env::postgres_url(),
            dlq = dlq.yaml(),
        ),
    )
}

fn text(o: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The `replayed N letter(s)` and `N failed again` of a replay's summary.
fn summary(o: &std::process::Output) -> (u64, u64) {
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out
        .lines()
        .find(|l| l.starts_with("replayed "))
        .unwrap_or_else(|| panic!("no summary: {}", text(o)));
    let before = |marker: &str| -> u64 {
        let (head, _) = line.split_once(marker).unwrap();
        head.split_whitespace().last().unwrap().parse().unwrap()
    };
    (before(" letter(s)"), before(" failed again"))
}

fn replay(
    w: &Workdir,
    cfg: &std::path::Path,
    pipeline: &str,
    args: &[&str],
) -> std::process::Output {
    let mut all = vec![
        "dlq",
        "replay",
        cfg.to_str().unwrap(),
        "--pipeline",
        pipeline,
    ];
    all.extend_from_slice(args);
    w.sluice(&all)
}

fn scenario(dlq: Dlq, pipeline: &str) -> Workdir {
    let pg = Pg::connect();
    let t = format!("e2e_dlq_{}_{}", std::process::id(), free_port());
    let log = format!("{t}_log");
    pg.execute(&format!(
        "CREATE TABLE {t} (id text PRIMARY KEY, n integer NOT NULL, payload jsonb, \
           CONSTRAINT {t}_n CHECK (n >= 0));
         CREATE TABLE {log} (id text);
         CREATE FUNCTION {t}_logged() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN INSERT INTO {log} VALUES (NEW.id); RETURN NEW; END $$;
         CREATE TRIGGER {t}_log AFTER INSERT OR UPDATE ON {t}
           FOR EACH ROW EXECUTE FUNCTION {t}_logged();"
    ));
    let w = Workdir::new();
    let lines: Vec<String> = (0..RECORDS).map(record).collect();
    std::fs::write(w.join("in.jsonl"), lines.join("\n") + "\n").unwrap();

    // 1. A real failing run: 200 rows, 1,000 letters of three kinds.
    let broken = config(&w, "broken.yaml", pipeline, &t, &dlq, "stop", "");
    let mut s = w.start(&broken);
    assert!(s.wait(Duration::from_secs(120)).success(), "{}", s.logs());
    assert_eq!(ids(&pg, &t), ids_of(Case::Good));
    let first = dlq.letters(&w, pipeline, 1000);
    assert_eq!(first.len(), 1000);
    let mut kinds: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for l in &first {
        kinds
            .entry(l.kind().to_string())
            .or_default()
            .insert(l.id());
    }
    assert_eq!(kinds.len(), 3, "{:?}", kinds.keys());
    println!("kinds: {:?}", kinds.keys().collect::<Vec<_>>());
    assert_eq!(kinds[MISSING_KEY], ids_of(Case::MissingKey));
    assert_eq!(kinds[CHECK], ids_of(Case::Negative));
    let text_kind = kinds
        .iter()
        .find(|(k, _)| *k != MISSING_KEY && *k != CHECK)
        .map(|(k, ids)| {
            assert_eq!(*ids, ids_of(Case::Text), "{k}");
            k.clone()
        })
        .unwrap();
    // Where each record was read from, as its first letter says.
    let source_offset: HashMap<String, String> = first
        .iter()
        .map(|l| (l.id(), l.context["__connect.errors.offset"].clone()))
        .collect();

    // `dlq list`: one row per kind, all pending, with their times.
    let o = w.sluice(&["dlq", "list", broken.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let rows: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
    let mut listed: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for r in &rows {
        assert_eq!(r["pipeline"], pipeline);
        assert_eq!(r["stage"], "TASK_PUT");
        assert!(r["sink"].is_null());
        assert!(r["oldest"].is_string() && r["newest"].is_string(), "{r}");
        listed.insert(
            r["kind"].as_str().unwrap().into(),
            (
                r["letters"].as_u64().unwrap(),
                r["pending"].as_u64().unwrap(),
            ),
        );
    }
    assert_eq!(listed[MISSING_KEY], (400, 400));
    assert_eq!(listed[CHECK], (300, 300));
    assert_eq!(listed[&text_kind], (300, 300));
    let o = w.sluice(&["dlq", "list", broken.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.contains(MISSING_KEY) && out.contains("PENDING"),
        "{out}"
    );

    // `dlq show`: letters with their context and the value as text.
    let o = w.sluice(&[
        "dlq",
        "show",
        broken.to_str().unwrap(),
        "--pipeline",
        pipeline,
        "--kind",
        CHECK,
        "--limit",
        "2",
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let shown: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(shown.len(), 2);
    for l in &shown {
        assert_eq!(l["kind"], CHECK);
        assert_eq!(l["replayed"], false);
        assert!(l["message"]
            .as_str()
            .unwrap()
            .contains("violates check constraint"));
        let v: Value = serde_json::from_str(l["value"].as_str().unwrap()).unwrap();
        assert!(v["n"].as_i64().unwrap() < 0);
    }
    let o = w.sluice(&[
        "dlq",
        "show",
        broken.to_str().unwrap(),
        "--pipeline",
        pipeline,
        "--limit",
        "1",
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("kind: ") && out.contains("value: {"), "{out}");

    // 2. Refused while `sluice run` holds the pipeline.
    let waiting = config(&w, "waiting.yaml", pipeline, &t, &dlq, "wait", "");
    let mut running = w.start(&waiting);
    wait_for(Duration::from_secs(60), "the pipeline to run", || {
        running.logs().contains("pipeline started").then_some(())
    });
    let o = replay(&w, &waiting, pipeline, &["--kind", "nothing-of-this-kind"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("is running"),
        "{}",
        text(&o)
    );
    running.sigterm();
    assert!(running.wait(Duration::from_secs(60)).success());

    // 3. Fix the mapping (the producer renamed `id` to `ident`): exactly those 400 go.
    let rename = "    transforms: [ { type: rename, from: ident, to: id } ]\n";
    let fixed = config(&w, "fixed.yaml", pipeline, &t, &dlq, "stop", rename);
    let o = replay(&w, &fixed, pipeline, &["--kind", MISSING_KEY, "--dry-run"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.contains("would send 400 letter(s)"),
        "{}",
        text(&o)
    );
    assert_eq!(ids(&pg, &t), ids_of(Case::Good), "a dry run sends nothing");
    let o = replay(&w, &fixed, pipeline, &["--kind", MISSING_KEY]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(summary(&o), (400, 0));
    let expected: BTreeSet<String> = ids_of(Case::Good)
        .into_iter()
        .chain(ids_of(Case::MissingKey))
        .collect();
    assert_eq!(ids(&pg, &t), expected);

    // 4. The same replay again sends nothing.
    let o = replay(&w, &fixed, pipeline, &["--kind", MISSING_KEY]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(summary(&o), (0, 0));

    // 5. Half a fix for the negative ones: n >= -50 goes, the rest fails again and is back
    // in the DLQ with its replay count and its first failure.
    pg.execute(&format!(
        "ALTER TABLE {t} DROP CONSTRAINT {t}_n; ALTER TABLE {t} ADD CONSTRAINT {t}_n CHECK (n >= -50)"
    ));
    let o = replay(&w, &fixed, pipeline, &["--kind", CHECK]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "failed again: exit 1; {}",
        text(&o)
    );
    assert_eq!(summary(&o), (300, 150));
    let negative_ok: BTreeSet<String> = (0..RECORDS)
        .filter(|&i| case(i) == Case::Negative && negative(i) >= -50)
        .map(id)
        .collect();
    assert_eq!(negative_ok.len(), 150);
    let expected: BTreeSet<String> = expected.into_iter().chain(negative_ok).collect();
    assert_eq!(ids(&pg, &t), expected);
    let all = dlq.letters(&w, pipeline, 1150);
    assert_eq!(all.len(), 1150);
    let back: Vec<&Seen> = all
        .iter()
        .filter(|l| l.context.contains_key("sluice.replay.count"))
        .collect();
    assert_eq!(back.len(), 150);
    for l in back {
        let v = l.value["n"].as_i64().unwrap();
        assert!(v < -50, "{l:?}");
        assert_eq!(l.context["sluice.replay.count"], "1");
        assert_eq!(l.kind(), CHECK);
        assert_eq!(
            l.context["sluice.errors.original.exception.class.name"],
            CHECK
        );
        assert_eq!(l.context["sluice.errors.original.stage"], "TASK_PUT");
        assert!(l.context["sluice.errors.original.exception.message"]
            .contains("violates check constraint"));
        assert_eq!(
            l.context["__connect.errors.offset"],
            source_offset[&l.id()],
            "the source record's position, not the letter's"
        );
        assert!(
            !l.context["__connect.errors.topic"].contains("dlq"),
            "{l:?}"
        );
    }

    // 6. Fix the column type; a slow replay stopped with SIGINT at ~40% resumes with no
    // duplicate and no gap.
    pg.execute(&format!(
        "ALTER TABLE {t} DROP CONSTRAINT {t}_n; ALTER TABLE {t} ALTER COLUMN n TYPE text"
    ));
    let slow = config(
        &w,
        "slow.yaml",
        pipeline,
        &t,
        &dlq,
        "stop",
        &format!("{rename}    rate_limit: {{ events_per_second: 60, burst: 10 }}\n"),
    );
    let text_ids = ids_of(Case::Text);
    let mut child = Command::new(sluice_bin())
        .args([
            "dlq",
            "replay",
            slow.to_str().unwrap(),
            "--pipeline",
            pipeline,
            "--kind",
        ])
        .arg(&text_kind)
        .current_dir(w.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = writes(&pg, &log)
            .keys()
            .filter(|id| text_ids.contains(*id))
            .count();
        if done >= 120 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slow replay did not get to 40%"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let started = Instant::now();
    let o = loop {
        if child.try_wait().unwrap().is_some() {
            break child.wait_with_output().unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no exit after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(o.status.success(), "{}", text(&o));
    let (first_part, again) = summary(&o);
    assert_eq!(again, 0);
    assert!((100..300).contains(&first_part), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("resumes"),
        "{}",
        text(&o)
    );
    let o = replay(&w, &fixed, pipeline, &["--kind", &text_kind]);
    assert!(o.status.success(), "{}", text(&o));
    let (rest, again) = summary(&o);
    assert_eq!((first_part + rest, again), (300, 0));
    println!("interrupted replay: {first_part} letters, then {rest} on resuming");

    // 7. An unfiltered replay sends only what is left: the 150 that failed again.
    let o = replay(&w, &fixed, pipeline, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(summary(&o), (150, 0));
    let o = replay(&w, &fixed, pipeline, &[]);
    assert_eq!(summary(&o), (0, 0));

    // Every record written exactly once: nothing lost, nothing twice.
    let all_ids: BTreeSet<String> = (0..RECORDS).map(id).collect();
    assert_eq!(ids(&pg, &t), all_ids);
    let writes = writes(&pg, &log);
    let twice: Vec<_> = writes.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "written more than once: {twice:?}");
    assert_eq!(writes.len(), RECORDS);

    let o = w.sluice(&["dlq", "list", fixed.to_str().unwrap(), "--json"]);
    let rows: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert!(rows.iter().all(|r| r["pending"] == 0), "{rows:?}");
    let o = w.sluice(&[
        "dlq",
        "show",
        fixed.to_str().unwrap(),
        "--pipeline",
        pipeline,
        "--kind",
        CHECK,
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("first failure: ") && out.contains("(replayed)"),
        "{out}"
    );

    pg.execute(&format!(
        "DROP TABLE {t}; DROP TABLE {log}; DROP FUNCTION {t}_logged()"
    ));
    w
}

#[test]
fn dlq_replay_file_sends_each_fixed_letter_once() {
    let w = scenario(Dlq::File, "audit");
    use std::os::unix::fs::PermissionsExt;
    let cursor = w.join("data/dlq/audit.replay.json");
    let mode = std::fs::metadata(&cursor).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the replay cursor is private");
    let saved: Value = serde_json::from_slice(&std::fs::read(&cursor).unwrap()).unwrap();
    let ranges = saved["positions"]["0"].as_str().unwrap();
    assert_eq!(
        ranges.matches(',').count(),
        0,
        "every letter replayed: one range, {ranges}"
    );
}

#[test]
fn dlq_replay_kafka_sends_each_fixed_letter_once() {
    let brokers = sluice_testkit::kafka::real_broker();
    let topic = sluice_testkit::kafka::unique("e2e.dlq-replay");
    sluice_testkit::kafka::create_topic(&brokers, &topic, 2);
    let pipeline = sluice_testkit::kafka::unique("dlq-replay");
    scenario(
        Dlq::Kafka {
            brokers: brokers.clone(),
            topic: topic.clone(),
        },
        &pipeline,
    );
    // The replay group stands at the end of every partition: nothing left to replay.
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", format!("sluice-dlq-replay.{pipeline}"))
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition(&topic, 0);
    tpl.add_partition(&topic, 1);
    let got = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    for p in 0..2 {
        let (_, high) = c
            .fetch_watermarks(&topic, p, Duration::from_secs(10))
            .unwrap();
        let committed = got.find_partition(&topic, p).unwrap().offset().to_raw();
        assert_eq!(committed, Some(high), "partition {p}");
    }
}

#[test]
fn dlq_replay_to_one_sink_leaves_the_other_sinks_alone() {
    let pg = Pg::connect();
    let t = format!("e2e_dlq_sink_{}_{}", std::process::id(), free_port());
    pg.execute(&format!(
        "CREATE TABLE {t} (id text PRIMARY KEY, n integer NOT NULL, payload jsonb, \
           CONSTRAINT {t}_n CHECK (n >= 0))"
    ));
    let w = Workdir::new();
    let lines: Vec<String> = (0..100usize)
        .map(|i| {
            let n = if i.is_multiple_of(4) { -1 } else { i as i64 };
            format!(r#"{{"id":"{}","n":{n}}}"#, id(i))
        })
        .collect();
    std::fs::write(w.join("in.jsonl"), lines.join("\n") + "\n").unwrap();
    let cfg = w.config(
        "fan.yaml",
        &format!(
            r#"host: {{ data_dir: "{{dir}}/data" }}
pipelines:
  - name: fan
    source: {{ type: file, path: "{{dir}}/in.jsonl", at_end: stop }}
    transforms: [ {{ type: add_fields, fields: {{ via: pipeline }} }} ]
    sinks:
      db:
        type: postgres
        url: "{url}"
        table: {t}
        mode: upsert
        key: [id]
        columns: {{ id: id, n: n, payload: $value }}
      archive: {{ type: file, path: "{{dir}}/archive.jsonl" }}
    batch: {{ max_events: 20, linger: 20ms }}
"#,
            url = sluice_testkit::env::postgres_url(),
        ),
    );
    let mut s = w.start(&cfg);
    assert!(s.wait(Duration::from_secs(60)).success(), "{}", s.logs());
    assert_eq!(count_lines(&w.join("archive.jsonl")), 100);
    assert_eq!(ids(&pg, &t).len(), 75);
    let letters = read_jsonl(&w.join("data/dlq/fan.jsonl"));
    assert_eq!(letters.len(), 25);
    assert!(letters.iter().all(|l| l["sluice.errors.sink"] == "db"));

    // The letters of `db` go to `db` alone: the archive gets nothing twice. An unknown sink
    // is refused by name.
    pg.execute(&format!("ALTER TABLE {t} DROP CONSTRAINT {t}_n"));
    let o = w.sluice(&[
        "dlq",
        "replay",
        cfg.to_str().unwrap(),
        "--pipeline",
        "fan",
        "--sink",
        "nope",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no sink `nope`"));
    let o = w.sluice(&[
        "dlq",
        "replay",
        cfg.to_str().unwrap(),
        "--pipeline",
        "fan",
        "--sink",
        "db",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(summary(&o), (25, 0));
    assert_eq!(ids(&pg, &t).len(), 100);
    assert_eq!(count_lines(&w.join("archive.jsonl")), 100);
    let o = w.sluice(&["dlq", "replay", cfg.to_str().unwrap(), "--pipeline", "fan"]);
    assert_eq!(summary(&o), (0, 0), "{}", text(&o));
    pg.execute(&format!("DROP TABLE {t}"));
}
