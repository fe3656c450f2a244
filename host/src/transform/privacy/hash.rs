//! `hash`: replaces fields with their hex HMAC-SHA256 under a key from the environment, a
//! pseudonym that is the same for the same value and key across events and restarts.

use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;
use sluice_sdk::transform::{Event, Transform, TransformError, Verdict};
use sluice_sdk::{BuildContext, ConfigError};

use super::super::condition::{Condition, ConditionConfig};
use super::{applies, compile_when, edit_field, key_from_env};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HashConfig {
    /// Dotted paths.
    pub fields: Vec<String>,
    /// Environment variable holding the key, `hex:...` or `base64:...`.
    pub key_env: String,
    #[serde(default)]
    pub when: Option<ConditionConfig>,
}

/// A compiled `hash`. The key lives only in the prepared HMAC state.
pub struct Hash {
    fields: Vec<String>,
    mac: Hmac<Sha256>,
    when: Option<Condition>,
}

pub fn build(cfg: HashConfig, _: &BuildContext) -> Result<Box<dyn Transform>, ConfigError> {
    Ok(Box::new(compile(cfg)?))
}

fn compile(cfg: HashConfig) -> Result<Hash, ConfigError> {
    if cfg.fields.is_empty() {
        return Err(ConfigError::at("fields", "name at least one field"));
    }
    let key = key_from_env(&cfg.key_env).map_err(|e| ConfigError::at("key_env", e.to_string()))?;
    let mac = Hmac::<Sha256>::new_from_slice(&key)
        .map_err(|_| ConfigError::at("key_env", "the key cannot be used for HMAC"))?;
    Ok(Hash {
        fields: cfg.fields,
        mac,
        when: compile_when(cfg.when)?,
    })
}

impl Hash {
    /// The hex HMAC of a value: of a string's UTF-8 bytes, of any other value's compact
    /// JSON text.
    fn pseudonym(&self, value: &Value) -> String {
        let mut mac = self.mac.clone();
        match value {
            Value::String(s) => mac.update(s.as_bytes()),
            other => mac.update(other.to_string().as_bytes()),
        }
        let out = mac.finalize().into_bytes();
        let mut hex = String::with_capacity(64);
        for b in out {
            hex.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
            hex.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
        }
        hex
    }
}

impl Transform for Hash {
    fn apply(&self, event: &mut Event<'_>) -> Result<Verdict, TransformError> {
        let fields = event.fields()?;
        if !applies(&self.when, fields) {
            return Ok(Verdict::Keep);
        }
        for path in &self.fields {
            edit_field(fields, path, "hash", |v| {
                if v.is_null() {
                    return Ok(false);
                }
                *v = Value::String(self.pseudonym(v));
                Ok(true)
            })?;
        }
        Ok(Verdict::Keep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hash(var: &str, key: &str) -> Hash {
        std::env::set_var(var, key);
        compile(HashConfig {
            fields: vec!["id".into()],
            key_env: var.into(),
            when: None,
        })
        .unwrap_or_else(|e| panic!("{}", e.message))
    }

    #[test]
    fn stable_per_key_and_different_across_keys() {
        let a = hash("SLUICE_TEST_HASH_A", "hex:00112233445566778899aabbccddeeff");
        let a2 = hash("SLUICE_TEST_HASH_A2", "base64:ABEiM0RVZneImaq7zN3u/w==");
        let b = hash("SLUICE_TEST_HASH_B", "hex:ffeeddccbbaa99887766554433221100");
        let id = json!("customer-42");
        assert_eq!(a.pseudonym(&id), a.pseudonym(&id));
        assert_eq!(
            a.pseudonym(&id),
            a2.pseudonym(&id),
            "same key, hex or base64"
        );
        assert_ne!(a.pseudonym(&id), b.pseudonym(&id));
        assert_ne!(a.pseudonym(&id), a.pseudonym(&json!("customer-43")));
        assert_eq!(a.pseudonym(&id).len(), 64);
        assert_eq!(
            a.pseudonym(&json!(42)),
            a.pseudonym(&json!("42")),
            "JSON text"
        );
    }

    #[test]
    fn key_problems_name_the_variable_only() {
        let e = compile(HashConfig {
            fields: vec!["id".into()],
            key_env: "SLUICE_TEST_HASH_UNSET".into(),
            when: None,
        })
        .err()
        .map(|e| e.message);
        assert_eq!(
            e.as_deref(),
            Some("environment variable `SLUICE_TEST_HASH_UNSET` is not set")
        );
        std::env::set_var("SLUICE_TEST_HASH_BAD", "hex:zz-secret");
        let e = compile(HashConfig {
            fields: vec!["id".into()],
            key_env: "SLUICE_TEST_HASH_BAD".into(),
            when: None,
        })
        .err()
        .map(|e| e.message)
        .unwrap_or_default();
        assert!(e.contains("not valid hex") && !e.contains("secret"), "{e}");
    }
}
