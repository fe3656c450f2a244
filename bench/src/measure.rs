//! Running the sluice binary and measuring it.

use std::fmt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One measured run.
pub struct Report {
    pub scenario: String,
    pub records: u64,
    pub wall: Duration,
    /// user + sys CPU of the measured process.
    pub cpu: Duration,
    /// The reports after this one, up to the next baseline, are compared to it. The first
    /// report of a scenario is always a baseline.
    pub baseline: bool,
}

impl Report {
    pub fn per_second(&self) -> f64 {
        self.records as f64 / self.wall.as_secs_f64()
    }

    pub fn cpu_us_per_record(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.records as f64
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<34} {:>9} records in {:>6.2} s  {:>10.0} records/s  {:>7.3} CPU us/record",
            self.scenario,
            self.records,
            self.wall.as_secs_f64(),
            self.per_second(),
            self.cpu_us_per_record()
        )
    }
}

/// The `sluice` binary next to this one (same profile).
pub fn sluice_bin() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let bin = exe.with_file_name("sluice");
    if bin.exists() {
        Ok(bin)
    } else {
        Err(format!(
            "{} not found: build it with the same profile (cargo build --release -p sluice)",
            bin.display()
        ))
    }
}

/// Runs `sluice run <config>` to completion and measures wall time and CPU.
pub fn run_to_end(
    scenario: &str,
    config: &std::path::Path,
    records: u64,
) -> Result<Report, String> {
    let bin = sluice_bin()?;
    let started = Instant::now();
    let child = Command::new(bin)
        .args(["run", config.to_str().unwrap_or_default()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawn sluice: {e}"))?;
    let pid = child.id() as libc::pid_t;
    let (status, cpu) = wait_with_rusage(pid)?;
    let wall = started.elapsed();
    if status != 0 {
        return Err(format!("sluice exited with status {status}"));
    }
    Ok(Report {
        scenario: scenario.to_string(),
        records,
        wall,
        cpu,
        baseline: false,
    })
}

/// Waits for a child and returns its exit status and user+sys CPU time.
pub fn wait_with_rusage(pid: libc::pid_t) -> Result<(i32, Duration), String> {
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills in; pid is our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if r < 0 {
        return Err(format!("wait4: {}", std::io::Error::last_os_error()));
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Ok((
        libc::WEXITSTATUS(status),
        tv(usage.ru_utime) + tv(usage.ru_stime),
    ))
}

/// Runs `sluice <args>` to completion (it must exit 0) and measures it.
pub fn command_to_end(scenario: &str, args: &[&str], records: u64) -> Result<Report, String> {
    let bin = sluice_bin()?;
    let started = Instant::now();
    let child = Command::new(bin)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawn sluice: {e}"))?;
    let pid = child.id() as libc::pid_t;
    let (status, cpu) = wait_with_rusage(pid)?;
    let wall = started.elapsed();
    if status != 0 {
        return Err(format!(
            "sluice {} exited with status {status}",
            args.join(" ")
        ));
    }
    Ok(Report {
        scenario: scenario.to_string(),
        records,
        wall,
        cpu,
        baseline: false,
    })
}
