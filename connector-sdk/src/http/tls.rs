//! The `tls` options of every HTTP connector, and their application to a client.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::ConfigError;

/// `tls: { ca_file, cert_file, key_file, insecure_skip_verify }` for `https` endpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the CA certificate(s) that signed the server certificate, in addition
    /// to the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for servers that require mutual TLS.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Accept any server certificate. Off unless written explicitly; warned about when on.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// A TLS file that cannot be used. Names the option and the file, never its content.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{key} `{}`: {source}", path.display())]
    Read {
        key: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{key} `{}`: {message}", path.display())]
    Invalid {
        key: &'static str,
        path: PathBuf,
        message: String,
    },
}

impl TlsConfig {
    /// Checks what can be checked without reading files; `at` is the option's path (`tls`).
    pub fn validate(&self, at: &str) -> Result<(), ConfigError> {
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(ConfigError::at(
                at,
                "`cert_file` and `key_file` go together",
            ));
        }
        Ok(())
    }

    /// One WARN when certificate checks are off; call once per client made.
    pub fn warn_if_insecure(&self, connector: &str) {
        if self.insecure_skip_verify {
            tracing::warn!(
                connector,
                "tls.insecure_skip_verify is on: the server certificate is not checked, so \
                 anyone on the network path can read and change what is sent"
            );
        }
    }

    /// The PEM text of `ca_file`, when set.
    pub fn ca_pem(&self) -> Result<Option<Vec<u8>>, TlsError> {
        self.ca_file
            .as_deref()
            .map(|p| read(p, "tls.ca_file"))
            .transpose()
    }

    /// Adds the CA certificates, the client identity and the verification switch to a
    /// `reqwest` client. Reads the files, so it runs when the connector opens.
    pub fn apply(
        &self,
        mut builder: reqwest::ClientBuilder,
        connector: &str,
    ) -> Result<reqwest::ClientBuilder, TlsError> {
        if let (Some(path), Some(pem)) = (&self.ca_file, self.ca_pem()?) {
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| invalid(path, "tls.ca_file", e.to_string()))?;
            if certs.is_empty() {
                return Err(invalid(
                    path,
                    "tls.ca_file",
                    "no PEM certificate in the file".into(),
                ));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        if let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) {
            let mut pem = read(key, "tls.key_file")?;
            pem.push(b'\n');
            pem.extend_from_slice(&read(cert, "tls.cert_file")?);
            let identity = reqwest::Identity::from_pem(&pem)
                .map_err(|e| invalid(cert, "tls.cert_file/tls.key_file", e.to_string()))?;
            builder = builder.identity(identity);
        }
        if self.insecure_skip_verify {
            self.warn_if_insecure(connector);
            builder = builder.danger_accept_invalid_certs(true);
        }
        Ok(builder)
    }
}

fn read(path: &Path, key: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        key,
        path: path.to_path_buf(),
        source,
    })
}

fn invalid(path: &Path, key: &'static str, message: String) -> TlsError {
    TlsError::Invalid {
        key,
        path: path.to_path_buf(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_and_checks() {
        let t: TlsConfig = serde_json::from_value(serde_json::json!({"ca_file": "/x"})).unwrap();
        assert!(!t.insecure_skip_verify);
        assert!(t.validate("tls").is_ok());
        let t: TlsConfig = serde_json::from_value(serde_json::json!({"cert_file": "/c"})).unwrap();
        assert_eq!(t.validate("tls").unwrap_err().path.as_deref(), Some("tls"));
        assert!(
            serde_json::from_value::<TlsConfig>(serde_json::json!({"insecure": true})).is_err()
        );
    }

    #[test]
    fn unreadable_and_empty_files_name_the_option() {
        let t = TlsConfig {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..TlsConfig::default()
        };
        let e = t.apply(reqwest::Client::builder(), "t").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("tls.ca_file `/nonexistent/ca.pem`"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("ca.pem");
        std::fs::write(&empty, "not pem").unwrap();
        let t = TlsConfig {
            ca_file: Some(empty),
            ..TlsConfig::default()
        };
        let e = t.apply(reqwest::Client::builder(), "t").unwrap_err();
        assert!(matches!(e, TlsError::Invalid { .. }), "{e}");
    }
}
