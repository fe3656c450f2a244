//! What the user writes for the `kafka` source, sink and dead-letter queue, and how it becomes
//! a librdkafka configuration.

use std::collections::BTreeMap;

use rdkafka::ClientConfig;
use serde::Deserialize;
use sluice_sdk::config::Secret;
use sluice_sdk::template::Template;
use sluice_sdk::ConfigError;

/// `source: { type: kafka, ... }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Bootstrap servers, comma separated (`host:port,host:port`).
    pub brokers: String,
    /// Topics to subscribe to. Exclusive with `topic_pattern`. One string is split on
    /// commas (`topics: ${KAFKA_TOPICS}` with `KAFKA_TOPICS=a,b`).
    #[serde(default, deserialize_with = "sluice_sdk::config::string_list")]
    pub topics: Vec<String>,
    /// A regular expression; every topic whose whole name matches is subscribed, including
    /// topics created later (librdkafka's `^` subscriptions).
    #[serde(default)]
    pub topic_pattern: Option<String>,
    /// Consumer group. Defaults to `sluice-<pipeline>`.
    #[serde(default)]
    pub group_id: Option<String>,
    /// Where a partition without a committed offset starts. A committed offset that retention
    /// passed always resumes at the earliest record, with the gap logged and counted.
    #[serde(default)]
    pub start_from: StartFrom,
    /// How the message value is read.
    #[serde(default)]
    pub format: Format,
    /// Required with `format: avro`.
    #[serde(default)]
    pub schema_registry: Option<SchemaRegistryConfig>,
    /// Passed to librdkafka as is (SASL, SSL, fetch tuning).
    #[serde(default)]
    pub options: Options,
}

/// Where partitions without a committed offset start.
#[derive(Debug, Default, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StartFrom {
    #[default]
    Earliest,
    Latest,
}

/// How a message value is turned into a record value.
#[derive(Debug, Default, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The value must be one JSON document; anything else is dead-lettered.
    #[default]
    Json,
    /// The bytes are passed on untouched.
    Raw,
    /// Confluent Schema Registry framed Avro, decoded to JSON.
    Avro,
}

/// Where Avro writer schemas come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaRegistryConfig {
    /// Base URL, e.g. `http://registry:8081`.
    pub url: String,
    /// Basic auth user (a Confluent Cloud API key).
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    /// CA, client certificate and verification for an `https` registry.
    #[serde(default)]
    pub tls: Option<sluice_sdk::http::TlsConfig>,
}

/// `sink: { type: kafka, ... }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    pub brokers: String,
    /// A topic name or a `{{ field }}` template rendered per record.
    pub topic: Template,
    /// Dotted path of the field whose text becomes the message key. Without it the record's
    /// own key (the source message key) is kept.
    #[serde(default)]
    pub key_field: Option<String>,
    #[serde(default)]
    pub options: Options,
}

/// `dead_letter: { type: kafka, ... }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterConfig {
    pub brokers: String,
    /// Fixed DLQ topic. Defaults to `<source topic>.dlq` per record.
    #[serde(default)]
    pub topic: Option<String>,
    #[serde(default)]
    pub options: Options,
}

/// librdkafka properties; YAML numbers and booleans are accepted and passed as text.
#[derive(Debug, Default, Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Options(BTreeMap<String, OptionValue>);

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
enum OptionValue {
    Text(String),
    Number(serde_json::Number),
    Bool(bool),
}

impl OptionValue {
    fn to_text(&self) -> String {
        match self {
            OptionValue::Text(s) => s.clone(),
            OptionValue::Number(n) => n.to_string(),
            OptionValue::Bool(b) => b.to_string(),
        }
    }
}

