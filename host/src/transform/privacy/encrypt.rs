//! `encrypt`: replaces fields with an AES-256-GCM envelope of their JSON value
//! (`{"enc":"aes256gcm:v1","kid":..,"iv":..,"ct":..}`), under a key from the environment.
//! The envelope format and the associated data are shared with `decrypt` and
//! `sluice decrypt`.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use serde::Deserialize;
use std::borrow::Cow;

use serde_json::Value;
use sluice_sdk::transform::{Event, Transform, TransformError, Verdict};
use sluice_sdk::{BuildContext, ConfigError};

use super::super::condition::{Condition, ConditionConfig};
use super::{applies, compile_when, decode_base64, duplicated, edit_field, KeyError};

/// The `enc` tag of an envelope.
pub const FORMAT: &str = "aes256gcm:v1";
/// The dead-letter kind of a value that cannot be encrypted.
pub const ENCRYPT_ERROR: &str = "encrypt_error";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptConfig {
    /// Dotted paths.
    pub fields: Vec<String>,
    /// Environment variable holding the key: 32 bytes, standard base64.
    pub key_env: String,
    /// Names the key in every envelope, so `decrypt` picks it after a rotation.
    pub key_id: String,
    #[serde(default)]
    pub when: Option<ConditionConfig>,
}

/// Reads an AES-256 key: 32 bytes in standard base64 (a `base64:` prefix is allowed).
pub fn aes_key_from_env(var: &str) -> Result<Aes256Gcm, KeyError> {
    let text = std::env::var(var).map_err(|_| KeyError::Missing(var.to_string()))?;
    let text = text.trim();
    let text = text.strip_prefix("base64:").unwrap_or(text);
    let key = decode_base64(text).ok_or(KeyError::Invalid(var.to_string(), "not valid base64"))?;
    Aes256Gcm::new_from_slice(&key)
        .map_err(|_| KeyError::Invalid(var.to_string(), "an AES-256 key is 32 bytes"))
}

/// The associated data of a value: the pipeline name, the field's dotted path and the key
/// id, each as a 4-byte big-endian length then its UTF-8 bytes.
pub fn aad(pipeline: &str, path: &str, kid: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + pipeline.len() + path.len() + kid.len());
    for part in [pipeline, path, kid] {
        out.extend_from_slice(&(part.len() as u32).to_be_bytes());
        out.extend_from_slice(part.as_bytes());
    }
    out
}

/// The envelope's text up to its `iv`: `{"enc":"aes256gcm:v1","kid":"<kid>","iv":"`.
fn envelope_head(kid: &str) -> String {
    let kid = Value::String(kid.to_string());
    format!(r#"{{"enc":"{FORMAT}","kid":{kid},"iv":""#)
}

/// Encrypts one value's JSON text into an envelope's JSON text (`head` from
/// [`envelope_head`]), with a fresh random nonce. Written as text: building the envelope as
/// an object would cost more than the encryption.
pub fn seal(
    head: &str,
    cipher: &Aes256Gcm,
    aad: &[u8],
    path: &str,
    plain: &[u8],
) -> Result<String, TransformError> {
    let iv: [u8; 12] = rand::random();
    let ct = cipher
        .encrypt(&Nonce::from(iv), Payload { msg: plain, aad })
        .map_err(|_| TransformError::other(ENCRYPT_ERROR, format!("cannot encrypt `{path}`")))?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = String::with_capacity(head.len() + 30 + ct.len().div_ceil(3) * 4);
    out.push_str(head);
    b64.encode_string(iv, &mut out);
    out.push_str(r#"","ct":""#);
    b64.encode_string(&ct, &mut out);
    out.push_str(r#""}"#);
    Ok(out)
}

/// A compiled `encrypt`. The key lives only in the cipher state.
pub struct Encrypt {
    /// Each field's dotted path with its associated data, made once.
    fields: Vec<(String, Vec<u8>)>,
    /// The envelope's fixed start, with the key id.
    head: String,
    cipher: Aes256Gcm,
    when: Option<Condition>,
}

pub fn build(cfg: EncryptConfig, ctx: &BuildContext) -> Result<Box<dyn Transform>, ConfigError> {
    Ok(Box::new(compile(cfg, ctx)?))
}

pub(super) fn compile(cfg: EncryptConfig, ctx: &BuildContext) -> Result<Encrypt, ConfigError> {
    if cfg.fields.is_empty() {
        return Err(ConfigError::at("fields", "name at least one field"));
    }
    if cfg.key_id.is_empty() {
        return Err(ConfigError::at("key_id", "must not be empty"));
    }
    let cipher =
        aes_key_from_env(&cfg.key_env).map_err(|e| ConfigError::at("key_env", e.to_string()))?;
    let fields = cfg
        .fields
        .into_iter()
        .map(|f| {
            let aad = aad(&ctx.pipeline, &f, &cfg.key_id);
            (f, aad)
        })
        .collect();
    Ok(Encrypt {
        fields,
        head: envelope_head(&cfg.key_id),
        cipher,
        when: compile_when(cfg.when)?,
    })
}

impl Transform for Encrypt {
    fn apply(&self, event: &mut Event<'_>) -> Result<Verdict, TransformError> {
        let fields = event.fields()?;
        if !applies(&self.when, fields) {
            return Ok(Verdict::Keep);
        }
        for (path, aad) in &self.fields {
            if path.contains('.') {
                edit_field(fields, path, "encrypt", |v| {
                    if v.is_null() {
                        return Ok(false);
                    }
                    let text = seal(
                        &self.head,
                        &self.cipher,
                        aad,
                        path,
                        v.to_string().as_bytes(),
                    )?;
                    *v = serde_json::from_str(&text).map_err(|e| {
                        TransformError::other(ENCRYPT_ERROR, format!("envelope of `{path}`: {e}"))
                    })?;
                    Ok(true)
                })?;
                continue;
            }
            // A top-level scalar is encrypted as the text it arrived in (compact already);
            // anything else as its compact serialisation.
            let plain: Cow<'_, str> = match fields.raw(path) {
                Some(raw) if !raw.starts_with(['{', '[']) => Cow::Borrowed(raw),
                _ => match fields.get(path) {
                    None => continue,
                    Some(v) => Cow::Owned(v.to_string()),
                },
            };
            if plain == "null" {
                // Left as it is; a name given twice still loses its earlier copy.
                if duplicated(fields, path) {
                    fields.set(path, Value::Null);
                }
                continue;
            }
            let text = seal(&self.head, &self.cipher, aad, path, plain.as_bytes())?;
            fields.set_text(path, text);
        }
        Ok(Verdict::Keep)
    }
}
