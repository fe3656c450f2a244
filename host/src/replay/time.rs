//! The times `sluice replay` and `sluice offsets reset` take: RFC 3339, or a humantime
//! duration meaning that long ago (`2h`, `30m`, `1day`).

use chrono::{DateTime, Utc};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is not a time: give RFC 3339 (2026-01-05T10:00:00Z) or a duration ago (2h, 30m)")]
pub struct TimeError(pub String);

/// Milliseconds since the epoch of `text`, durations counted back from `now`.
pub fn parse(text: &str, now: DateTime<Utc>) -> Result<i64, TimeError> {
    let t = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(t) {
        return Ok(at.timestamp_millis());
    }
    let ago = humantime::parse_duration(t).map_err(|_| TimeError(text.to_string()))?;
    let ago = chrono::Duration::from_std(ago).map_err(|_| TimeError(text.to_string()))?;
    now.checked_sub_signed(ago)
        .map(|at| at.timestamp_millis())
        .ok_or_else(|| TimeError(text.to_string()))
}

/// Whether `text` reads as a time (so a source without timestamps can say why it refuses).
pub fn is_time(text: &str) -> bool {
    parse(text, Utc::now()).is_ok()
}

/// `ms` as RFC 3339, for messages.
pub fn show(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_and_durations_ago() {
        let now = DateTime::parse_from_rfc3339("2026-01-05T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let noon = now.timestamp_millis();
        assert_eq!(parse("2026-01-05T12:00:00Z", now), Ok(noon));
        assert_eq!(parse("2026-01-05T13:00:00+01:00", now), Ok(noon));
        assert_eq!(parse("2026-01-05T11:59:59.500Z", now), Ok(noon - 500));
        assert_eq!(parse("2h", now), Ok(noon - 2 * 3_600_000));
        assert_eq!(parse(" 1h 30m ", now), Ok(noon - 90 * 60_000));
        assert_eq!(parse("0s", now), Ok(noon));
        for bad in ["", "1024", "yesterday", "2026-01-05", "-2h"] {
            assert_eq!(parse(bad, now), Err(TimeError(bad.to_string())), "{bad}");
        }
        assert_eq!(show(noon), "2026-01-05T12:00:00.000Z");
    }
}
