//! `http-ingest`: events posted to the `http_server` source (write-ahead log, blackhole sink).
//!
//! Three runs against the real binary, with a small keep-alive HTTP/1.1 load loop on tokio:
//! bulk posts of 1,000 events of ~300 B with `fsync: { interval: 10ms }` (events/s accepted),
//! single-event posts with `fsync: always` as fast as 64 connections go (requests/s), and
//! single-event posts at a fixed 2,000 requests/s (p99 latency, measured from each request's
//! scheduled time so a stall is not hidden). CPU is user+sys of the sluice process.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::measure::{sluice_bin, Report};

const TOKEN: &str = "bench-token";
const RUN: Duration = Duration::from_secs(10);

pub fn run() -> Result<Vec<Report>, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let mut reports = Vec::new();

    let s = Sluice::start("{ interval: 10ms }")?;
    let body = bulk_body(1000);
    let (n, wall, cpu, _) = rt.block_on(closed_loop(s.port, "/events/bulk", body, 8, &s))?;
    let events = n * 1000;
    println!(
        "bulk: {n} requests of 1,000 events ({} B each)",
        bulk_body(1000).len()
    );
    reports.push(Report {
        scenario: "http bulk 1000x300B, fsync 10ms".into(),
        records: events,
        wall,
        cpu,
        baseline: true,
    });
    drop(s);

    let s = Sluice::start("always")?;
    let one = event(0).into_bytes();
    let (n, wall, cpu, lat) = rt.block_on(closed_loop(s.port, "/events", one.clone(), 64, &s))?;
    println!(
        "single, fsync always, 64 connections: p50 {:?} p99 {:?}",
        pct(&lat, 0.50),
        pct(&lat, 0.99)
    );
    reports.push(Report {
        scenario: "http single, fsync always".into(),
        records: n,
        wall,
        cpu,
        baseline: true,
    });
    let (n, wall, cpu, lat) = rt.block_on(open_loop(s.port, one, 2000.0, 32, &s))?;
    println!(
        "single, fsync always, 2,000 requests/s offered: {:.0} answered/s, p50 {:?} p99 {:?} max {:?}",
        n as f64 / wall.as_secs_f64(),
        pct(&lat, 0.50),
        pct(&lat, 0.99),
        pct(&lat, 1.0)
    );
    reports.push(Report {
        scenario: "http single at 2,000/s, fsync always".into(),
        records: n,
        wall,
        cpu,
        baseline: true,
    });
    drop(s);
    Ok(reports)
}

fn event(i: usize) -> String {
    let e = serde_json::json!({
        "tenantId": "bench", "eventType": "CONTROL_UPDATED", "source": "archer", "action": "update",
        "entityId": format!("ctl-{i:08}"), "entityType": "control",
        "data": {"status": "effective", "owner": "grc-team", "score": 87, "framework": "NIST-800-53"},
        "metadata": {"requestId": "0f8fad5b-d9cb-469f-a165-70867728950e", "ip": "10.1.2.3", "userAgent": "grc-frontend/4.2"}
    });
    e.to_string()
}

fn bulk_body(n: usize) -> Vec<u8> {
    let events: Vec<String> = (0..n).map(event).collect();
    format!("{{\"events\":[{}]}}", events.join(",")).into_bytes()
}

fn pct(lat: &[Duration], p: f64) -> Duration {
    if lat.is_empty() {
        return Duration::ZERO;
    }
    let mut v = lat.to_vec();
    v.sort_unstable();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

struct Sluice {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Sluice {
    fn start(fsync: &str) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let d = dir.path().display();
        let yaml = format!(
            "host: {{ data_dir: \"{d}/data\" }}\npipelines:\n  - name: bench\n    source: {{ type: http_server, listen: \"127.0.0.1:{port}\", auth: {{ tokens: {{ bench: \"{TOKEN}\" }} }}, fsync: {fsync}, max_body_bytes: 4MiB }}\n    sink: {{ type: blackhole }}\n    batch: {{ max_events: 1000, max_bytes: 4MiB, linger: 10ms }}\n"
        );
        let config = dir.path().join("bench.yaml");
        std::fs::write(&config, yaml).map_err(|e| e.to_string())?;
        let child = Command::new(sluice_bin()?)
            .arg("run")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err("sluice did not listen within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Sluice {
            child,
            port,
            _dir: dir,
        })
    }

    /// user + sys CPU so far, from /proc.
    fn cpu(&self) -> Result<Duration, String> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .map_err(|e| e.to_string())?;
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
            + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Ok(Duration::from_micros(ticks * 1_000_000 / hz))
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    tcp: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(port: u16) -> Result<Self, String> {
        let tcp = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| e.to_string())?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        Ok(Conn {
            tcp,
            buf: Vec::with_capacity(64 * 1024),
        })
    }

    /// Posts `body` and returns the status.
    async fn post(&mut self, path: &str, body: &[u8]) -> Result<u16, String> {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        self.tcp
            .write_all(head.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        self.tcp.write_all(body).await.map_err(|e| e.to_string())?;
        self.buf.clear();
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).to_string();
                let status: u16 = head
                    .get(9..12)
                    .and_then(|s| s.parse().ok())
                    .ok_or("bad status line")?;
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().to_string())
                    })
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                while self.buf.len() < end + 4 + len {
                    self.read().await?;
                }
                return Ok(status);
            }
            self.read().await?;
        }
    }

    async fn read(&mut self) -> Result<(), String> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.tcp.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed".into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

type Measured = (u64, Duration, Duration, Vec<Duration>);

/// `conns` connections posting back to back for [`RUN`]; counts 200 answers.
async fn closed_loop(
    port: u16,
    path: &'static str,
    body: Vec<u8>,
    conns: usize,
    s: &Sluice,
) -> Result<Measured, String> {
    let body = Arc::new(body);
    let ok = Arc::new(AtomicU64::new(0));
    let cpu0 = s.cpu()?;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (body, ok) = (body.clone(), ok.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::open(port).await?;
            let mut lat = Vec::new();
            while start.elapsed() < RUN {
                let t = Instant::now();
                match c.post(path, &body).await? {
                    200 => ok.fetch_add(1, Ordering::Relaxed),
                    other => return Err(format!("answered {other}")),
                };
                lat.push(t.elapsed());
            }
            Ok::<_, String>(lat)
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.map_err(|e| e.to_string())??);
    }
    let wall = start.elapsed();
    let cpu = s.cpu()? - cpu0;
    Ok((ok.load(Ordering::Relaxed), wall, cpu, lat))
}

/// `rate` requests/s spread over `conns` connections on a fixed schedule for [`RUN`];
/// latency counts from each request's scheduled time.
async fn open_loop(
    port: u16,
    body: Vec<u8>,
    rate: f64,
    conns: usize,
    s: &Sluice,
) -> Result<Measured, String> {
    let body = Arc::new(body);
    let every = Duration::from_secs_f64(conns as f64 / rate);
    let cpu0 = s.cpu()?;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..conns {
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::open(port).await?;
            let mut lat = Vec::new();
            let mut due = start + every.mul_f64(k as f64 / conns as f64);
            while due.duration_since(start) < RUN {
                tokio::time::sleep_until(due.into()).await;
                match c.post("/events", &body).await? {
                    200 => {}
                    other => return Err(format!("answered {other}")),
                }
                lat.push(due.elapsed());
                due += every;
            }
            Ok::<_, String>(lat)
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.map_err(|e| e.to_string())??);
    }
    let wall = start.elapsed();
    let cpu = s.cpu()? - cpu0;
    Ok((lat.len() as u64, wall, cpu, lat))
}
