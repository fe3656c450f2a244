//! HTTPS for a listener Sluice serves (the admin API, the `http_server` source): a rustls
//! acceptor from PEM files, optionally requiring client certificates signed by a CA (mutual
//! TLS), and an axum listener that hands on only connections whose handshake succeeded.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// A TLS file that cannot be used, named by its option (`cert_file`, `key_file`,
/// `client_ca_file`) and path.
#[derive(Debug, Clone, thiserror::Error)]
#[error("tls.{field} {path}: {message}")]
pub struct ServerTlsError {
    pub field: &'static str,
    pub path: String,
    pub message: String,
}

fn err(field: &'static str, path: &Path, message: impl ToString) -> ServerTlsError {
    ServerTlsError {
        field,
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

fn certs(field: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, ServerTlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| err(field, path, e))?;
    if certs.is_empty() {
        return Err(err(field, path, "no certificate in the file"));
    }
    Ok(certs)
}

/// A rustls acceptor: the certificate chain and its key, and with `client_ca` client
/// certificates required and checked against that CA.
pub fn acceptor(
    cert_file: &Path,
    key_file: &Path,
    client_ca: Option<&Path>,
) -> Result<TlsAcceptor, ServerTlsError> {
    let chain = certs("cert_file", cert_file)?;
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| err("key_file", key_file, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| err("cert_file", cert_file, e))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certs("client_ca_file", ca)? {
                roots.add(c).map_err(|e| err("client_ca_file", ca, e))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| err("client_ca_file", ca, e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|e| err("key_file", key_file, e))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts TCP connections and hands on those whose TLS handshake succeeded. Handshakes run
/// on their own tasks, so a client that never finishes one holds up no other.
pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl TlsListener {
    /// Starts accepting until `stop`; `what` names the listener in debug logs.
    pub fn start(
        listener: TcpListener,
        acceptor: TlsAcceptor,
        stop: CancellationToken,
        what: &'static str,
    ) -> Self {
        let local = listener
            .local_addr()
            .unwrap_or_else(|_| ([0, 0, 0, 0], 0).into());
        let (tx, ready) = mpsc::channel(256);
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = tokio::select! {
                    _ = stop.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Out of file descriptors and the like: wait instead of spinning.
                            tracing::debug!(error = %e, "{what} accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "{what} TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "{what} TLS handshake timed out"),
                    }
                });
            }
        });
        TlsListener { local, ready }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The acceptor stopped (shutdown): park until graceful shutdown ends the server.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
