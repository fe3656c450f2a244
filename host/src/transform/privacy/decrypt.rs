//! `decrypt`: restores fields `encrypt` sealed, picking the key by the envelope's `kid` among
//! several (key rotation). Also the engine of `sluice decrypt`.

use std::collections::BTreeMap;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use serde::Deserialize;
use serde_json::Value;
use sluice_sdk::transform::{Event, Transform, TransformError, Verdict};
use sluice_sdk::{BuildContext, ConfigError};

use super::super::condition::{Condition, ConditionConfig};
use super::encrypt::{aad, aes_key_from_env, FORMAT};
use super::{applies, compile_when, edit_field};

/// The dead-letter kind of a value that cannot be decrypted.
pub const DECRYPT_ERROR: &str = "decrypt_error";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    pub key_env: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecryptConfig {
    /// Dotted paths.
    pub fields: Vec<String>,
    /// Key id → the environment variable holding that key.
    pub keys: BTreeMap<String, KeyConfig>,
    /// The pipeline that encrypted (part of the associated data); this one's by default.
    #[serde(default)]
    pub pipeline: Option<String>,
    #[serde(default)]
    pub when: Option<ConditionConfig>,
}

/// Why an envelope could not be opened. Never carries plaintext or key material.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("not an `{FORMAT}` envelope: {0}")]
    Malformed(&'static str),
    #[error("unknown key id `{0}`")]
    UnknownKey(String),
    #[error("authentication failed (wrong key, or the value, field or pipeline name changed)")]
    Auth,
    #[error("the decrypted text is not JSON")]
    NotJson,
}

/// The keys a decryption may use, by id.
pub struct Keyring {
    keys: BTreeMap<String, Aes256Gcm>,
}

impl Keyring {
    /// Reads each key id's key from its environment variable.
    pub fn from_env<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, super::KeyError> {
        let mut keys = BTreeMap::new();
        for (kid, var) in pairs {
            keys.insert(kid.to_string(), aes_key_from_env(var)?);
        }
        Ok(Keyring { keys })
    }

    /// Whether `value` looks like an envelope (an object whose `enc` is set).
    pub fn is_envelope(value: &Value) -> bool {
        value.get("enc").is_some()
    }

    /// Opens an envelope found at `path` of a record of `pipeline`.
    pub fn open(&self, pipeline: &str, path: &str, value: &Value) -> Result<Value, OpenError> {
        let field = |k: &'static str| {
            value
                .get(k)
                .and_then(Value::as_str)
                .ok_or(OpenError::Malformed(k))
        };
        if field("enc")? != FORMAT {
            return Err(OpenError::Malformed("enc"));
        }
        let kid = field("kid")?;
        let b64 = base64::engine::general_purpose::STANDARD;
        let iv: [u8; 12] = b64
            .decode(field("iv")?)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or(OpenError::Malformed("iv"))?;
        let ct = b64
            .decode(field("ct")?)
            .map_err(|_| OpenError::Malformed("ct"))?;
        let cipher = self
            .keys
            .get(kid)
            .ok_or_else(|| OpenError::UnknownKey(kid.to_string()))?;
        let aad = aad(pipeline, path, kid);
        let plain = cipher
            .decrypt(
                &Nonce::from(iv),
                Payload {
                    msg: &ct,
                    aad: &aad,
                },
            )
            .map_err(|_| OpenError::Auth)?;
        serde_json::from_slice(&plain).map_err(|_| OpenError::NotJson)
    }

    /// Opens every envelope inside `value` (objects and arrays walked, paths built dotted
    /// from `path`); returns whether one was opened.
    pub fn open_all(
        &self,
        pipeline: &str,
        path: &str,
        value: &mut Value,
    ) -> Result<bool, (String, OpenError)> {
        if Self::is_envelope(value) {
            *value = self
                .open(pipeline, path, value)
                .map_err(|e| (path.to_string(), e))?;
            return Ok(true);
        }
        let join = |k: &str| {
            if path.is_empty() {
                k.to_string()
            } else {
                format!("{path}.{k}")
            }
        };
        let mut any = false;
        match value {
            Value::Object(m) => {
                for (k, v) in m.iter_mut() {
                    any |= self.open_all(pipeline, &join(k), v)?;
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter_mut().enumerate() {
                    any |= self.open_all(pipeline, &join(&i.to_string()), v)?;
                }
            }
            _ => {}
        }
        Ok(any)
    }
}

