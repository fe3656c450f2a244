//! What a webhook's answer means for the batch: the SDK's status table, read strictly.
//!
//! * 2xx: every record delivered.
//! * 408, 425, 429, 5xx (but 501): `Unavailable`, honouring `Retry-After`.
//! * 401, 403, and 407 from a proxy: `Unauthorized` (wrong secret or token): retried slowly,
//!   nothing dropped.
//! * 413: `TooLarge`: the host halves the batch.
//! * 400, 422: the receiver refused the content: every record is rejected (dead-lettered)
//!   with kind `webhook.http.status=<code>` and the receiver's words.
//! * Anything else (3xx, 404, 405, 410, 501...): the URL is wrong: `Fatal`, the pipeline
//!   restarts with backoff and nothing is committed.

use sluice_sdk::http::{Response, StatusClass};
use sluice_sdk::{Rejection, SinkError, Verdict};

/// The receiver's words are cut to this many bytes in errors and rejections.
const MAX_REASON: usize = 512;

pub fn classify(resp: &Response) -> Verdict {
    let status = resp.status;
    let code = status.as_u16();
    let reason = || {
        let body = &resp.body;
        let text = String::from_utf8_lossy(&body[..body.len().min(MAX_REASON)]);
        let text = text.trim();
        if text.is_empty() {
            status.to_string()
        } else {
            format!("{status}: {text}")
        }
    };
    match StatusClass::of(code) {
        StatusClass::Success => Verdict::Delivered(()),
        StatusClass::Unauthorized => Verdict::Failed(SinkError::Unauthorized(format!(
            "webhook answered {} (check `secret`)",
            reason()
        ))),
        StatusClass::Rejected if matches!(code, 400 | 422) => Verdict::Rejected(Rejection {
            kind: format!("webhook.http.status={code}"),
            message: reason(),
        }),
        StatusClass::Rejected | StatusClass::Misdirected => Verdict::Failed(SinkError::Fatal(
            format!("webhook answered {} (check `url`)", reason()),
        )),
        class => Verdict::Failed(
            class
                .sink_error(format!("webhook answered {}", reason()), resp.retry_after())
                .unwrap_or_else(|| SinkError::Fatal(reason())),
        ),
    }
}
