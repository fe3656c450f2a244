use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use sluice_sdk::{
    async_trait, BatchWriter, Checkpoint, ConfigError, Origin, PollEnd, Polled, RecordHead, Source,
    SourceContext, SourceError,
};

/// `generator` source: realistic compliance events for demos, tests and benchmarks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorConfig {
    /// Stop after this many records (counting from `seq` 0); absent: endless.
    #[serde(default)]
    pub count: Option<u64>,
    /// Records per second; absent: as fast as the pipeline takes them.
    #[serde(default)]
    pub rate: Option<f64>,
    /// Number of distinct tenants to spread events over.
    #[serde(default = "default_tenants")]
    pub tenants: u32,
}

fn default_tenants() -> u32 {
    8
}

/// The generated sequence is one partition.
const PARTITION: i32 = 0;
const EVENT_TYPES: [&str; 4] = [
    "assessment.started",
    "control.evaluated",
    "gap.identified",
    "report.generated",
];
const SEVERITIES: [&str; 4] = ["low", "medium", "high", "critical"];
const CONTROLS: [&str; 8] = [
    "AC-2", "AC-6", "AU-2", "AU-12", "CM-6", "IA-2", "SC-7", "SI-4",
];
const FRAMEWORKS: [&str; 3] = ["NIST-800-53", "CMMC-L2", "ISO-27001"];
const STATUSES: [&str; 3] = ["pass", "fail", "not_applicable"];

/// Emits events whose content is a pure function of `seq`, so a restart that resumes at a
/// committed `seq` reproduces exactly the records that were not yet delivered.
pub struct GeneratorSource {
    cfg: GeneratorConfig,
    stream: Arc<str>,
    next: u64,
    started: Option<(Instant, u64)>,
}

impl GeneratorSource {
    pub fn new(cfg: GeneratorConfig) -> Result<Self, ConfigError> {
        if let Some(r) = cfg.rate {
            if !(r > 0.0 && r.is_finite()) {
                return Err(ConfigError::at("rate", "rate must be a positive number"));
            }
        }
        if cfg.tenants == 0 {
            return Err(ConfigError::at("tenants", "tenants must be at least 1"));
        }
        Ok(GeneratorSource {
            cfg,
            stream: "generator".into(),
            next: 0,
            started: None,
        })
    }

    /// How many records may be produced now under `rate`, and how long to wait if none.
    fn allowance(&mut self, max: usize) -> (usize, Duration) {
        let Some(rate) = self.cfg.rate else {
            return (max, Duration::ZERO);
        };
        let (t0, base) = *self.started.get_or_insert((Instant::now(), self.next));
        let due = (t0.elapsed().as_secs_f64() * rate) as u64 + 1;
        let produced = self.next - base;
        if due > produced {
            ((due - produced).min(max as u64) as usize, Duration::ZERO)
        } else {
            let wait =
                Duration::from_secs_f64((produced + 1) as f64 / rate).saturating_sub(t0.elapsed());
            (0, wait.min(Duration::from_millis(100)))
        }
    }
}

