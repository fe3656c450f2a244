//! `kafka-replay`: `sluice replay` of a whole filled topic (every partition, `--from` a day
//! ago, to the partitions' ends) into `blackhole`, against the bare rdkafka consumer reading
//! the same topic. The replay runs as its own process, measured from spawn to exit (range
//! resolution, assignment and drain included), like the bare consumer.

use std::process::{Command, Stdio};
use std::time::Instant;

use super::{bare_consumer, brokers, filled_topic, Load, PARTITIONS, RECORDS};
use crate::measure::{sluice_bin, wait_with_rusage, Report};

pub fn run() -> Result<Vec<Report>, String> {
    let brokers = brokers();
    let topic = filled_topic(&brokers, RECORDS, PARTITIONS)?;
    let load = Load::start();
    let bare = bare_consumer(&brokers, &topic, RECORDS)?;
    load.report(&bare);
    let load = Load::start();
    let replay = sluice_replay(&brokers, &topic)?;
    load.report(&replay);
    eprintln!(
        "sluice replay: {:.2}x the bare consumer's rate",
        replay.per_second() / bare.per_second()
    );
    Ok(vec![bare, replay])
}

fn sluice_replay(brokers: &str, topic: &str) -> Result<Report, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let config = dir.path().join("bench.yaml");
    let yaml = format!(
        "host: {{ data_dir: \"{d}/data\" }}\n\
         pipelines:\n  - name: bench\n    source: {{ type: kafka, brokers: \"{brokers}\", \
         topics: [\"{topic}\"], group_id: \"bench-replay-{pid}\", format: json }}\n    \
         sink: {{ type: blackhole }}\n    batch: {{ max_events: 2000, max_bytes: 4MiB, linger: 50ms }}\n",
        d = dir.path().display(),
        pid = std::process::id(),
    );
    std::fs::write(&config, yaml).map_err(|e| e.to_string())?;
    let log = std::fs::File::create(dir.path().join("sluice.log")).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let child = Command::new(sluice_bin()?)
        .args([
            "replay",
            &config.display().to_string(),
            "--pipeline",
            "bench",
            "--from",
            "1day",
        ])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("spawn sluice replay: {e}"))?;
    let (status, cpu) = wait_with_rusage(child.id() as libc::pid_t)?;
    let wall = started.elapsed();
    let text = std::fs::read_to_string(dir.path().join("sluice.log")).unwrap_or_default();
    if status != 0 || !text.contains(&format!("sent {RECORDS},")) {
        return Err(format!("sluice replay exited with {status}:\n{text}"));
    }
    Ok(Report {
        scenario: "sluice replay kafka(json) -> blackhole".into(),
        records: RECORDS,
        wall,
        cpu,
        baseline: false,
    })
}