/// A compiled `decrypt`.
pub struct Decrypt {
    fields: Vec<String>,
    pipeline: String,
    keys: Keyring,
    when: Option<Condition>,
}

pub fn build(cfg: DecryptConfig, ctx: &BuildContext) -> Result<Box<dyn Transform>, ConfigError> {
    Ok(Box::new(compile(cfg, ctx)?))
}

pub(super) fn compile(cfg: DecryptConfig, ctx: &BuildContext) -> Result<Decrypt, ConfigError> {
    if cfg.fields.is_empty() {
        return Err(ConfigError::at("fields", "name at least one field"));
    }
    if cfg.keys.is_empty() {
        return Err(ConfigError::at("keys", "name at least one key"));
    }
    let mut keys = BTreeMap::new();
    for (kid, k) in &cfg.keys {
        let cipher = aes_key_from_env(&k.key_env)
            .map_err(|e| ConfigError::at(format!("keys.{kid}.key_env"), e.to_string()))?;
        keys.insert(kid.clone(), cipher);
    }
    Ok(Decrypt {
        fields: cfg.fields,
        pipeline: cfg.pipeline.unwrap_or_else(|| ctx.pipeline.to_string()),
        keys: Keyring { keys },
        when: compile_when(cfg.when)?,
    })
}

impl Transform for Decrypt {
    fn apply(&self, event: &mut Event<'_>) -> Result<Verdict, TransformError> {
        let fields = event.fields()?;
        if !applies(&self.when, fields) {
            return Ok(Verdict::Keep);
        }
        for path in &self.fields {
            edit_field(fields, path, "decrypt", |v| {
                if !Keyring::is_envelope(v) {
                    return Ok(false);
                }
                *v = self.keys.open(&self.pipeline, path, v).map_err(|e| {
                    TransformError::other(DECRYPT_ERROR, format!("cannot decrypt `{path}`: {e}"))
                })?;
                Ok(true)
            })?;
        }
        Ok(Verdict::Keep)
    }
}

#[cfg(test)]
mod tests {
    use super::super::encrypt::{self, EncryptConfig};
    use super::*;
    use serde_json::json;

    fn ctx(p: &str) -> BuildContext {
        BuildContext {
            pipeline: p.into(),
            data_dir: std::env::temp_dir(),
        }
    }

    const K1: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const K2: &str = "base64:HxweHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE=";

    fn setup() {
        std::env::set_var("SLUICE_TEST_AES_1", K1);
        std::env::set_var("SLUICE_TEST_AES_2", K2);
    }

    fn encryptor(var: &str, kid: &str) -> encrypt::Encrypt {
        encrypt::compile(
            EncryptConfig {
                fields: vec!["ssn".into(), "card.number".into()],
                key_env: var.into(),
                key_id: kid.into(),
                when: None,
            },
            &ctx("p"),
        )
        .unwrap_or_else(|e| panic!("{}", e.message))
    }

