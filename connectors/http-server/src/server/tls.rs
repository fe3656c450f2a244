//! HTTPS for the listener: the server certificate and, with `client_ca_file`, client
//! certificates required and checked against that CA (mutual TLS), through the SDK's
//! `server_tls` shared with the admin API.

use sluice_sdk::http::server_tls::{self, ServerTlsError};
use tokio_rustls::TlsAcceptor;

pub use sluice_sdk::http::server_tls::TlsListener;

use crate::config::TlsConfig;

/// A rustls acceptor from the configured PEM files.
pub fn acceptor(cfg: &TlsConfig) -> Result<TlsAcceptor, ServerTlsError> {
    server_tls::acceptor(&cfg.cert_file, &cfg.key_file, cfg.client_ca_file.as_deref())
}
