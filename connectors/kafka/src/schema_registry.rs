//! A Confluent Schema Registry client that fetches writer schemas by id, once.
//!
//! Schemas by id are immutable, so a parsed schema is cached; the cache holds at most
//! [`MAX_SCHEMAS`] schemas and drops the least recently used beyond that. An id the registry
//! refused (unknown, not Avro) is remembered for [`NEGATIVE_TTL`] only: the registry may be
//! restored, and remembering it forever would dead-letter good records after that. Within the
//! TTL a refused id costs no request, so hostile input with random schema ids costs at most
//! one GET per id per TTL; at most [`MAX_MISSING`] refused ids are remembered (the oldest is
//! forgotten first).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use apache_avro::Schema;
use serde::Deserialize;
use sluice_sdk::http::{ClientBuilder, StatusClass};

use crate::config::SchemaRegistryConfig;

/// How long "this id does not exist" is believed before asking again.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(30);
/// Parsed schemas kept; the least recently used is dropped beyond this.
pub const MAX_SCHEMAS: usize = 1000;
/// Refused ids remembered; the oldest is dropped beyond this.
pub const MAX_MISSING: usize = 10_000;

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

struct Found {
    schema: Arc<Schema>,
    /// Value of [`SchemaRegistry::tick`] at the last use, for least-recently-used eviction.
    used: u64,
}

struct Missing {
    reason: String,
    since: Instant,
}

/// Fetches and caches writer schemas.
pub struct SchemaRegistry {
    base: String,
    auth: Option<(String, String)>,
    http: reqwest::Client,
    found: HashMap<u32, Found>,
    missing: HashMap<u32, Missing>,
    tick: u64,
    max_schemas: usize,
    max_missing: usize,
    negative_ttl: Duration,
}

impl SchemaRegistry {
    pub fn new(config: &SchemaRegistryConfig) -> Result<Self, String> {
        let http = ClientBuilder::new("kafka", env!("CARGO_PKG_VERSION"))
            .request_timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .tls(config.tls.as_ref())
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
            found: HashMap::new(),
            missing: HashMap::new(),
            tick: 0,
            max_schemas: MAX_SCHEMAS,
            max_missing: MAX_MISSING,
            negative_ttl: NEGATIVE_TTL,
        })
    }

    /// Smaller bounds, for tests of the bounds themselves.
    #[cfg(test)]
    fn with_limits(mut self, schemas: usize, missing: usize, ttl: Duration) -> Self {
        self.max_schemas = schemas;
        self.max_missing = missing;
        self.negative_ttl = ttl;
        self
    }

    /// Schemas and refused ids currently remembered.
    #[cfg(test)]
    fn cached(&self) -> (usize, usize) {
        (self.found.len(), self.missing.len())
    }

    /// The writer schema with this global id.
    pub async fn schema(&mut self, id: u32) -> Result<Arc<Schema>, SchemaError> {
        self.tick += 1;
        if let Some(f) = self.found.get_mut(&id) {
            f.used = self.tick;
            return Ok(f.schema.clone());
        }
        match self.missing.get(&id) {
            Some(m) if m.since.elapsed() < self.negative_ttl => {
                return Err(SchemaError::Permanent(m.reason.clone()))
            }
            Some(_) => {
                self.missing.remove(&id);
            }
            None => {}
        }
        match self.fetch(id).await {
            Ok(schema) => {
                let schema = Arc::new(schema);
                if self.found.len() >= self.max_schemas {
                    let oldest = self
                        .found
                        .iter()
                        .min_by_key(|(_, f)| f.used)
                        .map(|(k, _)| *k);
                    if let Some(k) = oldest {
                        self.found.remove(&k);
                    }
                }
                self.found.insert(
                    id,
                    Found {
                        schema: schema.clone(),
                        used: self.tick,
                    },
                );
                Ok(schema)
            }
            Err(SchemaError::Permanent(reason)) => {
                if self.missing.len() >= self.max_missing {
                    let ttl = self.negative_ttl;
                    self.missing.retain(|_, m| m.since.elapsed() < ttl);
                }
                if self.missing.len() >= self.max_missing {
                    let oldest = self
                        .missing
                        .iter()
                        .min_by_key(|(_, m)| m.since)
                        .map(|(k, _)| *k);
                    if let Some(k) = oldest {
                        self.missing.remove(&k);
                    }
                }
                self.missing.insert(
                    id,
                    Missing {
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
            // The SDK's table; what it would reject, split or call misdirected is an answer
            // about this id for good.
            return Err(match StatusClass::of(status.as_u16()) {
                StatusClass::Unauthorized => SchemaError::Unauthorized(text),
                StatusClass::Unavailable => SchemaError::Unavailable(text),
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

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_testkit::schema_registry::SchemaRegistry as Emulator;

    fn client(url: String) -> SchemaRegistry {
        SchemaRegistry::new(&SchemaRegistryConfig {
            url,
            username: None,
            password: None,
            tls: None,
        })
        .unwrap()
    }

    fn schema_gets(reg: &Emulator) -> usize {
        reg.requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path.starts_with("/schemas/ids/"))
            .count()
    }

    #[tokio::test]
    async fn unknown_ids_cost_one_get_per_ttl_and_the_caches_stay_bounded() {
        let reg = Emulator::start().await;
        let known: Vec<u32> = (0..8)
            .map(|i| {
                reg.register(
                    &format!("s{i}"),
                    &format!(r#"{{"type":"record","name":"R{i}","fields":[{{"name":"a","type":"long"}}]}}"#),
                )
            })
            .collect();
        let ttl = Duration::from_millis(400);
        let mut c = client(reg.url()).with_limits(4, 16, ttl);

        // Hostile input: many distinct ids nobody registered, each seen twice within the TTL.
        for _ in 0..2 {
            for id in 1..=16 {
                assert!(matches!(c.schema(id).await, Err(SchemaError::Permanent(_))));
            }
        }
        assert_eq!(schema_gets(&reg), 16, "one GET per unknown id per TTL");
        for id in 1000..1500 {
            assert!(matches!(c.schema(id).await, Err(SchemaError::Permanent(_))));
            assert!(
                c.cached().1 <= 16,
                "refused ids remembered: {:?}",
                c.cached()
            );
        }

        // Known schemas: at most 4 kept; the one in constant use is never evicted.
        for &id in &known {
            c.schema(id).await.unwrap();
            c.schema(known[0]).await.unwrap();
            assert!(c.cached().0 <= 4, "schemas cached: {:?}", c.cached());
        }
        assert_eq!(reg.fetches_of(known[0]), 1);
        // An evicted schema is fetched again when it comes back.
        c.schema(known[1]).await.unwrap();
        assert_eq!(reg.fetches_of(known[1]), 2);

        // After the TTL a refused id is asked again: the registry may have been restored.
        tokio::time::sleep(ttl + Duration::from_millis(50)).await;
        let before = reg.fetches_of(1499);
        assert!(c.schema(1499).await.is_err());
        assert_eq!(reg.fetches_of(1499), before + 1);
    }
}
