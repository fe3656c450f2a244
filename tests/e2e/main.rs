//! End-to-end tests: each runs the real `sluice` binary against real or emulated services.

mod common;
mod configs;

mod accounting;
mod admin;
mod cosmos;
mod data_dir;
mod datadog;
mod dlq_replay;
mod elasticsearch;
mod faults;
mod file_faults;
mod file_sink;
mod http_ingest;
mod http_sink;
mod integrity;
mod kafka;
mod kafka_broker;
mod kafka_outages;
mod kafka_positions;
mod plugins;
mod postgres;
mod privacy;
mod quickstart;
mod redis;
mod replay;
mod replay_wal;
mod routing;
mod runtime;
mod shutdown;
mod splunk_hec;
mod transforms;
mod validate;
