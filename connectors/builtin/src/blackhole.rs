use serde::Deserialize;
use sluice_sdk::{async_trait, Outcome, RecordRef, Sink, SinkError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlackholeConfig {}

/// Takes every record and keeps none: for benchmarks and for measuring a source alone.
pub struct BlackholeSink;

#[async_trait]
impl Sink for BlackholeSink {
    async fn send(&self, records: &[RecordRef<'_>]) -> Result<Vec<Outcome>, SinkError> {
        Ok(vec![Outcome::Delivered; records.len()])
    }
}