    fn decryptor(keys: &[(&str, &str)], pipeline: Option<&str>) -> Decrypt {
        compile(
            DecryptConfig {
                fields: vec!["ssn".into(), "card.number".into()],
                keys: keys
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.to_string(),
                            KeyConfig {
                                key_env: v.to_string(),
                            },
                        )
                    })
                    .collect(),
                pipeline: pipeline.map(String::from),
                when: None,
            },
            &ctx("other"),
        )
        .unwrap_or_else(|e| panic!("{}", e.message))
    }

    fn run(t: &dyn Transform, v: Value) -> Result<Value, TransformError> {
        let r = sluice_sdk::Record::new(
            serde_json::to_vec(&v).unwrap_or_default(),
            sluice_sdk::Origin::new("s".into(), 0, 0),
        );
        let mut e = Event::new(&r);
        t.apply(&mut e)?;
        Ok(match e.finish()? {
            Some(b) => serde_json::from_slice(&b).unwrap_or_default(),
            None => v,
        })
    }

    #[test]
    fn round_trip_with_rotation() {
        setup();
        let original =
            json!({"ssn": "123-45-6789", "card": {"number": 4111111111111111u64}, "n": 1});
        let old = run(&encryptor("SLUICE_TEST_AES_1", "k1"), original.clone()).unwrap();
        let new = run(&encryptor("SLUICE_TEST_AES_2", "k2"), original.clone()).unwrap();
        assert_eq!(old["ssn"]["enc"], json!("aes256gcm:v1"));
        assert_eq!(old["ssn"]["kid"], json!("k1"));
        assert!(!old.to_string().contains("6789"));
        let again = run(&encryptor("SLUICE_TEST_AES_1", "k1"), original.clone()).unwrap();
        assert_ne!(
            old["ssn"]["iv"], again["ssn"]["iv"],
            "a fresh nonce per value"
        );
        let d = decryptor(
            &[("k1", "SLUICE_TEST_AES_1"), ("k2", "SLUICE_TEST_AES_2")],
            Some("p"),
        );
        assert_eq!(run(&d, old).unwrap(), original);
        assert_eq!(run(&d, new).unwrap(), original);
    }

    fn failure(d: &Decrypt, v: Value) -> (String, String) {
        match run(d, v) {
            Err(e) => (e.kind().to_string(), e.to_string()),
            Ok(v) => panic!("decrypted: {v}"),
        }
    }

    #[test]
    fn tampering_wrong_keys_and_unknown_ids_are_refused() {
        setup();
        let sealed = run(
            &encryptor("SLUICE_TEST_AES_1", "k1"),
            json!({"ssn": "123-45-6789"}),
        )
        .unwrap();
        let auth = "cannot decrypt `ssn`: authentication failed (wrong key, or the value, field or pipeline name changed)";

        let mut tampered = sealed.clone();
        let ct = tampered["ssn"]["ct"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let flipped = if ct.starts_with('A') { "B" } else { "A" };
        tampered["ssn"]["ct"] = json!(format!("{flipped}{}", &ct[1..]));
        let d = decryptor(&[("k1", "SLUICE_TEST_AES_1")], Some("p"));
        assert_eq!(failure(&d, tampered), ("decrypt_error".into(), auth.into()));

        let wrong = decryptor(&[("k1", "SLUICE_TEST_AES_2")], Some("p"));
        assert_eq!(
            failure(&wrong, sealed.clone()),
            ("decrypt_error".into(), auth.into())
        );

        let other_pipeline = decryptor(&[("k1", "SLUICE_TEST_AES_1")], None);
        assert_eq!(failure(&other_pipeline, sealed.clone()).1, auth);

        let mut moved = json!({"ssn": null, "card": {"number": sealed["ssn"].clone()}});
        moved["ssn"] = Value::Null;
        assert_eq!(failure(&d, moved).1, auth.replace("`ssn`", "`card.number`"));

        let unknown = decryptor(&[("k2", "SLUICE_TEST_AES_2")], Some("p"));
        assert_eq!(
            failure(&unknown, sealed),
            (
                "decrypt_error".into(),
                "cannot decrypt `ssn`: unknown key id `k1`".into()
            )
        );
        let e = failure(&d, json!({"ssn": {"enc": "rot13"}}));
        assert_eq!(
            e.1,
            "cannot decrypt `ssn`: not an `aes256gcm:v1` envelope: enc"
        );
    }

    #[test]
    fn a_bad_key_names_the_variable_only() {
        std::env::set_var("SLUICE_TEST_AES_SHORT", "c2VjcmV0");
        let e = compile(
            DecryptConfig {
                fields: vec!["a".into()],
                keys: [(
                    "k".to_string(),
                    KeyConfig {
                        key_env: "SLUICE_TEST_AES_SHORT".into(),
                    },
                )]
                .into(),
                pipeline: None,
                when: None,
            },
            &ctx("p"),
        )
        .err()
        .map(|e| (e.path, e.message));
        assert_eq!(
            e,
            Some((
                Some("keys.k.key_env".into()),
                "environment variable `SLUICE_TEST_AES_SHORT`: an AES-256 key is 32 bytes".into()
            ))
        );
    }
}