impl Options {
    /// Properties given as `KEY=VALUE` texts (a command line's `-X`, as kcat takes them).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = &'a str>) -> Result<Self, ConfigError> {
        let mut out = BTreeMap::new();
        for (n, pair) in pairs.into_iter().enumerate() {
            // Not quoted back: a mistyped pair may be a password.
            let (key, value) = pair
                .split_once('=')
                .filter(|(k, _)| !k.trim().is_empty())
                .ok_or_else(|| ConfigError::new(format!("option {} is not KEY=VALUE", n + 1)))?;
            out.insert(key.trim().to_string(), OptionValue::Text(value.to_string()));
        }
        Ok(Options(out))
    }

    fn apply(&self, cfg: &mut ClientConfig, reserved: &[&str]) -> Result<(), ConfigError> {
        for (key, value) in &self.0 {
            if reserved.contains(&key.as_str()) {
                return Err(ConfigError::at(
                    format!("options.{key}"),
                    format!("`{key}` is set by the connector and cannot be overridden"),
                ));
            }
            cfg.set(key, value.to_text());
        }
        Ok(())
    }
}

/// Checks a configuration the way librdkafka will read it, without creating a client (so no
/// connection is attempted): unknown property names and bad values fail here.
/// The error names the property, never its value (which may be a password).
fn check_native(cfg: &ClientConfig) -> Result<(), ConfigError> {
    cfg.create_native_config().map(drop).map_err(|e| match e {
        // librdkafka's text names the property (and an enum's bad value), not a free value.
        rdkafka::error::KafkaError::ClientConfig(_, desc, _key, _value) => {
            ConfigError::at("options", desc)
        }
        other => ConfigError::at("options", other.to_string()),
    })
}

/// Properties the source owns: overriding them would break at-least-once delivery.
const SOURCE_RESERVED: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
];

/// A client for a tool that reads a topic on its own (`sluice verify`): the brokers and the
/// user's `options` (TLS, SASL), checked as librdkafka reads them. The tool sets its group
/// and commit behaviour itself, so the user may not.
pub fn reader_config(brokers: &str, options: &Options) -> Result<ClientConfig, ConfigError> {
    if brokers.trim().is_empty() {
        return Err(ConfigError::at("brokers", "must not be empty"));
    }
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", brokers);
    options.apply(&mut cfg, SOURCE_RESERVED)?;
    check_native(&cfg)?;
    Ok(cfg)
}

/// Properties the producers own.
const PRODUCER_RESERVED: &[&str] = &["bootstrap.servers", "metadata.broker.list"];

impl SourceConfig {
    /// The subscription as librdkafka takes it (`^` marks a regular expression).
    pub fn subscription(&self) -> Result<Vec<String>, ConfigError> {
        match (&self.topic_pattern, self.topics.is_empty()) {
            (Some(_), false) => Err(ConfigError::new(
                "set either `topics` or `topic_pattern`, not both",
            )),
            (None, true) => Err(ConfigError::at(
                "topics",
                "at least one topic (or `topic_pattern`) is required",
            )),
            (None, false) => {
                if let Some(t) = self
                    .topics
                    .iter()
                    .find(|t| t.is_empty() || t.starts_with('^'))
                {
                    return Err(ConfigError::at(
                        "topics",
                        format!("invalid topic name `{t}` (use `topic_pattern` for a regex)"),
                    ));
                }
                Ok(self.topics.clone())
            }
            (Some(p), true) => {
                let body = p.strip_prefix('^').unwrap_or(p);
                regex::Regex::new(body)
                    .map_err(|e| ConfigError::at("topic_pattern", e.to_string()))?;
                Ok(vec![format!("^{body}")])
            }
        }
    }

