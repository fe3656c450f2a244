use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use sluice_sdk::config::Secret;

/// What the user writes under `sink:` for `type: webhook`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// http(s) URL receiving each batch.
    pub url: String,
    /// Key of the HMAC-SHA256 signature.
    pub secret: Secret,
    /// Per-request timeout.
    #[serde(default = "default_timeout", with = "sluice_sdk::config::duration")]
    pub timeout: Duration,
    /// Extra headers for every request.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
