//! `postgres` sink: writes records as rows of a PostgreSQL table (the default audit table,
//! or an existing table through a column mapping), appending or upserting on a key so that
//! replays after a crash do not duplicate rows.
//!
//! Each batch is one round trip: a binary COPY into a per-connection staging table followed
//! by `INSERT ... SELECT` (large batches), or a single `INSERT ... SELECT FROM unnest(...)`
//! (small ones). A row PostgreSQL refuses is isolated by bisection and rejected with its
//! SQLSTATE; a lost connection makes the batch `Unavailable` and the next send reconnects.

mod config;
pub mod connect;
mod encoder;
mod fields;
mod request;
mod response;
mod sink;
mod sql;
mod tls;

pub use config::{quote_ident, ColumnSource, Mode, OnConflict, PostgresConfig, TlsConfig, TlsMode};
pub use sink::PostgresSink;
/// The client library, for callers of [`connect::client`].
pub use tokio_postgres;

use sluice_sdk::Registry;

/// Registers the `postgres` sink.
pub fn register(registry: &mut Registry) {
    registry.register_sink(
        "postgres",
        env!("CARGO_PKG_VERSION"),
        |cfg: PostgresConfig, _| Ok(Box::new(PostgresSink::new(cfg)?)),
    );
}
