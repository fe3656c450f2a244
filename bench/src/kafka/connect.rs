//! The reference a Kafka Connect user compares with: Apache Kafka Connect standalone
//! (`ConnectStandalone`, the broker's version) running `FileStreamSinkConnector` from
//! `connect-file` with `StringConverter`, so each record's value is written as one line, as
//! Sluice's `file` sink writes it.
//!
//! The jars come from Maven Central through `bench/scripts/fetch-connect.sh` into
//! `~/.cache/sluice/connect-<version>/lib` (or `SLUICE_CONNECT_LIB`). Measured like the other
//! readers: wall time from spawning the JVM until the output file holds every line, and
//! user+sys CPU of the JVM process at that moment, JVM start-up included.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{proc_cpu, tail, unix_millis, READ_TIMEOUT, RECORDS};
use crate::measure::Report;

/// The broker's version: connect-runtime and connect-file are fetched at the same one.
pub const VERSION: &str = "4.1.2";

fn lib_dir() -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("SLUICE_CONNECT_LIB") {
        return Ok(PathBuf::from(dir));
    }
    let home = std::env::var("HOME").map_err(|_| "HOME is not set".to_string())?;
    Ok(PathBuf::from(home).join(format!(".cache/sluice/connect-{VERSION}/lib")))
}

/// Counts the newlines appended to a file since the last call.
struct LineCounter {
    offset: u64,
    lines: u64,
    buf: Vec<u8>,
}

impl LineCounter {
    fn update(&mut self, path: &Path) -> Result<u64, String> {
        let mut file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(format!("open {}: {e}", path.display())),
        };
        file.seek(SeekFrom::Start(self.offset))
            .map_err(|e| e.to_string())?;
        loop {
            let n = file.read(&mut self.buf).map_err(|e| e.to_string())?;
            if n == 0 {
                return Ok(self.lines);
            }
            self.offset += n as u64;
            self.lines += self.buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        }
    }
}

/// Runs Connect standalone with the file sink on `topic` until the file has every record.
pub fn file_sink(brokers: &str, topic: &str) -> Result<Report, String> {
    let lib = lib_dir()?;
    if !lib.join(format!("connect-file-{VERSION}.jar")).exists() {
        return Err(format!(
            "{} has no connect-file-{VERSION}.jar: run bench/scripts/fetch-connect.sh",
            lib.display()
        ));
    }
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let d = dir.path();
    let out = d.join("connect-out.jsonl");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| e.to_string())?;
    let worker = d.join("worker.properties");
    std::fs::write(
        &worker,
        format!(
            "bootstrap.servers={brokers}\n\
             key.converter=org.apache.kafka.connect.storage.StringConverter\n\
             value.converter=org.apache.kafka.connect.storage.StringConverter\n\
             offset.storage.file.filename={}\n\
             listeners=http://127.0.0.1:{port}\n",
            d.join("connect.offsets").display()
        ),
    )
    .map_err(|e| e.to_string())?;
    // The sink task's consumer group is `connect-<name>`: a fresh name reads from the start
    // (Connect's sink consumers default to auto.offset.reset=earliest).
    let connector = d.join("connector.properties");
    std::fs::write(
        &connector,
        format!(
            "name=bench-file-{ms}\n\
             connector.class=org.apache.kafka.connect.file.FileStreamSinkConnector\n\
             tasks.max=1\n\
             topics={topic}\n\
             file={}\n",
            out.display(),
            ms = unix_millis()
        ),
    )
    .map_err(|e| e.to_string())?;
    // reload4j at INFO to a file, as the distribution's own Connect logging config does.
    let log = d.join("connect.log");
    let log4j = d.join("log4j.properties");
    std::fs::write(
        &log4j,
        format!(
            "log4j.rootLogger=INFO, file\n\
             log4j.appender.file=org.apache.log4j.FileAppender\n\
             log4j.appender.file.File={}\n\
             log4j.appender.file.layout=org.apache.log4j.PatternLayout\n\
             log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n\n",
            log.display()
        ),
    )
    .map_err(|e| e.to_string())?;
    let stderr = std::fs::File::create(d.join("connect.stderr")).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut child = Command::new("java")
        .arg(format!("-Dlog4j.configuration=file:{}", log4j.display()))
        .args(["-cp", &format!("{}/*", lib.display())])
        .arg("org.apache.kafka.connect.cli.ConnectStandalone")
        .arg(&worker)
        .arg(&connector)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("spawn java (Connect standalone): {e}"))?;
    let pid = child.id();
    let mut counter = LineCounter {
        offset: 0,
        lines: 0,
        buf: vec![0; 1 << 20],
    };
    // When the first lines appeared: wall time, CPU and lines, for the figures without the
    // JVM's start-up and the group join.
    let mut first: Option<(Duration, Duration, u64)> = None;
    let result = (|| loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Err(format!("Connect exited early ({status})"));
        }
        if started.elapsed() > READ_TIMEOUT {
            return Err(format!("Connect did not write {RECORDS} lines in time"));
        }
        let lines = counter.update(&out)?;
        if first.is_none() && lines > 0 {
            first = Some((started.elapsed(), proc_cpu(pid)?, lines));
        }
        if lines >= RECORDS {
            let wall = started.elapsed();
            let cpu = proc_cpu(pid)?;
            if let Some((w0, c0, n0)) = first {
                let n = (RECORDS - n0) as f64;
                eprintln!(
                    "Kafka Connect: first lines after {:.2} s and {:.2} s of CPU; from there \
                     {:.0} records/s, {:.3} CPU us/record",
                    w0.as_secs_f64(),
                    c0.as_secs_f64(),
                    n / (wall - w0).as_secs_f64(),
                    (cpu.saturating_sub(c0)).as_secs_f64() * 1e6 / n
                );
            }
            return Ok(Report {
                scenario: format!("Kafka Connect {VERSION} -> file"),
                records: RECORDS,
                wall,
                cpu,
                baseline: false,
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    })();
    let _ = child.kill();
    let _ = child.wait();
    if result.is_err() {
        let text = std::fs::read_to_string(&log).unwrap_or_default()
            + &std::fs::read_to_string(d.join("connect.stderr")).unwrap_or_default();
        eprintln!("{}", tail(&text, 30));
    }
    result
}
