//! Command-line interface (stable: users and tests depend on it).

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version,
    about = "Connector host for security and compliance event streams"
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum IntegrityCommand {
    /// Print a new Ed25519 key pair (private seed and public key, base64).
    Keygen,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Letters per pipeline, sink, kind and stage, with the oldest and newest.
    List {
        #[arg(required = true)]
        config: Vec<PathBuf>,
        #[arg(long)]
        pipeline: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The letters of a pipeline with their context (record contents included).
    Show {
        #[arg(required = true)]
        config: Vec<PathBuf>,
        #[arg(long, required = true)]
        pipeline: String,
        /// Only letters of this kind (`__connect.errors.exception.class.name`).
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long)]
        json: bool,
    },
    /// Send letters again through the pipeline (or, with `--sink`, straight to one sink) with
    /// its current configuration. Refused while the pipeline runs.
    Replay {
        #[arg(required = true)]
        config: Vec<PathBuf>,
        #[arg(long, required = true)]
        pipeline: String,
        /// Only this sink's letters, sent to it alone: no pipeline transforms, no routing.
        #[arg(long)]
        sink: Option<String>,
        /// Only letters of this kind.
        #[arg(long)]
        kind: Option<String>,
        /// Only letters written at or after this time (RFC 3339, or a duration ago: `2h`).
        #[arg(long)]
        since: Option<String>,
        /// Only letters written before this time (RFC 3339, or a duration ago).
        #[arg(long)]
        until: Option<String>,
        /// At most this many letters.
        #[arg(long)]
        limit: Option<u64>,
        /// Print what would be sent (counts per sink and kind); send nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the pipelines of one or more YAML files or directories.
    Run {
        #[arg(required = true)]
        config: Vec<PathBuf>,
    },
    /// Parse and check; exit 0 if valid, 1 with `file:line:col: message`.
    Validate {
        #[arg(required = true)]
        config: Vec<PathBuf>,
    },
    /// List source, sink, dead-letter and transform types with versions: built-ins, plus the
    /// plugins the given configs load.
    Connectors {
        config: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Check an integrity-stamped output (+ DLQ + digests); exit 0 when everything checks out,
    /// 1 on any finding, 2 when an input cannot be read.
    Verify(Box<VerifyArgs>),
    /// Key handling for integrity digests.
    Integrity {
        #[command(subcommand)]
        command: IntegrityCommand,
    },
    /// Inspect dead letters; send them again after a fix.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Show stored offsets per pipeline; `offsets reset` moves a stopped pipeline's position.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Offsets {
        #[command(subcommand)]
        command: Option<OffsetsCommand>,
        #[arg(required = true)]
        config: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Send a range of a pipeline's source again (by time or position) through its transforms
    /// and sinks, without moving the pipeline's position (see docs/operations.md, Replay).
    Replay(ReplayArgs),
    /// Decrypt the fields the `encrypt` transform sealed in JSON lines read on stdin, writing
    /// them to stdout (see docs/privacy.md).
    Decrypt {
        /// Environment variable holding a key (32 bytes, base64); repeat with `--key-id` for
        /// several keys, paired in order.
        #[arg(long = "key-env", required = true)]
        key_env: Vec<String>,
        /// The key id of the `--key-env` at the same position.
        #[arg(long = "key-id", required = true)]
        key_id: Vec<String>,
        /// Dotted path of a field to decrypt (repeatable); every envelope in the record when
        /// none is given.
        #[arg(long)]
        field: Vec<String>,
        /// The pipeline that encrypted: its name is part of the associated data.
        #[arg(long, required = true)]
        pipeline: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum OffsetsCommand {
    /// Move a stopped pipeline's position: earliest, latest, a time, or an offset.
    Reset(ResetArgs),
}

#[derive(Debug, clap::Args)]
pub struct ResetArgs {
    #[arg(required = true)]
    pub config: Vec<PathBuf>,
    #[arg(long, required = true)]
    pub pipeline: String,
    /// `earliest`, `latest`, a time (RFC 3339 or a duration ago: `2h`), or an offset
    /// (Kafka) / position (other sources).
    #[arg(long, required = true)]
    pub to: String,
    /// Only this partition (repeatable); default every partition.
    #[arg(long)]
    pub partition: Vec<i32>,
    /// Show the positions before and after, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    #[arg(required = true)]
    pub config: Vec<PathBuf>,
    #[arg(long, required = true)]
    pub pipeline: String,
    /// Where the range starts: a time (RFC 3339 or a duration ago: `2h`) for Kafka, a byte
    /// position for a file, a log offset or a time for http_server's write-ahead log.
    #[arg(long, required = true)]
    pub from: String,
    /// Where it ends (excluded); default the source's end as of the start.
    #[arg(long)]
    pub to: Option<String>,
    /// Only this partition (repeatable; Kafka).
    #[arg(long)]
    pub partition: Vec<i32>,
    /// `FIELD=VALUE`: only records whose dotted JSON field equals VALUE (a JSON scalar, or
    /// text); repeatable, all must match.
    #[arg(long)]
    pub filter: Vec<String>,
    /// Send straight to this sink, without the pipeline's transforms and routing.
    #[arg(long)]
    pub sink: Option<String>,
    /// Print the resolved range and send nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `sluice verify`: exactly one output to read the records from, and the digests.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("output").required(true).multiple(false)))]
#[command(group(ArgGroup::new("digest_log").required(true).multiple(false)))]
pub struct VerifyArgs {
    /// The sink's output: JSON lines as the `file` sink writes them, in line order.
    #[arg(long, group = "output")]
    pub file: Option<PathBuf>,
    /// A PostgreSQL table (connection URL; with --table and --column), read in --order-by
    /// order, else primary-key order.
    #[arg(long, group = "output", requires_all = ["table", "column"], value_name = "URL")]
    pub postgres: Option<String>,
    /// The table (`table` or `schema.table`).
    #[arg(long, requires = "postgres")]
    pub table: Option<String>,
    /// The column holding the record (json, jsonb or text).
    #[arg(long, requires = "postgres")]
    pub column: Option<String>,
    /// The column giving insertion order (a bigserial or identity column); default: the
    /// primary key.
    #[arg(long = "order-by", requires = "postgres", value_name = "COLUMN")]
    pub order_by: Option<String>,
    /// TLS to PostgreSQL, as the sink's `tls:` mode: disable, prefer, require or
    /// verify-full.
    #[arg(long = "postgres-tls", requires = "postgres", default_value = "prefer", value_parser = ["disable", "prefer", "require", "verify-full"])]
    pub postgres_tls: String,
    /// CA certificates (PEM) for `--postgres-tls verify-full`; default: the system roots.
    #[arg(long = "postgres-ca-file", requires = "postgres", value_name = "PATH")]
    pub postgres_ca_file: Option<PathBuf>,
    /// An Elasticsearch node URL (with --index); credentials from ES_USERNAME and
    /// ES_PASSWORD, or ES_API_KEY. The index keeps no write order, so order is not judged.
    #[arg(long, group = "output", requires = "index", value_name = "URL")]
    pub elasticsearch: Option<String>,
    /// The index (or alias) holding the documents.
    #[arg(long, requires = "elasticsearch")]
    pub index: Option<String>,
    /// CA certificates (PEM) trusted beside the system's for an `https` --elasticsearch URL,
    /// as the sink's `tls.ca_file`.
    #[arg(
        long = "elasticsearch-ca-file",
        requires = "elasticsearch",
        value_name = "PATH"
    )]
    pub elasticsearch_ca_file: Option<PathBuf>,
    /// Kafka bootstrap brokers (with --topic): every partition from its start to its end as
    /// of now; no consumer group commits.
    #[arg(long, group = "output", requires = "topic", value_name = "BROKERS")]
    pub kafka: Option<String>,
    /// The topic the `kafka` sink wrote.
    #[arg(long, requires = "kafka")]
    pub topic: Option<String>,
    /// The pipeline's file DLQ (`data_dir/dlq/<pipeline>.jsonl`).
    #[arg(long)]
    pub dlq: Option<PathBuf>,
    /// The digest log (`data_dir/integrity/<pipeline>.digests`).
    #[arg(long, group = "digest_log")]
    pub digests: Option<PathBuf>,
    /// Kafka brokers holding a copy of the digest log (with --digests-topic).
    #[arg(
        long = "digests-kafka",
        group = "digest_log",
        requires = "digests_topic",
        value_name = "BROKERS"
    )]
    pub digests_kafka: Option<String>,
    /// The topic of the digest copy (`digests_to: { type: kafka }`).
    #[arg(
        long = "digests-topic",
        requires = "digests_kafka",
        value_name = "TOPIC"
    )]
    pub digests_topic: Option<String>,
    /// A librdkafka property for every Kafka client of the command (`security.protocol=SSL`,
    /// `sasl.username=...`), as the `kafka` connectors' `options`; repeat for more.
    #[arg(short = 'X', long = "kafka-option", value_name = "KEY=VALUE")]
    pub kafka_option: Vec<String>,
    /// Ed25519 public key (32 bytes, base64 or hex); repeat for rotated keys.
    #[arg(long = "public-key", required = true)]
    pub public_key: Vec<String>,
    /// The MAC key of HMAC-stamped records; repeat for rotated keys.
    #[arg(long = "mac-key")]
    pub mac_key: Vec<String>,
    /// The member carrying the stamp.
    #[arg(long, default_value = "_audit")]
    pub field: String,
    /// The named sink that wrote this output, when the digests cover several sinks; by
    /// default the sink the records' stamps name.
    #[arg(long)]
    pub sink: Option<String>,
    #[arg(long)]
    pub json: bool,
}