    /// The consumer configuration: at-least-once commits of explicitly stored offsets.
    pub fn client_config(&self, pipeline: &str) -> Result<ClientConfig, ConfigError> {
        if self.brokers.trim().is_empty() {
            return Err(ConfigError::at("brokers", "must not be empty"));
        }
        if self.format == Format::Avro && self.schema_registry.is_none() {
            return Err(ConfigError::at(
                "schema_registry",
                "`format: avro` needs `schema_registry: { url }`",
            ));
        }
        if let Some(tls) = self.schema_registry.as_ref().and_then(|r| r.tls.as_ref()) {
            tls.validate("schema_registry.tls")?;
        }
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", &self.brokers)
            .set("group.id", self.group_id(pipeline))
            .set("client.id", format!("sluice-{pipeline}"))
            // librdkafka commits on its interval, on revoke and on close, but only what
            // `commit` stored: the host's contiguous done prefix.
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            // At most a second of duplicates after a crash (librdkafka's default is 5 s).
            .set("auto.commit.interval.ms", "1000")
            // `start_from` is applied when partitions are assigned; librdkafka resets only a
            // position that falls out of range while reading, and then to the earliest record.
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            // librdkafka counts `queued.min.messages` against the shared consumer queue and,
            // once it is reached, stops fetching every partition for this long; its 1 s
            // default left the queue empty for ~0.5 s of each second whenever the pipeline
            // read slower than the broker served.
            .set("fetch.queue.backoff.ms", "10")
            // Every record batch's CRC-32C is checked, as the Java consumer does: a batch whose
            // bytes changed on the broker's disk or on the way stops its partition instead of
            // being delivered altered (`KafkaSource::stop_at_damaged_batch`).
            .set("check.crcs", "true")
            // Lag and broker states come from statistics; no extra requests.
            .set("statistics.interval.ms", "5000");
        self.options.apply(&mut cfg, SOURCE_RESERVED)?;
        check_native(&cfg)?;
        Ok(cfg)
    }

    pub fn group_id(&self, pipeline: &str) -> String {
        self.group_id
            .clone()
            .unwrap_or_else(|| format!("sluice-{pipeline}"))
    }
}

