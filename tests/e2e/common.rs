//! Helpers to run the real `sluice` binary in a scratch directory and observe it.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Path of the binary under test (built by cargo for this integration test).
pub fn sluice_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sluice"))
}

/// The repository root (for `configs/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A scratch directory for one test: configs, data_dir, outputs.
pub struct Workdir {
    dir: tempfile::TempDir,
}

impl Workdir {
    pub fn new() -> Self {
        Workdir {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// Writes a config file; `{dir}` in the text is replaced by this directory.
    pub fn config(&self, name: &str, yaml: &str) -> PathBuf {
        let path = self.join(name);
        fs::write(
            &path,
            yaml.replace("{dir}", &self.path().display().to_string()),
        )
        .expect("write config");
        path
    }

    /// Runs `sluice <args>` to completion.
    pub fn sluice(&self, args: &[&str]) -> Output {
        Command::new(sluice_bin())
            .args(args)
            .current_dir(self.path())
            .output()
            .expect("run sluice")
    }

    /// Starts `sluice run <config>` in the background, logs going to a file.
    pub fn start(&self, config: &Path) -> Sluice {
        self.start_with(config, &[])
    }

    pub fn start_with(&self, config: &Path, envs: &[(&str, &str)]) -> Sluice {
        let n = fs::read_dir(self.path()).map(|d| d.count()).unwrap_or(0);
        let log = self.join(&format!("sluice-{n}.log"));
        let stderr = fs::File::create(&log).expect("log file");
        let child = Command::new(sluice_bin())
            .arg("run")
            .arg(config)
            .current_dir(self.path())
            .envs(envs.iter().copied())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn sluice");
        Sluice { child, log }
    }
}

/// A running `sluice run`.
pub struct Sluice {
    pub child: Child,
    pub log: PathBuf,
}

impl Sluice {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status();
    }

    pub fn sigterm(&self) {
        self.signal("-TERM");
    }

    /// `kill -9`: no chance to drain or commit.
    pub fn kill9(&mut self) {
        self.signal("-KILL");
        let _ = self.child.wait();
    }

    /// Waits for the process to exit.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "sluice did not exit within {timeout:?}; log:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn logs(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Resident memory of the process in bytes.
    pub fn rss_bytes(&self) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` until it returns `Some`, or panics with `what` after `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The complete lines of a file (none if it does not exist yet). A running sink may be in the
/// middle of a write when a test polls its output: a last line without its newline is not
/// there yet. A record missing at the end still fails a test, whose final checks look for
/// every record.
pub fn lines(path: &Path) -> Vec<String> {
    let bytes = fs::read(path).unwrap_or_default();
    let complete = bytes
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(&[][..], |end| &bytes[..end]);
    String::from_utf8_lossy(complete)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

pub fn count_lines(path: &Path) -> usize {
    fs::read(path)
        .map(|b| b.iter().filter(|&&c| c == b'\n').count())
        .unwrap_or(0)
}

/// Parses a JSON-lines file.
pub fn read_jsonl(path: &Path) -> Vec<Value> {
    lines(path)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// GET on the admin server: status code and body.
pub fn http_get(url: &str) -> Option<(u16, String)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    rt.block_on(async {
        let resp = reqwest::Client::new()
            .get(url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        let code = resp.status().as_u16();
        Some((code, resp.text().await.ok()?))
    })
}

/// Value of the metric `name` for pipeline `p` from `/metrics`: the line
/// `name{pipeline="p"} v`, or the sum over its sinks' lines `name{pipeline="p",sink=...} v`.
pub fn metric(admin: &str, name: &str, pipeline: &str) -> Option<f64> {
    let (_, body) = http_get(&format!("http://{admin}/metrics"))?;
    let whole = format!("{name}{{pipeline=\"{pipeline}\"}} ");
    let per_sink = format!("{name}{{pipeline=\"{pipeline}\",sink=\"");
    let values: Vec<f64> = body
        .lines()
        .filter_map(|l| match l.strip_prefix(&whole) {
            Some(v) => Some(v),
            None => l
                .strip_prefix(&per_sink)
                .and_then(|r| r.split_once("\"} "))
                .map(|(_, v)| v),
        })
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// Value of the metric `name` for sink `sink` of pipeline `p`.
pub fn sink_metric(admin: &str, name: &str, pipeline: &str, sink: &str) -> Option<f64> {
    let (_, body) = http_get(&format!("http://{admin}/metrics"))?;
    let prefix = format!("{name}{{pipeline=\"{pipeline}\",sink=\"{sink}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// Positions saved in the offset store for a pipeline.
pub fn stored_offsets(data_dir: &Path, pipeline: &str) -> Option<Value> {
    let text =
        fs::read_to_string(data_dir.join("offsets").join(format!("{pipeline}.json"))).ok()?;
    serde_json::from_str::<Value>(&text)
        .ok()?
        .get("positions")
        .cloned()
}

/// `seq` values of generator records in a JSON-lines file, with how many times each appears.
pub fn seq_counts(path: &Path) -> std::collections::HashMap<u64, u32> {
    let mut m = std::collections::HashMap::new();
    for l in lines(path) {
        let v: Value = serde_json::from_str(&l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}"));
        let seq = v["seq"].as_u64().unwrap_or_else(|| panic!("no seq in {l}"));
        *m.entry(seq).or_insert(0) += 1;
    }
    m
}

/// An example config of `configs/`, its admin port replaced by a free one.
pub fn example_config(w: &Workdir, name: &str, admin: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(repo_root().join("configs").join(name)).unwrap();
    assert!(
        text.contains("127.0.0.1:8686"),
        "{name} has an admin listener"
    );
    w.config(name, &text.replace("127.0.0.1:8686", admin))
}
