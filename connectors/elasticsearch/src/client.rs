//! Building the `elasticsearch` transport and checking that the server is Elasticsearch.

use elasticsearch::auth::Credentials;
use elasticsearch::cert::{Certificate, CertificateValidation};
use elasticsearch::http::headers::HeaderMap;
use elasticsearch::http::transport::{
    CloudConnectionPool, MultiNodeConnectionPool, SingleNodeConnectionPool, Transport,
    TransportBuilder,
};
use elasticsearch::http::{Method, Url};
use serde::Deserialize;
use sluice_sdk::http::{retry_after, with_causes, StatusClass};
use sluice_sdk::{ConfigError, SinkError};

use crate::config::{Auth, EsConfig};

/// Where the cluster is, checked without I/O when the sink is built.
#[derive(Debug, Clone)]
pub enum Target {
    Nodes(Vec<Url>),
    Cloud(String),
}

impl Target {
    pub fn from_config(cfg: &EsConfig) -> Result<Self, ConfigError> {
        match (&cfg.cloud_id, cfg.endpoints.is_empty()) {
            (Some(_), false) => Err(ConfigError::new(
                "set either `endpoints` or `cloud_id`, not both",
            )),
            (None, true) => Err(ConfigError::at(
                "endpoints",
                "at least one endpoint (or `cloud_id`) is required",
            )),
            (Some(id), true) => {
                elasticsearch::http::transport::CloudId::parse(id)
                    .map_err(|e| ConfigError::at("cloud_id", format!("invalid cloud_id: {e}")))?;
                Ok(Target::Cloud(id.clone()))
            }
            (None, false) => cfg
                .endpoints
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    parse_endpoint(e).map_err(|m| ConfigError::at(format!("endpoints[{i}]"), m))
                })
                .collect::<Result<_, _>>()
                .map(Target::Nodes),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Target::Nodes(urls) => urls.iter().map(Url::as_str).collect::<Vec<_>>().join(", "),
            Target::Cloud(_) => "Elastic Cloud deployment".to_string(),
        }
    }
}

fn parse_endpoint(text: &str) -> Result<Url, String> {
    let mut url =
        sluice_sdk::http::endpoint_url(text, "put them under `auth`").map_err(|e| e.to_string())?;
    // Request paths are joined onto the endpoint: keep a path prefix (a proxy) intact.
    if !url.path().ends_with('/') {
        let p = format!("{}/", url.path());
        url.set_path(&p);
    }
    Ok(url)
}

/// Builds the transport: connection pool, credentials, TLS, timeout (request bodies are
/// compressed by [`crate::request`]). Reads the CA file, so it runs in `open`.
pub fn build_transport(cfg: &EsConfig, target: &Target) -> Result<Transport, SinkError> {
    let mut builder = match target {
        Target::Nodes(urls) if urls.len() == 1 => {
            TransportBuilder::new(SingleNodeConnectionPool::new(urls[0].clone()))
        }
        Target::Nodes(urls) => {
            TransportBuilder::new(MultiNodeConnectionPool::round_robin(urls.clone(), None))
        }
        Target::Cloud(id) => TransportBuilder::new(
            CloudConnectionPool::new(id)
                .map_err(|e| SinkError::Fatal(format!("invalid cloud_id: {e}")))?,
        ),
    };
    if let (Some(_), Target::Nodes(urls)) = (&cfg.auth, target) {
        for url in urls {
            sluice_sdk::http::warn_if_cleartext("elasticsearch", url, "the `auth` credential");
        }
    }
    if let Some(auth) = &cfg.auth {
        builder = builder.auth(match auth {
            Auth::Basic { username, password } => {
                Credentials::Basic(username.clone(), password.expose().to_string())
            }
            Auth::ApiKey { id: Some(id), key } => {
                Credentials::ApiKey(id.clone(), key.expose().to_string())
            }
            Auth::ApiKey { id: None, key } => Credentials::EncodedApiKey(key.expose().to_string()),
            Auth::Bearer { token } => Credentials::Bearer(token.expose().to_string()),
        });
    }
    let tls = cfg.tls.resolve();
    if tls.insecure_skip_verify {
        tls.warn_if_insecure("elasticsearch");
        builder = builder.cert_validation(CertificateValidation::None);
    } else if let Some(pem) = tls.ca_pem().map_err(|e| SinkError::Fatal(e.to_string()))? {
        let cert = Certificate::from_pem(&pem)
            .map_err(|e| SinkError::Fatal(format!("tls.ca_file is not PEM: {e}")))?;
        builder = builder.cert_validation(CertificateValidation::Full(cert));
    }
    builder
        .request_body_compression(false)
        .timeout(cfg.request_timeout)
        .build()
        .map_err(|e| SinkError::Fatal(format!("cannot build the Elasticsearch client: {e}")))
}