impl DeadLetterConfig {
    /// The consumer that reads the DLQ back (`sluice dlq`): the group `group` commits only
    /// what the reader is told to, and reading starts at the earliest letter.
    pub fn reader_config(&self, group: &str) -> Result<ClientConfig, ConfigError> {
        if self.brokers.trim().is_empty() {
            return Err(ConfigError::at("brokers", "must not be empty"));
        }
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", &self.brokers)
            .set("group.id", group)
            .set("client.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            // The end of a partition as the reader met it: where a read of the DLQ stops
            // even when the last offsets are no letters (transaction markers).
            .set("enable.partition.eof", "true")
            // Letters are records that failed once already; one whose batch no longer fits
            // its CRC-32C is refused (`DlqReader::read`) rather than shown or replayed altered.
            .set("check.crcs", "true");
        self.options.apply(&mut cfg, SOURCE_RESERVED)?;
        check_native(&cfg)?;
        Ok(cfg)
    }
}

/// The producer configuration shared by the sink and the dead-letter queue.
pub fn producer_config(
    brokers: &str,
    options: &Options,
    client_id: &str,
) -> Result<ClientConfig, ConfigError> {
    if brokers.trim().is_empty() {
        return Err(ConfigError::at("brokers", "must not be empty"));
    }
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", brokers)
        .set("client.id", client_id)
        // acks=all, no duplicates from internal retries, order kept per partition.
        .set("enable.idempotence", "true")
        // A broker that is down fails a batch within 30 s (librdkafka's default is 5 min),
        // so the host sees it and reports it instead of waiting silently.
        .set("message.timeout.ms", "30000");
    options.apply(&mut cfg, PRODUCER_RESERVED)?;
    check_native(&cfg)?;
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn source(v: serde_json::Value) -> Result<SourceConfig, ConfigError> {
        sluice_sdk::config::from_value(v)
    }

    #[test]
    fn topics_or_pattern() {
        let c = source(json!({"brokers": "b:9092", "topics": ["a", "b"]})).unwrap();
        let from_env = source(json!({"brokers": "b:9092", "topics": "a,b"})).unwrap();
        assert_eq!(
            from_env.topics, c.topics,
            "one string from the environment is split"
        );
        assert_eq!(c.subscription().unwrap(), vec!["a", "b"]);
        let c = source(json!({"brokers": "b:9092", "topic_pattern": "^audit\\..*"})).unwrap();
        assert_eq!(c.subscription().unwrap(), vec!["^audit\\..*"]);
        let c = source(json!({"brokers": "b:9092", "topic_pattern": "x("})).unwrap();
        assert_eq!(
            c.subscription().unwrap_err().path.as_deref(),
            Some("topic_pattern")
        );
        let c = source(json!({"brokers": "b:9092"})).unwrap();
        assert!(c.subscription().is_err());
        let c = source(json!({"brokers": "b", "topics": ["a"], "topic_pattern": "a"})).unwrap();
        assert!(c.subscription().is_err());
    }

    #[test]
    fn a_full_fetch_queue_pauses_fetching_briefly_unless_overridden() {
        let c = source(json!({"brokers": "b:9092", "topics": ["a"]})).unwrap();
        let cfg = c.client_config("p").unwrap();
        assert_eq!(cfg.get("fetch.queue.backoff.ms"), Some("10"));
        assert_eq!(cfg.get("check.crcs"), Some("true"));
        let c = source(json!({"brokers": "b:9092", "topics": ["a"],
            "options": {"fetch.queue.backoff.ms": 500}}))
        .unwrap();
        let cfg = c.client_config("p").unwrap();
        assert_eq!(cfg.get("fetch.queue.backoff.ms"), Some("500"));
    }

    #[test]
    fn options_are_checked_by_librdkafka() {
        let c = source(json!({"brokers": "b:9092", "topics": ["a"],
            "options": {"fetch.wait.max.ms": 50, "security.protocol": "plaintext"}}))
        .unwrap();
        let cfg = c.client_config("p").unwrap();
        assert_eq!(cfg.get("fetch.wait.max.ms"), Some("50"));
        assert_eq!(cfg.get("group.id"), Some("sluice-p"));
        let c = source(json!({"brokers": "b:9092", "topics": ["a"],
            "options": {"no.such.property": "1"}}))
        .unwrap();
        assert!(c.client_config("p").is_err());
        let c = source(json!({"brokers": "b:9092", "topics": ["a"],
            "options": {"enable.auto.offset.store": true}}))
        .unwrap();
        let e = c.client_config("p").unwrap_err();
        assert_eq!(e.path.as_deref(), Some("options.enable.auto.offset.store"));
    }

    #[test]
    fn a_tool_takes_key_value_options_but_not_the_group_settings() {
        let o = Options::from_pairs(["security.protocol=SSL", "sasl.username=a=b"]).unwrap();
        let cfg = reader_config("b:9092", &o).unwrap();
        assert_eq!(cfg.get("security.protocol"), Some("SSL"));
        assert_eq!(
            cfg.get("sasl.username"),
            Some("a=b"),
            "split at the first `=`"
        );
        assert_eq!(cfg.get("bootstrap.servers"), Some("b:9092"));
        let e = Options::from_pairs(["a=1", "hunter2"]).unwrap_err();
        assert!(
            e.message.contains("option 2") && !e.message.contains("hunter2"),
            "{}",
            e.message
        );
        assert!(Options::from_pairs(["=x"]).is_err());
        let e = reader_config("b:9092", &Options::from_pairs(["group.id=x"]).unwrap()).unwrap_err();
        assert_eq!(e.path.as_deref(), Some("options.group.id"));
        let e = reader_config(
            "b:9092",
            &Options::from_pairs(["sasl.pasword=hunter2"]).unwrap(),
        )
        .unwrap_err();
        assert!(e.message.contains("sasl.pasword"), "{}", e.message);
        assert!(
            !e.message.contains("hunter2"),
            "a value is never echoed: {}",
            e.message
        );
    }

    #[test]
    fn unknown_keys_and_avro_without_registry() {
        assert!(source(json!({"brokers": "b", "topics": ["a"], "topic": "x"})).is_err());
        let c = source(json!({"brokers": "b", "topics": ["a"], "format": "avro"})).unwrap();
        assert_eq!(
            c.client_config("p").unwrap_err().path.as_deref(),
            Some("schema_registry")
        );
        assert!(source(json!({"brokers": "b", "topics": ["a"], "format": "xml"})).is_err());
    }

    #[test]
    fn producer_defaults_and_overrides() {
        let opts: Options = serde_json::from_value(json!({"linger.ms": 20})).unwrap();
        let cfg = producer_config("b:9092", &opts, "sluice-p").unwrap();
        assert_eq!(cfg.get("enable.idempotence"), Some("true"));
        assert_eq!(cfg.get("linger.ms"), Some("20"));
        let opts: Options = serde_json::from_value(json!({"bootstrap.servers": "x"})).unwrap();
        assert!(producer_config("b:9092", &opts, "c").is_err());
    }
}
