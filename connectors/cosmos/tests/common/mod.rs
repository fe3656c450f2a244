//! A minimal host for driving the source through the SDK trait: poll, "deliver", commit, and
//! keep the returned checkpoints the way the offset store does (last write per key wins).

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_cosmos::{CosmosConfig, CosmosSource};
use sluice_sdk::{Health, Origin, Polled, Record, Source, SourceContext, SourceError};
use sluice_testkit::cosmos::CosmosEmulator;

pub fn config(emu: &CosmosEmulator, extra: Value) -> CosmosConfig {
    let mut v = json!({
        "endpoint": emu.endpoint(),
        "key": emu.key(),
        "database": emu.options().database,
        "container": emu.options().container,
        "poll_interval": "20ms",
    });
    if let Value::Object(m) = extra {
        for (k, x) in m {
            v[k] = x;
        }
    }
    sluice_sdk::config::from_value(v).expect("valid test config")
}

pub struct Host {
    pub source: CosmosSource,
    pub store: HashMap<i32, String>,
    pub delivered: Vec<Record>,
    /// Ids of the delivered documents (kept as records arrive, so checks stay cheap).
    pub ids: HashSet<String>,
    pub health: Health,
    /// Commit after every poll (a healthy sink); when false, commits wait for `commit_all`.
    pub auto_commit: bool,
    uncommitted: Vec<Origin>,
}

impl Host {
    pub async fn open(cfg: CosmosConfig, store: HashMap<i32, String>) -> Result<Self, SourceError> {
        let mut source = CosmosSource::new(cfg).expect("config");
        let health = Health::new();
        source
            .open(SourceContext {
                pipeline: "test".into(),
                checkpoints: store.clone(),
                health: health.clone(),
            })
            .await?;
        Ok(Host {
            source,
            store,
            delivered: Vec::new(),
            ids: HashSet::new(),
            health,
            auto_commit: true,
            uncommitted: Vec::new(),
        })
    }

    /// One poll; returns how many records came.
    pub async fn step(&mut self, max: usize) -> Result<usize, SourceError> {
        let t = Instant::now();
        let polled = self.source.poll(max).await?;
        assert!(
            t.elapsed() < Duration::from_millis(400),
            "poll blocked for {:?}",
            t.elapsed()
        );
        let n = match polled {
            Polled::Records(recs) => {
                assert!(!recs.is_empty() && recs.len() <= max.max(1));
                self.uncommitted
                    .extend(recs.iter().map(|r| r.origin.clone()));
                let n = recs.len();
                self.ids.extend(
                    recs.iter()
                        .filter_map(|r| r.key.as_deref())
                        .map(|k| String::from_utf8_lossy(k).into_owned()),
                );
                self.delivered.extend(recs);
                n
            }
            Polled::Idle => 0,
            Polled::Finished => panic!("a change feed never finishes"),
        };
        if self.auto_commit {
            self.commit_all().await;
        }
        Ok(n)
    }

    /// Commits, per partition, the last record handed out (everything was "delivered").
    pub async fn commit_all(&mut self) {
        let origins = last_per_partition(&self.uncommitted);
        self.uncommitted.clear();
        self.commit(&origins).await;
    }

    /// Commits only these origins, keeping the others pending.
    pub async fn commit_partition(&mut self, partition: i32) {
        let mine: Vec<Origin> = self
            .uncommitted
            .iter()
            .filter(|o| o.partition == partition)
            .cloned()
            .collect();
        self.uncommitted.retain(|o| o.partition != partition);
        let origins = last_per_partition(&mine);
        self.commit(&origins).await;
    }

    pub async fn commit(&mut self, origins: &[Origin]) -> Vec<i32> {
        let cps = self.source.commit(origins).await.expect("commit");
        let keys = cps.iter().map(|c| c.partition).collect();
        for c in cps {
            self.store.insert(c.partition, c.position);
        }
        keys
    }

    /// Polls until `done` holds for the records delivered so far, or panics after `limit`.
    pub async fn run_until(
        &mut self,
        limit: Duration,
        what: &str,
        mut done: impl FnMut(&[Record], &HashSet<String>) -> bool,
    ) {
        let t = Instant::now();
        while !done(&self.delivered, &self.ids) {
            if t.elapsed() > limit {
                panic!(
                    "timed out waiting for {what}: {} records delivered",
                    self.delivered.len()
                );
            }
            self.step(97).await.expect("poll");
        }
    }

    /// Polls for a while and returns how many records came (to show that none do).
    pub async fn drain_for(&mut self, d: Duration) -> usize {
        let before = self.delivered.len();
        let t = Instant::now();
        while t.elapsed() < d {
            self.step(100).await.expect("poll");
        }
        self.delivered.len() - before
    }

    pub async fn close(mut self) -> (HashMap<i32, String>, Vec<Record>) {
        self.source.close().await.expect("close");
        (self.store, self.delivered)
    }
}

fn last_per_partition(origins: &[Origin]) -> Vec<Origin> {
    let mut last: HashMap<(String, i32), Origin> = HashMap::new();
    for o in origins {
        last.insert((o.stream.to_string(), o.partition), o.clone());
    }
    last.into_values().collect()
}

/// The parsed value of a record.
pub fn doc(r: &Record) -> Value {
    serde_json::from_slice(&r.value).expect("record value is JSON")
}

/// `(id, _lsn)` of a record: one version of one document.
pub fn version(r: &Record) -> (String, i64) {
    let d = doc(r);
    (
        d["id"].as_str().expect("id").to_string(),
        d["_lsn"].as_i64().expect("_lsn"),
    )
}

/// Panics if a version was delivered twice.
pub fn assert_no_repeats(records: &[Record]) {
    let mut seen = HashSet::new();
    for r in records {
        let v = version(r);
        assert!(seen.insert(v.clone()), "delivered twice: {v:?}");
    }
}

/// Ids delivered.
pub fn ids(records: &[Record]) -> HashSet<String> {
    records.iter().map(|r| version(r).0).collect()
}

/// Writes `n` documents numbered from `start`, spread over many partition keys.
pub fn write_docs(emu: &CosmosEmulator, start: usize, n: usize) {
    for i in start..start + n {
        emu.upsert(json!({
            "id": format!("doc-{i:05}"),
            "pk": format!("tenant-{}", i % 101),
            "kind": "control.evaluated",
            "control": format!("AC-{}", i % 23),
            "n": i,
        }));
    }
}
