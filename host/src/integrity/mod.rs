//! Tamper evidence (`integrity:`): per-chain hash-linked stamps on the records a sink takes,
//! Ed25519-signed digests at every commit, and `sluice verify`. The formats are in
//! `docs/integrity.md`.

pub mod chain;
pub mod copy;
mod intake;
pub mod jcs;
pub mod jcs_text;
pub mod read;
pub mod verify;

use std::path::PathBuf;

use base64::Engine as _;
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

/// `integrity:` as written, on a named sink or on a pipeline (for its single `sink:`).
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IntegrityConfig {
    /// The Ed25519 private seed (32 bytes, base64 or hex), usually `${VAR}`.
    #[serde(default)]
    pub signing_key: Option<String>,
    /// A file holding the seed (base64 or hex, surrounding whitespace ignored).
    #[serde(default)]
    pub signing_key_file: Option<PathBuf>,
    /// With a MAC key the record hashes are HMAC-SHA256 keyed with its UTF-8 bytes.
    #[serde(default)]
    pub mac_key: Option<String>,
    /// Names the keys in stamps and digests; default derived from the public key.
    #[serde(default)]
    pub key_id: Option<String>,
    /// The member of a JSON record that carries the stamp.
    #[serde(default = "default_field")]
    pub field: String,
    /// A second, durable copy of the pipeline's digest log, written before each commit.
    #[serde(default)]
    pub digests_to: Option<DigestsTo>,
}

/// Where the digest log is copied (`digests_to:`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum DigestsTo {
    /// A Kafka topic: each entry a message keyed by the pipeline name (so one partition
    /// keeps one pipeline's entries in order), produced with acks=all.
    Kafka {
        brokers: String,
        topic: String,
        /// librdkafka properties (TLS, SASL), as the `kafka` sink's `options`.
        #[cfg(feature = "kafka")]
        #[serde(default)]
        options: sluice_kafka::Options,
    },
    /// A file (on another volume): appended and fsynced; its directory must exist.
    File { path: PathBuf },
}

impl DigestsTo {
    /// What is wrong with it: (key, message).
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        match self {
            DigestsTo::Kafka { brokers, .. } if brokers.trim().is_empty() => {
                Err(("brokers", "must not be empty".into()))
            }
            DigestsTo::Kafka { topic, .. } if topic.trim().is_empty() => {
                Err(("topic", "must not be empty".into()))
            }
            // The options as librdkafka reads them (unknown names, bad values).
            #[cfg(feature = "kafka")]
            DigestsTo::Kafka {
                brokers, options, ..
            } => sluice_kafka::producer_config(brokers, options, "sluice-digests")
                .map(drop)
                .map_err(|e| ("options", e.message)),
            DigestsTo::File { path } if path.as_os_str().is_empty() => {
                Err(("path", "must not be empty".into()))
            }
            _ => Ok(()),
        }
    }

    /// Named in health and logs: `kafka topic T on B`, `file P`.
    pub fn describe(&self) -> String {
        match self {
            DigestsTo::Kafka { brokers, topic, .. } => format!("kafka topic {topic} on {brokers}"),
            DigestsTo::File { path } => format!("file {}", path.display()),
        }
    }
}

fn default_field() -> String {
    "_audit".into()
}

impl std::fmt::Debug for IntegrityConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntegrityConfig")
            .field(
                "signing_key",
                &self.signing_key.as_ref().map(|_| "<redacted>"),
            )
            .field("signing_key_file", &self.signing_key_file)
            .field("mac_key", &self.mac_key.as_ref().map(|_| "<redacted>"))
            .field("key_id", &self.key_id)
            .field("field", &self.field)
            .field("digests_to", &self.digests_to)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("give exactly one of `signing_key` and `signing_key_file`")]
    OneSigningKey,
    #[error("a key must be 32 bytes written as 64 hex digits or 44 characters of base64")]
    Encoding,
    #[error("cannot read the key file {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`mac_key` must not be empty")]
    EmptyMac,
    #[error("`field` must not be empty")]
    EmptyField,
}

/// Decodes 32 bytes written as hex (64 digits) or standard base64 (with or without padding).
pub fn decode_key(text: &str) -> Result<[u8; 32], KeyError> {
    let t = text.trim();
    if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        let mut out = [0u8; 32];
        for (i, pair) in t.as_bytes().chunks(2).enumerate() {
            let s = std::str::from_utf8(pair).map_err(|_| KeyError::Encoding)?;
            out[i] = u8::from_str_radix(s, 16).map_err(|_| KeyError::Encoding)?;
        }
        return Ok(out);
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(t)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(t))
        .map_err(|_| KeyError::Encoding)?;
    bytes.try_into().map_err(|_| KeyError::Encoding)
}

