//! What a webhook's answer means for the batch.
//!
//! * 2xx: every record delivered.
//! * 408, 425, 429, 5xx: `Unavailable`, honouring `Retry-After` (seconds or HTTP date).
//! * 401, 403, and 407 from a proxy: `Unauthorized` (wrong secret or token): retried slowly,
//!   nothing dropped.
//! * 413: `TooLarge`: the host halves the batch.
//! * 400, 422: the receiver refused the content: every record is rejected (dead-lettered)
//!   with kind `webhook.http.status=<code>` and the receiver's words.
//! * Anything else (3xx, 404, 405, 410...): the URL is wrong: `Fatal`, the pipeline restarts
//!   with backoff and nothing is committed.

use std::time::Duration;

use reqwest::StatusCode;
use sluice_sdk::{Outcome, SinkError};

/// The receiver's words are cut to this many bytes in errors and rejections.
const MAX_REASON: usize = 512;

pub fn classify(
    status: StatusCode,
    retry_after: Option<&str>,
    body: &[u8],
    records: usize,
) -> Result<Vec<Outcome>, SinkError> {
    let code = status.as_u16();
    let reason = || {
        let text = String::from_utf8_lossy(&body[..body.len().min(MAX_REASON)]);
        let text = text.trim();
        if text.is_empty() {
            status.to_string()
        } else {
            format!("{status}: {text}")
        }
    };
    match code {
        200..=299 => Ok(vec![Outcome::Delivered; records]),
        408 | 425 | 429 | 500..=599 => Err(SinkError::Unavailable {
            message: format!("webhook answered {}", reason()),
            retry_after: retry_after.and_then(parse_retry_after),
        }),
        401 | 403 | 407 => Err(SinkError::Unauthorized(format!(
            "webhook answered {} (check `secret`)",
            reason()
        ))),
        413 => Err(SinkError::TooLarge(format!(
            "webhook answered {}",
            reason()
        ))),
        400 | 422 => {
            let r = Outcome::reject(format!("webhook.http.status={code}"), reason());
            Ok(vec![r; records])
        }
        _ => Err(SinkError::Fatal(format!(
            "webhook answered {} (check `url`)",
            reason()
        ))),
    }
}

/// `Retry-After: 120` or `Retry-After: Wed, 21 Oct 2015 07:28:00 GMT`.
fn parse_retry_after(v: &str) -> Option<Duration> {
    sluice_sdk::http::parse_retry_after(v)
}
