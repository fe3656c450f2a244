//! Test fixture: an otherwise working plugin (one `noop` sink) that reports the next major
//! plugin ABI, as a plugin built against a future `sluice-sdk` would. A host must refuse it
//! before calling anything but `sluice_abi_version`, naming both versions and the path.

use sluice_sdk::plugin::AbiVersion;
use sluice_sdk::{async_trait, Outcome, RecordRef, Registry, Sink, SinkError};

struct Noop;

#[async_trait]
impl Sink for Noop {
    async fn send(&self, records: &[RecordRef<'_>]) -> Result<Vec<Outcome>, SinkError> {
        Ok(vec![Outcome::Delivered; records.len()])
    }
}

fn register(registry: &mut Registry) {
    registry.register_sink(
        "noop",
        env!("CARGO_PKG_VERSION"),
        |_: serde_json::Value, _| Ok(Box::new(Noop)),
    );
}

sluice_sdk::__export_plugin_with_abi!(
    AbiVersion {
        major: sluice_sdk::plugin::abi::ABI_MAJOR + 1,
        minor: 0
    },
    register,
    []
);