pub fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 0xf) as usize] as char);
    }
    s
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The default key id: `ed25519:` and the first 8 bytes of SHA-256 of the public key, in hex.
pub fn key_id_of(public: &VerifyingKey) -> String {
    let d = Sha256::digest(public.as_bytes());
    format!("ed25519:{}", hex(&d[..8]))
}

/// The keys of one sink's integrity, ready to use.
#[derive(Clone)]
pub struct Keys {
    pub signing: SigningKey,
    pub mac: Option<Vec<u8>>,
    pub key_id: String,
    pub field: String,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("key_id", &self.key_id)
            .field("field", &self.field)
            .finish_non_exhaustive()
    }
}

impl IntegrityConfig {
    /// Reads the keys; an error names the key (`signing_key`, ...) it is about.
    pub fn keys(&self) -> Result<Keys, (&'static str, KeyError)> {
        let seed = match (&self.signing_key, &self.signing_key_file) {
            (Some(k), None) => decode_key(k).map_err(|e| ("signing_key", e))?,
            (None, Some(p)) => {
                let text = std::fs::read_to_string(p).map_err(|source| {
                    (
                        "signing_key_file",
                        KeyError::File {
                            path: p.clone(),
                            source,
                        },
                    )
                })?;
                decode_key(&text).map_err(|e| ("signing_key_file", e))?
            }
            _ => return Err(("signing_key", KeyError::OneSigningKey)),
        };
        if self.mac_key.as_deref() == Some("") {
            return Err(("mac_key", KeyError::EmptyMac));
        }
        if self.field.is_empty() {
            return Err(("field", KeyError::EmptyField));
        }
        let signing = SigningKey::from_bytes(&seed);
        let key_id = self
            .key_id
            .clone()
            .unwrap_or_else(|| key_id_of(&signing.verifying_key()));
        Ok(Keys {
            signing,
            mac: self.mac_key.as_ref().map(|k| k.as_bytes().to_vec()),
            key_id,
            field: self.field.clone(),
        })
    }
}

/// A new key pair for `sluice integrity keygen`: (private seed, public key), both base64.
pub fn keygen() -> (String, String) {
    let seed: [u8; 32] = rand::random();
    let key = SigningKey::from_bytes(&seed);
    (b64(&seed), b64(key.verifying_key().as_bytes()))
}

/// The text `sluice integrity keygen` prints.
pub fn keygen_text() -> String {
    let (private, public) = keygen();
    let id = decode_key(&public)
        .ok()
        .and_then(|b| VerifyingKey::from_bytes(&b).ok())
        .map(|k| key_id_of(&k))
        .unwrap_or_default();
    format!(
        "# Ed25519 key pair for signed integrity digests (32-byte values, base64).\n\
         # Keep the private seed secret (signing_key: \"${{VAR}}\" or signing_key_file);\n\
         # give the public key to `sluice verify --public-key`.\n\
         private_seed: {private}\npublic_key: {public}\nkey_id: {id}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_decode_as_hex_or_base64() {
        let seed = [7u8; 32];
        assert_eq!(decode_key(&hex(&seed)).unwrap(), seed);
        assert_eq!(decode_key(&b64(&seed)).unwrap(), seed);
        assert_eq!(decode_key(&format!(" {}\n", b64(&seed))).unwrap(), seed);
        assert!(decode_key("abcd").is_err());
        assert!(decode_key(&b64(&[1u8; 31])).is_err());
        let (private, public) = keygen();
        let k = SigningKey::from_bytes(&decode_key(&private).unwrap());
        assert_eq!(b64(k.verifying_key().as_bytes()), public);
    }

    #[test]
    fn config_debug_never_shows_keys() {
        let c = IntegrityConfig {
            signing_key: Some("secret-seed".into()),
            signing_key_file: None,
            mac_key: Some("secret-mac".into()),
            key_id: None,
            field: "_audit".into(),
            digests_to: None,
        };
        let text = format!("{c:?}");
        assert!(!text.contains("secret"), "{text}");
        assert!(matches!(c.keys(), Err(("signing_key", KeyError::Encoding))));
    }
}
