use std::time::Duration;

/// A connector configuration that cannot be used.
///
/// `path` is the dotted path of the offending key inside the connector's configuration
/// (`tls.ca_file`, `endpoints[1]`) so the host can point at the YAML line and column.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    pub path: Option<String>,
    pub message: String,
}

impl ConfigError {
    pub fn new(message: impl Into<String>) -> Self {
        ConfigError {
            path: None,
            message: message.into(),
        }
    }

    /// An error about one key of the configuration.
    pub fn at(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: Some(path.into()),
            message: message.into(),
        }
    }
}

/// Why a sink could not take a batch as a whole.
///
/// Per-record problems are [`crate::Outcome`]s, not errors. An error means none of the batch's
/// records reached the destination, so the host keeps all of them.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SinkError {
    /// The destination cannot be reached or is overloaded (connection refused, 5xx, 429).
    /// The host retries the same batch with backoff for as long as it takes, marks the pipeline
    /// unhealthy meanwhile, and never dead-letters because of it.
    #[error("destination unavailable: {message}")]
    Unavailable {
        message: String,
        /// The destination asked to wait this long (Retry-After).
        retry_after: Option<Duration>,
    },
    /// Credentials are missing or refused. Retried slowly until fixed; the pipeline is
    /// unhealthy with this message. Records are neither dropped nor dead-lettered.
    #[error("not authorized: {0}")]
    Unauthorized(String),
    /// The request was too large for the destination (HTTP 413). The host splits the batch
    /// and sends the halves; a single record that is still too large is dead-lettered.
    #[error("request too large: {0}")]
    TooLarge(String),
    /// A failure retrying cannot fix (a bug, a broken configuration). The pipeline stops
    /// and restarts with backoff; nothing is committed past the batch.
    #[error("{0}")]
    Fatal(String),
}

impl SinkError {
    pub fn unavailable(message: impl Into<String>) -> Self {
        SinkError::Unavailable {
            message: message.into(),
            retry_after: None,
        }
    }
}

/// Why a source could not produce or commit.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SourceError {
    /// Temporarily unable (broker down, HTTP 503): the host retries with backoff and marks
    /// the pipeline unhealthy meanwhile.
    #[error("source unavailable: {0}")]
    Unavailable(String),
    /// Credentials refused; retried slowly, pipeline unhealthy.
    #[error("not authorized: {0}")]
    Unauthorized(String),
    /// Cannot continue; the pipeline stops and restarts with backoff.
    #[error("{0}")]
    Fatal(String),
}

/// A dead-letter queue could not take records. The host stops the pipeline without committing
/// past them: a record is never dropped silently.
#[derive(Debug, Clone, thiserror::Error)]
#[error("dead-letter queue failed: {0}")]
pub struct DeadLetterError(pub String);
