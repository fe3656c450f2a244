//! `http_server` source: applications post events over HTTP; an event answered 2xx has been
//! written to a fsynced write-ahead log under `data_dir`, which is the pipeline's source.
//! See `docs/connectors/http_server.md`.

pub mod config;
pub mod metrics;
pub mod replay;
pub mod schema;
pub mod server;
pub mod source;
pub mod wal;

pub use config::HttpServerConfig;
pub use replay::WalRange;
pub use source::HttpServerSource;

/// Registers the `http_server` source.
pub fn register(registry: &mut sluice_sdk::Registry) {
    registry.register_source(
        "http_server",
        env!("CARGO_PKG_VERSION"),
        |cfg: HttpServerConfig, ctx| {
            Ok(Box::new(HttpServerSource::new(
                cfg,
                &ctx.data_dir,
                &ctx.pipeline,
            )?))
        },
    );
}