/// A cheap, well-mixed hash of `seq` (splitmix64) so fields vary without an RNG state.
fn mix(seq: u64) -> u64 {
    let mut z = seq.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn push_hex(buf: &mut Vec<u8>, v: u64, digits: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for i in (0..digits).rev() {
        buf.push(HEX[((v >> (i * 4)) & 0xf) as usize]);
    }
}

/// Writes one event as JSON (about 330 bytes) into `buf`.
fn write_event(buf: &mut Vec<u8>, seq: u64, tenants: u32, timestamp: &str) {
    let h = mix(seq);
    let h2 = mix(h);
    let mut num = itoa::Buffer::new();
    buf.extend_from_slice(b"{\"seq\":");
    buf.extend_from_slice(num.format(seq).as_bytes());
    buf.extend_from_slice(b",\"event_id\":\"");
    // UUID-shaped, version 4 layout, derived from seq.
    push_hex(buf, h >> 32, 8);
    buf.push(b'-');
    push_hex(buf, (h >> 16) & 0xffff, 4);
    buf.extend_from_slice(b"-4");
    push_hex(buf, h & 0xfff, 3);
    buf.push(b'-');
    push_hex(buf, 0x8000 | (h2 >> 48) & 0x3fff, 4);
    buf.push(b'-');
    push_hex(buf, h2 & 0xffff_ffff_ffff, 12);
    buf.extend_from_slice(b"\",\"event_type\":\"");
    buf.extend_from_slice(EVENT_TYPES[(h % 4) as usize].as_bytes());
    buf.extend_from_slice(b"\",\"timestamp\":\"");
    buf.extend_from_slice(timestamp.as_bytes());
    buf.extend_from_slice(b"\",\"tenant_id\":\"tenant-");
    buf.extend_from_slice(num.format((h >> 8) % tenants as u64).as_bytes());
    buf.extend_from_slice(b"\",\"assessment_id\":\"asm-");
    buf.extend_from_slice(num.format(seq / 100).as_bytes());
    buf.extend_from_slice(b"\",\"control_id\":\"");
    buf.extend_from_slice(CONTROLS[((h >> 12) % 8) as usize].as_bytes());
    buf.extend_from_slice(b"\",\"severity\":\"");
    buf.extend_from_slice(SEVERITIES[((h >> 16) % 4) as usize].as_bytes());
    buf.extend_from_slice(b"\",\"framework\":\"");
    buf.extend_from_slice(FRAMEWORKS[((h >> 20) % 3) as usize].as_bytes());
    buf.extend_from_slice(b"\",\"status\":\"");
    buf.extend_from_slice(STATUSES[((h >> 24) % 3) as usize].as_bytes());
    buf.extend_from_slice(b"\",\"actor\":\"svc-assessor-");
    buf.extend_from_slice(num.format((h >> 28) % 16).as_bytes());
    buf.extend_from_slice(b"@grc.example\",\"source\":\"sluice-generator\"}");
}

#[async_trait]
impl Source for GeneratorSource {
    async fn open(&mut self, ctx: SourceContext) -> Result<(), SourceError> {
        if let Some(p) = ctx.checkpoints.get(&PARTITION) {
            self.next = p.parse().map_err(|_| {
                SourceError::Fatal(format!("stored generator position `{p}` is not a number"))
            })?;
            tracing::info!(pipeline = %ctx.pipeline, seq = self.next, "generator resumed at seq {}", self.next);
        } else {
            tracing::info!(pipeline = %ctx.pipeline, "generator starting at seq 0 (no saved position)");
        }
        Ok(())
    }

    async fn poll(&mut self, max: usize) -> Result<Polled, SourceError> {
        let mut out = BatchWriter::new();
        let end = self.poll_into(max, &mut out).await?;
        Ok(out.into_polled(end))
    }

    async fn poll_into(
        &mut self,
        max: usize,
        out: &mut BatchWriter<'_>,
    ) -> Result<PollEnd, SourceError> {
        let remaining = self
            .cfg
            .count
            .map_or(u64::MAX, |c| c.saturating_sub(self.next));
        if remaining == 0 {
            return Ok(PollEnd::Finished);
        }
        let (n, wait) = self.allowance(max.min(remaining.min(usize::MAX as u64) as usize));
        if n == 0 {
            tokio::time::sleep(wait).await;
            return Ok(PollEnd::More);
        }
        let now = chrono::Utc::now();
        let ts = now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let ts_ms = now.timestamp_millis();
        out.reserve(n, n * 340);
        for seq in self.next..self.next + n as u64 {
            let head = RecordHead {
                stream: &self.stream,
                partition: PARTITION,
                offset: seq as i64,
                timestamp: Some(ts_ms),
                key: None,
            };
            // Built from fixed strings and numbers: JSON by construction.
            out.push_json_with(head, |buf| write_event(buf, seq, self.cfg.tenants, &ts));
        }
        self.next += n as u64;
        Ok(PollEnd::More)
    }

    async fn commit(&mut self, through: &[Origin]) -> Result<Vec<Checkpoint>, SourceError> {
        Ok(through
            .iter()
            .filter(|o| o.partition == PARTITION)
            .map(|o| Checkpoint {
                partition: PARTITION,
                position: (o.offset + 1).to_string(),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_json_with_required_fields_and_deterministic() {
        let mut a = Vec::new();
        write_event(&mut a, 42, 8, "2026-11-22T10:00:00.000Z");
        let v: serde_json::Value = serde_json::from_slice(&a).unwrap();
        assert_eq!(v["seq"], 42);
        for f in [
            "event_id",
            "event_type",
            "timestamp",
            "tenant_id",
            "assessment_id",
            "control_id",
            "severity",
        ] {
            assert!(v[f].is_string(), "{f} missing in {v}");
        }
        assert!(EVENT_TYPES.contains(&v["event_type"].as_str().unwrap()));
        let mut b = Vec::new();
        write_event(&mut b, 42, 8, "2026-11-22T10:00:00.000Z");
        assert_eq!(a, b);
        assert!((250..400).contains(&a.len()), "len {}", a.len());
    }
}
