//! A Confluent Schema Registry client that fetches writer schemas by id, once.
//!
//! Schemas by id are immutable, so a parsed schema is cached for the life of the source.
//! An unknown id is cached for a short while only: the registry may be restored, and
//! caching it forever would dead-letter good records after that.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use apache_avro::Schema;
use reqwest::StatusCode;
use serde::Deserialize;

use crate::config::SchemaRegistryConfig;

/// How long "this id does not exist" is believed before asking again.
const NEGATIVE_TTL: Duration = Duration::from_secs(30);

/// Why a schema is not available.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SchemaError {
    /// The registry answered for good: no such id, not Avro, unparsable. The record cannot be
    /// decoded and is dead-lettered.
    #[error("{0}")]
    Permanent(String),
    /// The registry refused the credentials; retry later, records kept.
    #[error("schema registry refused the credentials: {0}")]
    Unauthorized(String),
    /// The registry could not be reached or failed (5xx, 429, timeout); retry later.
    #[error("schema registry unavailable: {0}")]
    Unavailable(String),
}

#[derive(Deserialize)]
struct SchemaById {
    schema: String,
    #[serde(rename = "schemaType")]
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct RegistryError {
    error_code: Option<i64>,
    message: Option<String>,
}

enum Cached {
    Found(Arc<Schema>),
    Missing { reason: String, since: Instant },
}

/// Fetches and caches writer schemas.
pub struct SchemaRegistry {
    base: String,
    auth: Option<(String, String)>,
    http: reqwest::Client,
    cache: HashMap<u32, Cached>,
}

impl SchemaRegistry {
    pub fn new(config: &SchemaRegistryConfig) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| format!("schema registry client: {e}"))?;
        let auth = config.username.as_ref().map(|u| {
            (
                u.clone(),
                config
                    .password
                    .as_ref()
                    .map(|p| p.expose().to_string())
                    .unwrap_or_default(),
            )
        });
        Ok(SchemaRegistry {
            base: config.url.trim_end_matches('/').to_string(),
            auth,
            http,
            cache: HashMap::new(),
        })
    }

    /// The writer schema with this global id.
    pub async fn schema(&mut self, id: u32) -> Result<Arc<Schema>, SchemaError> {
        match self.cache.get(&id) {
            Some(Cached::Found(s)) => return Ok(s.clone()),
            Some(Cached::Missing { reason, since }) if since.elapsed() < NEGATIVE_TTL => {
                return Err(SchemaError::Permanent(reason.clone()))
            }
            _ => {}
        }
        match self.fetch(id).await {
            Ok(schema) => {
                let schema = Arc::new(schema);
                self.cache.insert(id, Cached::Found(schema.clone()));
                Ok(schema)
            }
            Err(SchemaError::Permanent(reason)) => {
                self.cache.insert(
                    id,
                    Cached::Missing {
                        reason: reason.clone(),
                        since: Instant::now(),
                    },
                );
                Err(SchemaError::Permanent(reason))
            }
            Err(e) => Err(e),
        }
    }

    async fn fetch(&self, id: u32) -> Result<Schema, SchemaError> {
        let url = format!("{}/schemas/ids/{id}", self.base);
        let mut req = self
            .http
            .get(&url)
            .header("Accept", "application/vnd.schemaregistry.v1+json");
        if let Some((user, pass)) = &self.auth {
            req = req.basic_auth(user, Some(pass));
        }
        let resp = req
            .send()
            .await
            .map_err(|e| SchemaError::Unavailable(e.to_string()))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| SchemaError::Unavailable(e.to_string()))?;
        if !status.is_success() {
            let detail = match serde_json::from_slice::<RegistryError>(&body) {
                Ok(RegistryError {
                    error_code: Some(code),
                    message,
                }) => format!("{code} {}", message.unwrap_or_default()),
                _ => String::from_utf8_lossy(&body).into_owned(),
            };
            let text = format!("GET /schemas/ids/{id}: HTTP {status}: {detail}");
            return Err(match status {
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => SchemaError::Unauthorized(text),
                StatusCode::TOO_MANY_REQUESTS | StatusCode::REQUEST_TIMEOUT => {
                    SchemaError::Unavailable(text)
                }
                s if s.is_server_error() => SchemaError::Unavailable(text),
                _ => SchemaError::Permanent(format!("schema id {id} not available: {text}")),
            });
        }
        let found: SchemaById = serde_json::from_slice(&body).map_err(|e| {
            SchemaError::Unavailable(format!("unreadable answer for schema id {id}: {e}"))
        })?;
        if let Some(t) = found.schema_type.as_deref() {
            if !t.eq_ignore_ascii_case("AVRO") {
                return Err(SchemaError::Permanent(format!(
                    "schema id {id} is a {t} schema, not Avro"
                )));
            }
        }
        if !found.references.is_empty() {
            return Err(SchemaError::Permanent(format!(
                "schema id {id} uses schema references, which are not supported"
            )));
        }
        Schema::parse_str(&found.schema)
            .map_err(|e| SchemaError::Permanent(format!("schema id {id} is not valid Avro: {e}")))
    }
}
