//! What a Redis answer means: per command (one record) or for the whole batch.

use redis::{ErrorKind, RedisError, Value};
use sluice_sdk::SinkError;

/// The answer to one command of the pipeline.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    Ok,
    /// The record cannot be written as it is (WRONGTYPE, a syntax error).
    Reject {
        kind: String,
        message: String,
    },
    /// The server cannot take writes right now; the batch is sent again.
    Batch(SinkErrorKind),
}

#[derive(Debug, PartialEq, Eq)]
pub enum SinkErrorKind {
    Unavailable(String),
    Unauthorized(String),
}

impl SinkErrorKind {
    pub fn into_error(self) -> SinkError {
        match self {
            SinkErrorKind::Unavailable(m) => SinkError::unavailable(m),
            SinkErrorKind::Unauthorized(m) => SinkError::Unauthorized(m),
        }
    }
}

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
pub fn reply(v: &Value) -> Reply {
    if !matches!(v, Value::ServerError(_)) {
        return Reply::Ok;
    }
    match v.clone().extract_error() {
        Ok(_) => Reply::Ok,
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

fn by_code(code: &str, message: String) -> Reply {
    if TRANSIENT.contains(&code) {
        Reply::Batch(SinkErrorKind::Unavailable(format!("Redis: {message}")))
    } else if AUTH.contains(&code) {
        Reply::Batch(SinkErrorKind::Unauthorized(format!("Redis: {message}")))
    } else {
        Reply::Reject {
            kind: format!("redis.{code}"),
            message,
        }
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
        assert!(matches!(r, Reply::Reject { kind, .. } if kind == "redis.WRONGTYPE"));
        assert!(matches!(
            by_code("OOM", "OOM".into()),
            Reply::Batch(SinkErrorKind::Unavailable(_))
        ));
        assert!(matches!(
            by_code("LOADING", "x".into()),
            Reply::Batch(SinkErrorKind::Unavailable(_))
        ));
        assert!(matches!(
            by_code("NOPERM", "x".into()),
            Reply::Batch(SinkErrorKind::Unauthorized(_))
        ));
        assert_eq!(reply(&Value::Okay), Reply::Ok);
    }
}
