//! Example Sluice plugin: a `webhook` sink that POSTs each batch as one JSON array to a URL,
//! signed with an HMAC of the body so the receiver can tell it came from this pipeline:
//!
//! ```text
//! POST <url>
//! Content-Type: application/json
//! X-Sluice-Signature: sha256=<hex HMAC-SHA256 of the body, keyed with `secret`>
//! ```
//!
//! Configuration:
//!
//! ```yaml
//! sink:
//!   type: webhook
//!   url: https://hooks.example.com/sluice
//!   secret: ${WEBHOOK_SECRET}
//!   request_timeout: 10s    # optional, per request (`timeout` is its old spelling)
//!   headers: { X-Tenant: acme }   # optional, added to every request
//!   tls: { ca_file: ./ca.pem }    # optional: ca_file, cert_file, key_file, insecure_skip_verify
//! ```
//!
//! Built as a `cdylib`, it is loaded by `host.plugins`; see `docs/plugin-guide.md`.

mod config;
mod encoder;
mod response;
mod signature;
mod sink;
#[cfg(test)]
mod tests;

pub use config::WebhookConfig;
pub use sink::WebhookSink;

/// Registers the `webhook` sink.
pub fn register(registry: &mut sluice_sdk::Registry) {
    registry.register_sink(
        "webhook",
        env!("CARGO_PKG_VERSION"),
        |cfg: WebhookConfig, _ctx| Ok(Box::new(WebhookSink::new(cfg)?)),
    );
}

sluice_sdk::export_plugin!(register, schemas: [("webhook", include_str!("../webhook.schema.json"))]);

/// The host's allocator (why: docs/plugin-guide.md, "Allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
