//! Command-line interface (stable: users and tests depend on it).

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

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
    /// Show stored offsets per pipeline.
    Offsets {
        #[arg(required = true)]
        config: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}
