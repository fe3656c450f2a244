//! What a Redis answer means: per command (one record) or for the whole batch.
//!
//! A command's error refuses its record (`Rejected`: WRONGTYPE, a syntax error) unless it is
//! about the server (`Failed`: loading, out of memory, read-only, failing over, credentials),
//! in which case the batch is sent again.

use redis::{ErrorKind, RedisError, Value};
use sluice_sdk::{Rejection, SinkError, Verdict};

/// Server states, not record faults: loading the dataset, busy script, out of memory,
/// failing to persist (MISCONF), a replica or a cluster in transition.
const TRANSIENT: [&str; 10] = [
    "LOADING",
    "BUSY",
    "OOM",
    "MISCONF",
    "TRYAGAIN",
    "MASTERDOWN",
    "READONLY",
    "CLUSTERDOWN",
    "NOREPLICAS",
    "MOVED",
];
const AUTH: [&str; 3] = ["NOAUTH", "WRONGPASS", "NOPERM"];

/// Classifies one reply of the pipeline.
pub fn reply(v: &Value) -> Verdict {
    if !matches!(v, Value::ServerError(_)) {
        return Verdict::Delivered(());
    }
    match v.clone().extract_error() {
        Ok(_) => Verdict::Delivered(()),
        Err(e) => {
            let code = e.code().unwrap_or("ERR");
            let message = match e.detail() {
                Some(d) => format!("{code} {d}"),
                None => code.to_string(),
            };
            by_code(code, message)
        }
    }
}

fn by_code(code: &str, message: String) -> Verdict {
    if TRANSIENT.contains(&code) {
        Verdict::Failed(SinkError::unavailable(format!("Redis: {message}")))
    } else if AUTH.contains(&code) {
        Verdict::Failed(SinkError::Unauthorized(format!("Redis: {message}")))
    } else {
        Verdict::Rejected(Rejection {
            kind: format!("redis.{code}"),
            message,
        })
    }
}

/// Classifies a failure of the whole pipeline (connection, authentication, timeout).
pub fn batch(e: &RedisError) -> SinkError {
    let code = e.code().unwrap_or_default();
    if e.kind() == ErrorKind::AuthenticationFailed || AUTH.contains(&code) {
        return SinkError::Unauthorized(format!("Redis: {e}"));
    }
    SinkError::unavailable(format!("Redis: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies() {
        let r = by_code("WRONGTYPE", "WRONGTYPE Operation against a key".into());
        assert!(matches!(r, Verdict::Rejected(r) if r.kind == "redis.WRONGTYPE"));
        assert!(matches!(
            by_code("OOM", "OOM".into()),
            Verdict::Failed(SinkError::Unavailable { .. })
        ));
        assert!(matches!(
            by_code("LOADING", "x".into()),
            Verdict::Failed(SinkError::Unavailable { .. })
        ));
        assert!(matches!(
            by_code("NOPERM", "x".into()),
            Verdict::Failed(SinkError::Unauthorized(_))
        ));
        assert!(matches!(reply(&Value::Okay), Verdict::Delivered(())));
    }
}
