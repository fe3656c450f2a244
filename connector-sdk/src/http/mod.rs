//! What every HTTP connector needs the same way: the reading of a status code, the
//! `Retry-After` header, TLS files, request compression, the client builder and the checks on
//! an endpoint URL. A connector extends the status reading only for its protocol's quirks.

mod client;
mod compression;
#[cfg(feature = "server")]
pub mod server_tls;
mod status;
mod tls;

pub use client::{unreachable, with_causes, ClientBuilder, ClientError, Response};
pub use compression::{BodyEncoder, Compression, CompressionError};
pub use status::{parse_retry_after, retry_after, StatusClass};
pub use tls::{TlsConfig, TlsError};

/// Query parameter names that carry a credential (compared without case, `-` and `_`).
const CREDENTIAL_PARAMS: [&str; 12] = [
    "token",
    "accesstoken",
    "apikey",
    "ddapikey",
    "key",
    "password",
    "passwd",
    "secret",
    "sig",
    "signature",
    "auth",
    "authorization",
];

/// Why an endpoint URL was refused. The messages never repeat the URL: it may hold a
/// credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("not a valid URL: {0}")]
    Invalid(url::ParseError),
    #[error("the scheme must be http or https, not `{0}`")]
    Scheme(String),
    #[error("the URL has no host")]
    NoHost,
    #[error(
        "credentials in the URL are refused (they would reach logs, metrics and error \
         messages); {0}"
    )]
    Credentials(&'static str),
}

/// Parses and checks an HTTP sink's endpoint: http or https with a host, and no credential
/// in it, neither `user:password@` nor a query parameter such as `token=` or `api_key=`.
/// `hint` says where the credential goes instead (`put the HEC token in \`token\``).
///
/// Every HTTP sink calls it when it is built, so `sluice validate` refuses such a URL and
/// points at the option.
pub fn endpoint_url(text: &str, hint: &'static str) -> Result<url::Url, EndpointError> {
    let url = url::Url::parse(text.trim()).map_err(EndpointError::Invalid)?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(EndpointError::Credentials(hint));
    }
    let credential_param = url.query_pairs().any(|(name, _)| {
        let name: String = name
            .chars()
            .filter(|c| !matches!(c, '-' | '_'))
            .flat_map(char::to_lowercase)
            .collect();
        CREDENTIAL_PARAMS.contains(&name.as_str())
    });
    if credential_param {
        return Err(EndpointError::Credentials(hint));
    }
    if !matches!(url.scheme(), "http" | "https") {
        return Err(EndpointError::Scheme(url.scheme().to_string()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(EndpointError::NoHost);
    }
    Ok(url)
}

/// Logs one WARN when a credential (`what`: "the HEC token") is about to travel over plain
/// `http://`, where anyone on the path can read it. Call once when the sink opens.
pub fn warn_if_cleartext(connector: &str, url: &url::Url, what: &str) {
    if url.scheme() == "http" {
        tracing::warn!(
            connector,
            host = url.host_str().unwrap_or_default(),
            "{what} is sent over plain http:// to this endpoint; anyone on the network path can \
             read it (use https://)"
        );
    }
}

/// The deprecated option spellings one connector instance was configured with. Each old
/// spelling stays accepted for one release; [`warn`](Deprecations::warn) names them when the
/// instance opens (the factory also runs for `sluice validate`, so it does not warn).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Deprecations(Vec<(&'static str, &'static str)>);

impl Deprecations {
    /// An option read under its name (`new`) or the spelling it replaced (`old`): the value,
    /// or an error under `old` when both are set.
    pub fn renamed<T>(
        &mut self,
        new: (&'static str, Option<T>),
        old: (&'static str, Option<T>),
    ) -> Result<Option<T>, crate::ConfigError> {
        match (new.1, old.1) {
            (Some(_), Some(_)) => Err(crate::ConfigError::at(
                old.0,
                format!(
                    "set `{}` only: `{}` is its deprecated spelling",
                    new.0, old.0
                ),
            )),
            (value, None) => Ok(value),
            (None, Some(value)) => {
                self.0.push((old.0, new.0));
                Ok(Some(value))
            }
        }
    }

    /// One WARN per deprecated spelling in use.
    pub fn warn(&self, connector: &str) {
        for (old, new) in &self.0 {
            tracing::warn!(
                connector,
                "option `{old}` is deprecated and will be removed in the next release: write `{new}`"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renamed_options_take_either_spelling_but_not_both() {
        let mut d = Deprecations::default();
        assert_eq!(d.renamed(("new", Some(1)), ("old", None)).unwrap(), Some(1));
        assert_eq!(d, Deprecations::default());
        assert_eq!(d.renamed(("new", None), ("old", Some(2))).unwrap(), Some(2));
        assert_eq!(d.0, [("old", "new")]);
        assert_eq!(d.renamed::<u8>(("n", None), ("o", None)).unwrap(), None);
        let e = d.renamed(("new", Some(1)), ("old", Some(2))).unwrap_err();
        assert_eq!(e.path.as_deref(), Some("old"));
    }

    #[test]
    fn endpoints_with_credentials_are_refused_without_echoing_them() {
        assert_eq!(
            endpoint_url("https://es:9200/prefix", "h")
                .unwrap()
                .as_str(),
            "https://es:9200/prefix"
        );
        assert!(endpoint_url("http://h/?pipeline=x", "h").is_ok());
        for bad in [
            "https://elastic:hunter2@es:9200",
            "https://hunter2@es:9200",
            "https://h/x?token=hunter2",
            "https://h/x?DD-API-KEY=hunter2",
            "https://h/x?api_key=hunter2",
            "https://h/x?a=1&Password=hunter2",
        ] {
            let e = endpoint_url(bad, "use `auth`").unwrap_err();
            assert!(matches!(e, EndpointError::Credentials(_)), "{bad}: {e}");
            let text = e.to_string();
            assert!(
                !text.contains("hunter2") && text.contains("use `auth`"),
                "{text}"
            );
        }
        let e = endpoint_url("ftp://u:hunter2@h", "x").unwrap_err();
        assert!(!e.to_string().contains("hunter2"));
        assert!(matches!(
            endpoint_url("ftp://h", "x"),
            Err(EndpointError::Scheme(s)) if s == "ftp"
        ));
        assert!(matches!(
            endpoint_url("not a url", "x"),
            Err(EndpointError::Invalid(_))
        ));
    }
}
