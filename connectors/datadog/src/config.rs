//! What the user writes under `sink:` for `type: datadog_logs`.

use std::time::Duration;

use serde::Deserialize;
use sluice_sdk::config::{duration, Secret};
use sluice_sdk::http::{Compression, Deprecations, TlsConfig};
use sluice_sdk::template::Template;
use sluice_sdk::ConfigError;

/// Configuration of the `datadog_logs` sink.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DdConfig {
    /// `DD-API-KEY`; belongs to one site.
    pub api_key: Secret,
    /// Datadog site (`datadoghq.com`, `datadoghq.eu`, `us3.datadoghq.com`, ...). Default
    /// `datadoghq.com`. Exclusive with `endpoint`.
    #[serde(default)]
    pub site: Option<String>,
    /// Base URL of an intake (a proxy, a test server); `/api/v2/logs` is appended.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Reserved attributes, fixed text or `{{ field }}` from the record. A field missing from a
    /// record leaves the attribute out for that log (Datadog then applies its defaults).
    #[serde(default)]
    pub service: Option<Template>,
    #[serde(default)]
    pub ddsource: Option<Template>,
    /// Comma-separated `key:value` tags.
    #[serde(default)]
    pub ddtags: Option<Template>,
    #[serde(default)]
    pub hostname: Option<Template>,
    /// Severity (`info`, `warning`, `error`, ...).
    #[serde(default)]
    pub status: Option<Template>,
    /// Field whose text becomes `message`; the record's other top-level fields become
    /// attributes. Absent: the whole record, as JSON text, is the message (Datadog parses it).
    #[serde(default)]
    pub message_field: Option<String>,
    /// `gzip` (level 1, the default: CPU per record is what a host runs out of), `none`, or
    /// `{ algorithm: gzip, level: N }`. Read it with [`compression`](DdConfig::compression).
    #[serde(default = "Compression::gzip")]
    pub compression: Compression,
    /// The gzip level's deprecated spelling (now `compression: { algorithm: gzip, level }`).
    #[serde(default, rename = "compression_level")]
    pub deprecated_compression_level: Option<u32>,
    /// Timeout of one HTTP request.
    #[serde(default = "default_timeout", with = "duration")]
    pub request_timeout: Duration,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

impl DdConfig {
    /// `compression` with the deprecated `compression_level` folded in.
    pub fn compression(&self) -> Compression {
        match (self.compression, self.deprecated_compression_level) {
            (Compression::Gzip { .. }, Some(level)) => Compression::Gzip { level },
            (c, _) => c,
        }
    }

    /// Checks the options that go together, and returns the deprecated spellings in use.
    pub fn check(&self) -> Result<Deprecations, ConfigError> {
        let mut d = Deprecations::default();
        if let Some(level) = self.deprecated_compression_level {
            if !(1..=9).contains(&level) {
                return Err(ConfigError::at(
                    "compression_level",
                    "must be between 1 and 9",
                ));
            }
            let explicit = match self.compression {
                Compression::Gzip { level } => level != Compression::DEFAULT_GZIP_LEVEL,
                Compression::None => false,
            };
            d.renamed(
                ("compression.level", explicit.then_some(())),
                ("compression_level", Some(())),
            )?;
        }
        if let Some(tls) = &self.tls {
            tls.validate("tls")?;
        }
        Ok(d)
    }
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

/// Every Datadog site and its parameter; the intake host is `http-intake.logs.<site>`.
pub const SITES: [&str; 9] = [
    "datadoghq.com",
    "us3.datadoghq.com",
    "us5.datadoghq.com",
    "datadoghq.eu",
    "ap1.datadoghq.com",
    "ap2.datadoghq.com",
    "ddog-gov.com",
    "us2.ddog-gov.com",
    "uk1.datadoghq.com",
];

/// The intake URL for a site or an explicit endpoint.
pub fn intake_url(
    site: Option<&str>,
    endpoint: Option<&str>,
) -> Result<url::Url, (String, String)> {
    let base = match (site, endpoint) {
        (Some(_), Some(_)) => {
            return Err((
                "endpoint".into(),
                "set either `site` or `endpoint`, not both".into(),
            ))
        }
        (None, Some(e)) => sluice_sdk::http::endpoint_url(e, "put the API key in `api_key`")
            .map_err(|err| ("endpoint".to_string(), err.to_string()))?,
        (site, None) => {
            let site = site.unwrap_or(SITES[0]);
            if !SITES.contains(&site) {
                let hint = if site == "app.datadoghq.com" {
                    " (the US1 site parameter is `datadoghq.com`)"
                } else {
                    ""
                };
                return Err((
                    "site".into(),
                    format!(
                        "unknown Datadog site `{site}`{hint}; known: {}",
                        SITES.join(", ")
                    ),
                ));
            }
            url::Url::parse(&format!("https://http-intake.logs.{site}/"))
                .map_err(|err| ("site".to_string(), err.to_string()))?
        }
    };
    let path = base.path().trim_end_matches('/');
    let path = if path.ends_with("/api/v2/logs") {
        path.to_string()
    } else {
        format!("{path}/api/v2/logs")
    };
    let mut url = base;
    url.set_path(&path);
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_site_has_its_intake() {
        for site in SITES {
            assert_eq!(
                intake_url(Some(site), None).unwrap().as_str(),
                format!("https://http-intake.logs.{site}/api/v2/logs")
            );
        }
        assert_eq!(
            intake_url(None, None).unwrap().as_str(),
            "https://http-intake.logs.datadoghq.com/api/v2/logs"
        );
        let e = intake_url(Some("app.datadoghq.com"), None).unwrap_err();
        assert!(e.1.contains("`datadoghq.com`"));
        assert_eq!(
            intake_url(None, Some("http://127.0.0.1:8080"))
                .unwrap()
                .as_str(),
            "http://127.0.0.1:8080/api/v2/logs"
        );
        assert_eq!(
            intake_url(None, Some("https://proxy/dd/api/v2/logs"))
                .unwrap()
                .as_str(),
            "https://proxy/dd/api/v2/logs"
        );
        assert!(intake_url(Some("datadoghq.com"), Some("http://x")).is_err());
        for url in [
            "https://user:hunter2@proxy/dd",
            "https://proxy/dd?dd-api-key=hunter2",
        ] {
            let (path, msg) = intake_url(None, Some(url)).unwrap_err();
            assert_eq!(path, "endpoint");
            assert!(
                msg.contains("`api_key`") && !msg.contains("hunter2"),
                "{msg}"
            );
        }
    }
}
