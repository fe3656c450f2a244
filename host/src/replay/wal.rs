//! The range of an `http_server` pipeline's write-ahead log: `--from`/`--to` as log offsets
//! (whole numbers, as the offset store keeps them) or as receive times.

use std::path::{Path, PathBuf};

use sluice_http_server::wal::range::Log;

use super::range::{Ask, RangeError};
use super::time;

/// A resolved span of the log: the entries starting at or after `from` and before `to` (both
/// entry boundaries).
#[derive(Debug, Clone)]
pub struct WalRange {
    pub data_dir: PathBuf,
    pub dir: PathBuf,
    pub from: u64,
    pub to: u64,
    /// Receive time of the first entry of the range, if it has one.
    pub first_time: Option<i64>,
}

/// `--from` or `--to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bound {
    Offset(u64),
    Time(i64),
}

fn bound(text: &str, now: chrono::DateTime<chrono::Utc>) -> Result<Bound, RangeError> {
    if let Ok(n) = text.trim().parse::<u64>() {
        return Ok(Bound::Offset(n));
    }
    time::parse(text, now)
        .map(Bound::Time)
        .map_err(|_| RangeError::NotAnOffsetOrTime(text.to_string()))
}

/// Resolves `ask` on the log of `pipeline` under `data_dir`. An offset that is not an entry
/// boundary stands for the first entry at or after it; a time for the first entry received at
/// or after it. A start before the oldest entry kept is refused (unless nothing was ever
/// deleted): the range never starts later than asked.
pub fn resolve(data_dir: &Path, pipeline: &str, ask: &Ask<'_>) -> Result<WalRange, RangeError> {
    if !ask.partitions.iter().all(|p| *p == 0) {
        return Err(RangeError::Partition);
    }
    let now = chrono::Utc::now();
    let from = bound(ask.from, now)?;
    let to = ask.to.map(|t| bound(t, now)).transpose()?;
    let backwards = match (from, to) {
        (Bound::Offset(f), Some(Bound::Offset(t))) => t < f,
        (Bound::Time(f), Some(Bound::Time(t))) => t < f,
        _ => false,
    };
    if backwards {
        return Err(RangeError::Backwards {
            from: ask.from.to_string(),
            to: ask.to.unwrap_or_default().to_string(),
        });
    }
    let dir = sluice_http_server::wal::dir(data_dir, pipeline);
    let log = Log::open(&dir)?;
    let first_time = log.first_time()?;
    let before = |received: Option<i64>| RangeError::BeforeRetained {
        asked: ask.from.to_string(),
        dir: dir.clone(),
        first: log.first(),
        received: received.map_or_else(|| "no entry kept".to_string(), time::show),
    };
    let start = match from {
        Bound::Offset(n) if n < log.first() => return Err(before(first_time)),
        Bound::Offset(n) if n > log.end() => {
            return Err(RangeError::PastEnd {
                asked: ask.from.to_string(),
                end: log.end(),
            })
        }
        Bound::Offset(n) => log.boundary(n)?,
        // Offset 0 kept: nothing was ever deleted, so nothing was received before.
        Bound::Time(ms) if log.first() > 0 && first_time.is_none_or(|t| ms < t) => {
            return Err(before(first_time))
        }
        Bound::Time(ms) => log.offset_of_time(log.first(), ms)?,
    };
    let end = match to {
        None => log.end(),
        Some(Bound::Offset(n)) => log.boundary(n)?,
        Some(Bound::Time(ms)) => log.offset_of_time(start, ms)?,
    }
    .max(start);
    Ok(WalRange {
        data_dir: data_dir.to_path_buf(),
        first_time: log.time_at(start)?.filter(|_| start < end),
        dir,
        from: start,
        to: end,
    })
}

impl WalRange {
    /// The range in a line, for `--dry-run` and the start of a replay.
    pub fn describe(&self) -> String {
        let first = self
            .first_time
            .map(|t| format!(", the first received at {}", time::show(t)))
            .unwrap_or_default();
        format!(
            "write-ahead log {}: offsets {}..{} ({} bytes; the entries starting in the range{first})\n",
            self.dir.display(),
            self.from,
            self.to,
            self.to - self.from
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_http_server::wal::segment;

    /// One segment at `base` of `n` entries, entry `i` received at `base_ms + 1000 * i`.
    fn write(dir: &Path, base: u64, n: usize, base_ms: i64) -> Vec<u64> {
        std::fs::create_dir_all(dir).unwrap();
        let mut buf = Vec::new();
        let mut offsets = Vec::new();
        for i in 0..n {
            offsets.push(base + buf.len() as u64);
            segment::encode(&mut buf, base_ms + 1000 * i as i64, b"{}");
        }
        offsets.push(base + buf.len() as u64);
        std::fs::write(segment::path(dir, base), &buf).unwrap();
        offsets
    }

    fn ask<'a>(from: &'a str, to: Option<&'a str>) -> Ask<'a> {
        Ask {
            from,
            to,
            partitions: &[],
        }
    }

    #[test]
    fn offsets_and_times_resolve_to_entry_boundaries() {
        let data = tempfile::tempdir().unwrap();
        let dir = sluice_http_server::wal::dir(data.path(), "p");
        let t0 = time::parse("2026-01-05T10:00:00Z", chrono::Utc::now()).unwrap();
        let off = write(&dir, 0, 10, t0);
        let r = resolve(data.path(), "p", &ask("0", None)).unwrap();
        assert_eq!((r.from, r.to, r.first_time), (0, off[10], Some(t0)));
        let (from, to) = ((off[2] + 1).to_string(), off[5].to_string());
        let r = resolve(data.path(), "p", &ask(&from, Some(&to))).unwrap();
        assert_eq!((r.from, r.to), (off[3], off[5]));
        let r = resolve(
            data.path(),
            "p",
            &ask("2026-01-05T10:00:01.500Z", Some("2026-01-05T10:00:04Z")),
        )
        .unwrap();
        assert_eq!((r.from, r.to), (off[2], off[4]));
        // Before the first entry with nothing deleted: from the start.
        let r = resolve(data.path(), "p", &ask("2026-01-05T09:00:00Z", None)).unwrap();
        assert_eq!(r.from, 0);
        assert!(matches!(
            resolve(data.path(), "p", &ask("5", Some("4"))),
            Err(RangeError::Backwards { .. })
        ));
        assert!(matches!(
            resolve(data.path(), "p", &ask("99999", None)),
            Err(RangeError::PastEnd { .. })
        ));
        assert!(matches!(
            resolve(data.path(), "p", &ask("x", None)),
            Err(RangeError::NotAnOffsetOrTime(_))
        ));
        let partition = Ask {
            from: "0",
            to: None,
            partitions: &[1],
        };
        assert!(matches!(
            resolve(data.path(), "p", &partition),
            Err(RangeError::Partition)
        ));
    }

    #[test]
    fn a_start_before_the_oldest_entry_kept_is_refused_naming_it() {
        let data = tempfile::tempdir().unwrap();
        let dir = sluice_http_server::wal::dir(data.path(), "p");
        let t0 = time::parse("2026-01-05T10:00:00Z", chrono::Utc::now()).unwrap();
        write(&dir, 4096, 3, t0);
        for from in ["100", "2026-01-05T09:59:59Z"] {
            let err = resolve(data.path(), "p", &ask(from, None))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("offset 4096") && err.contains("2026-01-05T10:00:00.000Z"),
                "{err}"
            );
        }
        let r = resolve(data.path(), "p", &ask("2026-01-05T10:00:00Z", None)).unwrap();
        assert_eq!(r.from, 4096);
    }
}