#[derive(Deserialize)]
struct RootInfo {
    #[serde(default)]
    cluster_name: Option<String>,
    #[serde(default)]
    tagline: Option<String>,
    version: RootVersion,
}

#[derive(Deserialize)]
struct RootVersion {
    number: String,
}

/// What the start-up check learnt.
#[derive(Debug, Clone)]
pub struct ClusterInfo {
    pub version: String,
    pub cluster_name: Option<String>,
}

/// `GET /`: refuses a server that is not Elasticsearch, the way the official clients do.
///
/// Elasticsearch 7.14 and later mark every answer with `X-Elastic-Product: Elasticsearch`;
/// 7.0 to 7.13 are recognised by their tagline. 6.x and older need `_type` in bulk lines and
/// are refused. A 403 (a key that may write but not read cluster info) is accepted when the
/// product header is present; the version is then unknown.
pub async fn check_cluster(transport: &Transport, where_: &str) -> Result<ClusterInfo, SinkError> {
    let resp = transport
        .send(
            Method::Get,
            "/",
            HeaderMap::new(),
            None::<&()>,
            None::<()>,
            None,
        )
        .await
        .map_err(|e| {
            SinkError::unavailable(format!(
                "cannot reach Elasticsearch at {where_}: {}",
                with_causes(&e)
            ))
        })?;
    let status = resp.status_code().as_u16();
    let product = resp
        .headers()
        .get("x-elastic-product")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let headers = resp.headers().clone();
    let body = resp.bytes().await.map_err(|e| {
        SinkError::unavailable(format!("reading GET / from {where_}: {}", with_causes(&e)))
    })?;
    let is_es = product.as_deref() == Some("Elasticsearch");
    match status {
        200 => {}
        401 => {
            return Err(SinkError::Unauthorized(format!(
                "Elasticsearch at {where_} answered 401 to GET /: check `auth`"
            )))
        }
        407 => {
            return Err(SinkError::Unauthorized(format!(
                "a proxy on the way to {where_} answered 407 (proxy authentication required)"
            )))
        }
        403 if is_es => {
            tracing::warn!(
                "Elasticsearch at {where_} answered 403 to GET / (the credentials lack the \
                 `monitor` privilege); cluster version unknown"
            );
            return Ok(ClusterInfo {
                version: "unknown".into(),
                cluster_name: None,
            });
        }
        403 => {
            return Err(SinkError::Unauthorized(format!(
                "{where_} answered 403 to GET /: check `auth`"
            )))
        }
        _ if StatusClass::of(status) == StatusClass::Unavailable => {
            return Err(SinkError::Unavailable {
                message: format!("Elasticsearch at {where_} answered {status} to GET /"),
                retry_after: retry_after(&headers),
            })
        }
        _ => {
            return Err(SinkError::Fatal(format!(
                "{where_} answered {status} to GET /: not an Elasticsearch endpoint"
            )))
        }
    }
    let info: RootInfo = serde_json::from_slice(&body).map_err(|_| {
        SinkError::Fatal(format!(
            "the server at {where_} is not Elasticsearch: GET / did not return cluster information"
        ))
    })?;
    let (major, minor) = major_minor(&info.version.number);
    let genuine = if (major, minor) >= (7, 14) {
        is_es
    } else if major == 7 {
        is_es || info.tagline.as_deref() == Some("You Know, for Search")
    } else {
        return Err(SinkError::Fatal(format!(
            "Elasticsearch {} at {where_} is not supported (7.0 or later is required)",
            info.version.number
        )));
    };
    if !genuine {
        return Err(SinkError::Fatal(format!(
            "the server at {where_} is not Elasticsearch: it claims version {} but its answer \
             lacks the `X-Elastic-Product: Elasticsearch` header (found: {})",
            info.version.number,
            product.as_deref().unwrap_or("none")
        )));
    }
    Ok(ClusterInfo {
        version: info.version.number,
        cluster_name: info.cluster_name,
    })
}

fn major_minor(version: &str) -> (u32, u32) {
    let mut it = version
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(major_minor("8.13.2"), (8, 13));
        assert_eq!(major_minor("7.9.0-SNAPSHOT"), (7, 9));
        assert_eq!(major_minor("x"), (0, 0));
    }

    #[test]
    fn endpoints_keep_path_prefixes() {
        assert_eq!(
            parse_endpoint("http://h:9200").unwrap().as_str(),
            "http://h:9200/"
        );
        assert_eq!(
            parse_endpoint("https://p/es").unwrap().as_str(),
            "https://p/es/"
        );
        assert!(parse_endpoint("ftp://h").is_err());
        let e = parse_endpoint("http://u:hunter2@h").unwrap_err();
        assert!(e.contains("`auth`") && !e.contains("hunter2"), "{e}");
        assert!(parse_endpoint("http://h/?api_key=hunter2").is_err());
    }
}
