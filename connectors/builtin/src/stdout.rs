use std::io::Write;

use serde::Deserialize;
use sluice_sdk::{async_trait, Outcome, RecordRef, Sink, SinkError};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutConfig {}

/// Writes each record's value as one line on standard output.
pub struct StdoutSink;

impl StdoutSink {
    pub fn new(_cfg: StdoutConfig) -> Self {
        StdoutSink
    }
}

#[async_trait]
impl Sink for StdoutSink {
    async fn send(&self, records: &[RecordRef<'_>]) -> Result<Vec<Outcome>, SinkError> {
        let mut out = std::io::stdout().lock();
        for r in records {
            out.write_all(r.value())
                .and_then(|_| out.write_all(b"\n"))
                .map_err(|e| SinkError::Fatal(format!("stdout: {e}")))?;
        }
        out.flush()
            .map_err(|e| SinkError::Fatal(format!("stdout: {e}")))?;
        Ok(vec![Outcome::Delivered; records.len()])
    }
}
