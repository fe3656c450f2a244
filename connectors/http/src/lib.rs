//! HTTP sink (`type: http`): records become calls to a REST API — one call per record, its
//! URL, headers and JSON body filled from the record's fields, or one call per batch for bulk
//! endpoints — authenticated with a fixed credential or an OAuth2 client-credentials token.
//! Answers are read with the SDK's status table; `responses:` overrides it per status.

mod auth;
mod body;
pub mod config;
mod request;
mod response;
mod sink;
mod template;
mod url_template;

pub use body::BatchFormat;
pub use config::HttpConfig;
pub use response::BODY_EXCERPT_BYTES;
pub use sink::HttpSink;

use sluice_sdk::Registry;

/// Registers the `http` sink.
pub fn register(registry: &mut Registry) {
    registry.register_sink(
        "http",
        env!("CARGO_PKG_VERSION"),
        |cfg: HttpConfig, _ctx| Ok(Box::new(HttpSink::new(cfg)?)),
    );
}
