use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use sluice_sdk::config::Secret;
use sluice_sdk::http::{Deprecations, TlsConfig};
use sluice_sdk::ConfigError;

/// What the user writes under `sink:` for `type: webhook`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// http(s) URL receiving each batch.
    pub url: String,
    /// Key of the HMAC-SHA256 signature.
    pub secret: Secret,
    /// Per-request timeout (default 10s); read it with
    /// [`request_timeout`](WebhookConfig::request_timeout).
    #[serde(default, with = "sluice_sdk::config::opt_duration")]
    pub request_timeout: Option<Duration>,
    /// `request_timeout`'s deprecated spelling.
    #[serde(default, rename = "timeout", with = "sluice_sdk::config::opt_duration")]
    pub deprecated_timeout: Option<Duration>,
    /// Extra headers for every request.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

impl WebhookConfig {
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
            .or(self.deprecated_timeout)
            .unwrap_or(Duration::from_secs(10))
    }

    /// Checks the options that go together; returns the deprecated spellings in use.
    pub fn check(&self) -> Result<Deprecations, ConfigError> {
        if let Some(tls) = &self.tls {
            tls.validate("tls")?;
        }
        let mut d = Deprecations::default();
        d.renamed(
            ("request_timeout", self.request_timeout),
            ("timeout", self.deprecated_timeout),
        )?;
        Ok(d)
    }
}
