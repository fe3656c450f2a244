//! Opening a client connection with the `tls:` modes; shared by the sink and by readers of
//! the table (`sluice verify --postgres`).

use tokio_postgres::config::SslMode;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, NoTls, Socket};

use sluice_sdk::SinkError;

use crate::config::{TlsConfig, TlsMode};
use crate::{response, tls};

/// Connects with `tls` (libpq's `sslmode` meaning) and drives the connection on its own task;
/// the client fails its requests once the connection ends.
pub async fn client(pg: &tokio_postgres::Config, tls: &TlsConfig) -> Result<Client, SinkError> {
    let mut cfg = pg.clone();
    match tls::connector(tls).map_err(SinkError::Fatal)? {
        None => {
            cfg.ssl_mode(SslMode::Disable);
            open_client(&cfg, NoTls).await
        }
        Some(connector) if tls.mode == TlsMode::Prefer => {
            cfg.ssl_mode(SslMode::Prefer);
            open_client(&cfg, connector).await
        }
        Some(connector) => {
            cfg.ssl_mode(SslMode::Require);
            open_client(&cfg, connector).await.map_err(|e| {
                // tokio-postgres's words when the server answers the TLS request with "no".
                if e.to_string().contains("server does not support TLS") {
                    SinkError::Fatal(format!(
                        "the PostgreSQL server does not offer TLS, which `tls: {}` requires \
                         (enable ssl on the server, or set `tls: prefer` to allow plaintext)",
                        tls.mode.as_str()
                    ))
                } else {
                    e
                }
            })
        }
    }
}

async fn open_client<T>(cfg: &tokio_postgres::Config, tls: T) -> Result<Client, SinkError>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
{
    let (client, connection) = cfg
        .connect(tls)
        .await
        .map_err(|e| response::classify_connect(&e))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "postgres connection ended");
        }
    });
    Ok(client)
}
