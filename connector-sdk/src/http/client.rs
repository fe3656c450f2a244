//! The one way an HTTP connector makes its client: timeouts, TLS, proxy, user agent and
//! connection pool set alike everywhere, and answers read whole.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;

use super::tls::{TlsConfig, TlsError};
use crate::SinkError;

/// Connecting never waits longer than this, whatever the request timeout.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle connections are closed after this long (before most servers and load balancers
/// drop them, which would fail the next request).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(50);

/// The client could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("invalid proxy `{0}`")]
    Proxy(String),
    #[error("cannot build the HTTP client: {0}")]
    Build(#[source] reqwest::Error),
}

impl From<ClientError> for SinkError {
    /// A client that cannot be made is a configuration problem: retrying will not help.
    fn from(e: ClientError) -> Self {
        SinkError::Fatal(e.to_string())
    }
}

/// Builds the `reqwest` client of one connector instance.
#[must_use]
pub struct ClientBuilder {
    inner: reqwest::ClientBuilder,
    connector: &'static str,
    tls: Option<TlsConfig>,
    proxy: Option<String>,
}

impl ClientBuilder {
    /// A client for the connector type `connector` (`splunk_hec`; its warnings name it) whose
    /// user agent is `sluice-<connector, dashed>/<version>` (`sluice-splunk-hec/0.1.0`), with
    /// the pool defaults.
    pub fn new(connector: &'static str, version: &str) -> Self {
        let inner = reqwest::Client::builder()
            .user_agent(format!("sluice-{}/{version}", connector.replace('_', "-")))
            .pool_idle_timeout(POOL_IDLE_TIMEOUT);
        ClientBuilder {
            inner,
            connector,
            tls: None,
            proxy: None,
        }
    }

    /// Timeout of one whole request (connect, send, answer); connecting alone gets at most
    /// ten seconds of it.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.inner = self
            .inner
            .timeout(timeout)
            .connect_timeout(timeout.min(MAX_CONNECT_TIMEOUT));
        self
    }

    /// A connect timeout other than the default (`min(request_timeout, 10s)`).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.inner = self.inner.connect_timeout(timeout);
        self
    }

    /// Replaces the user agent.
    pub fn user_agent(mut self, agent: &str) -> Self {
        self.inner = self.inner.user_agent(agent.to_string());
        self
    }

    /// Headers sent with every request (mark credentials sensitive).
    pub fn default_headers(mut self, headers: HeaderMap) -> Self {
        self.inner = self.inner.default_headers(headers);
        self
    }

    /// TLS files and checks; read in [`build`](Self::build).
    pub fn tls(mut self, tls: Option<&TlsConfig>) -> Self {
        self.tls = tls.cloned();
        self
    }

    /// Sends every request through this proxy URL instead of the `HTTPS_PROXY`/`HTTP_PROXY`
    /// environment variables (which are honoured otherwise).
    pub fn proxy(mut self, url: Option<&str>) -> Self {
        self.proxy = url.map(str::to_string);
        self
    }

    /// Idle connections kept per host.
    pub fn max_idle_per_host(mut self, n: usize) -> Self {
        self.inner = self.inner.pool_max_idle_per_host(n);
        self
    }

    /// Refuse redirects: a redirected POST silently becomes a GET, so a redirect means a
    /// wrong URL (it then answers 3xx, which is fatal).
    pub fn no_redirects(mut self) -> Self {
        self.inner = self.inner.redirect(reqwest::redirect::Policy::none());
        self
    }

    /// Reads the TLS files and makes the client; call it when the connector opens.
    pub fn build(self) -> Result<reqwest::Client, ClientError> {
        let mut inner = self.inner;
        if let Some(tls) = &self.tls {
            inner = tls.apply(inner, self.connector)?;
        }
        if let Some(url) = &self.proxy {
            let proxy =
                reqwest::Proxy::all(url.as_str()).map_err(|_| ClientError::Proxy(redact(url)))?;
            inner = inner.proxy(proxy);
        }
        inner.build().map_err(ClientError::Build)
    }
}

/// A proxy URL without its credentials, for messages.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_password(None);
            let _ = u.set_username("");
            u.to_string()
        }
        Err(_) => "(not a URL)".to_string(),
    }
}

/// An answer read in full, whatever its status.
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Response {
    /// Sends `request` and reads the whole answer.
    pub async fn fetch(request: reqwest::RequestBuilder) -> Result<Response, reqwest::Error> {
        let mut resp = request.send().await?;
        let status = resp.status();
        let headers = std::mem::take(resp.headers_mut());
        let body = resp.bytes().await?;
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `Retry-After` the answer asks for.
    pub fn retry_after(&self) -> Option<Duration> {
        super::retry_after(&self.headers)
    }
}

/// A request that got no answer (refused connection, timeout, TLS failure, cut answer), as
/// the whole-request error it is: `<what> unreachable: <error>: <causes>`.
pub fn unreachable(what: &str, error: &reqwest::Error) -> SinkError {
    SinkError::unavailable(format!("{what} unreachable: {}", with_causes(error)))
}

/// An error followed by each of its causes not already in its text (`error sending request:
/// connection refused`); for any error, not only HTTP ones (a TLS handshake, a socket).
pub fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let t = c.to_string();
        if !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_and_refuses_without_echoing_credentials() {
        assert!(ClientBuilder::new("t", "1")
            .request_timeout(Duration::from_secs(5))
            .max_idle_per_host(4)
            .no_redirects()
            .build()
            .is_ok());
        let e = ClientBuilder::new("t", "1")
            .proxy(Some("http://user:hunter2@proxy:3128"))
            .build();
        assert!(e.is_ok(), "a proxy with credentials is valid");
        let e = ClientBuilder::new("t", "1")
            .tls(Some(&TlsConfig {
                ca_file: Some("/nonexistent".into()),
                ..TlsConfig::default()
            }))
            .build()
            .unwrap_err();
        assert!(matches!(SinkError::from(e), SinkError::Fatal(m) if m.contains("tls.ca_file")));
        assert_eq!(redact("http://u:hunter2@p:1/"), "http://p:1/");
    }

    #[tokio::test]
    async fn unreachable_names_the_cause() {
        let client = ClientBuilder::new("t", "1")
            .request_timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        // Port 9 on localhost: nothing listens (discard is not run here).
        let e = client.get("http://127.0.0.1:9/").send().await.unwrap_err();
        match unreachable("the test server", &e) {
            SinkError::Unavailable { message, .. } => {
                assert!(
                    message.starts_with("the test server unreachable: "),
                    "{message}"
                )
            }
            other => panic!("{other:?}"),
        }
    }
}
