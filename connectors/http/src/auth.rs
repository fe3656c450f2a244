//! The credential each call carries: a fixed header (bearer, basic, any header), or an OAuth 2.0
//! access token from the client credentials grant (RFC 6749 §4.4), cached until shortly before
//! it expires and fetched again once when the API answers 401.

use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use serde::Deserialize;
use sluice_sdk::config::Secret;
use sluice_sdk::http::{with_causes, Response, StatusClass};
use sluice_sdk::{ConfigError, SinkError};

use crate::config::{AuthConfig, ClientAuth};

/// A token is fetched again this long before it expires (at most a tenth of its lifetime),
/// so a call never leaves with a token about to lapse.
const REFRESH_MARGIN: Duration = Duration::from_secs(30);

/// Adds the configured credential to calls.
pub enum Authorizer {
    None,
    Static(HeaderName, HeaderValue),
    OAuth2(OAuth2),
}

impl Authorizer {
    /// Checks the options; `client` is the one calls go through (the token endpoint shares it).
    pub fn new(config: Option<&AuthConfig>) -> Result<Self, ConfigError> {
        let Some(config) = config else {
            return Ok(Authorizer::None);
        };
        Ok(match config {
            AuthConfig::Bearer { token } => {
                non_empty(token, "auth.token")?;
                Authorizer::Static(
                    AUTHORIZATION,
                    sensitive(&format!("Bearer {}", token.expose()), "auth.token")?,
                )
            }
            AuthConfig::Basic { username, password } => {
                let pair = format!("{username}:{}", password.expose());
                let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
                Authorizer::Static(
                    AUTHORIZATION,
                    sensitive(&format!("Basic {encoded}"), "auth.password")?,
                )
            }
            AuthConfig::Header { name, value } => {
                let name = HeaderName::from_bytes(name.trim().as_bytes())
                    .map_err(|_| ConfigError::at("auth.name", "not a valid header name"))?;
                non_empty(value, "auth.value")?;
                Authorizer::Static(name, sensitive(value.expose(), "auth.value")?)
            }
            AuthConfig::Oauth2 {
                token_url,
                client_id,
                client_secret,
                scope,
                client_auth,
            } => {
                let url = sluice_sdk::http::endpoint_url(
                    token_url,
                    "put the client secret in `client_secret`",
                )
                .map_err(|e| ConfigError::at("auth.token_url", e.to_string()))?;
                if client_id.trim().is_empty() {
                    return Err(ConfigError::at("auth.client_id", "must not be empty"));
                }
                non_empty(client_secret, "auth.client_secret")?;
                Authorizer::OAuth2(OAuth2 {
                    url,
                    client_id: client_id.clone(),
                    client_secret: client_secret.clone(),
                    scope: scope.clone().filter(|s| !s.trim().is_empty()),
                    client_auth: *client_auth,
                    token: tokio::sync::Mutex::new(None),
                })
            }
        })
    }

    /// The header to send, fetching a token when none is cached.
    pub async fn header(
        &self,
        client: &reqwest::Client,
    ) -> Result<Option<(HeaderName, HeaderValue)>, SinkError> {
        match self {
            Authorizer::None => Ok(None),
            Authorizer::Static(n, v) => Ok(Some((n.clone(), v.clone()))),
            Authorizer::OAuth2(o) => Ok(Some((AUTHORIZATION, o.token(client).await?))),
        }
    }

    /// The API refused `used` with a 401: forget it if it is still the cached token. True when
    /// a fresh credential may help (OAuth2), so the call is worth one more try.
    pub async fn refused(&self, used: &HeaderValue) -> bool {
        match self {
            Authorizer::OAuth2(o) => {
                let mut t = o.token.lock().await;
                if t.as_ref().is_some_and(|t| t.value == used) {
                    *t = None;
                }
                true
            }
            _ => false,
        }
    }
}

fn non_empty(s: &Secret, at: &str) -> Result<(), ConfigError> {
    if s.expose().trim().is_empty() {
        return Err(ConfigError::at(at, "must not be empty"));
    }
    Ok(())
}

fn sensitive(text: &str, at: &str) -> Result<HeaderValue, ConfigError> {
    let mut v = HeaderValue::from_str(text)
        .map_err(|_| ConfigError::at(at, "contains characters not allowed in a header"))?;
    v.set_sensitive(true);
    Ok(v)
}

/// The client credentials grant and its token cache.
pub struct OAuth2 {
    url: url::Url,
    client_id: String,
    client_secret: Secret,
    scope: Option<String>,
    client_auth: ClientAuth,
    /// Held while a token is fetched, so concurrent calls wait for one fetch.
    token: tokio::sync::Mutex<Option<Token>>,
}

struct Token {
    value: HeaderValue,
    refresh_at: Option<Instant>,
}

/// A successful token answer (RFC 6749 §5.1).
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    token_type: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// An error answer (RFC 6749 §5.2).
#[derive(Deserialize)]
struct ErrorAnswer {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

impl OAuth2 {
    async fn token(&self, client: &reqwest::Client) -> Result<HeaderValue, SinkError> {
        let mut cached = self.token.lock().await;
        if let Some(t) = cached.as_ref() {
            if t.refresh_at.is_none_or(|at| Instant::now() < at) {
                return Ok(t.value.clone());
            }
        }
        let fresh = self.fetch(client).await?;
        let value = fresh.value.clone();
        *cached = Some(fresh);
        Ok(value)
    }

    async fn fetch(&self, client: &reqwest::Client) -> Result<Token, SinkError> {
        let req = self.request(client)?;
        let started = Instant::now();
        let resp = Response::fetch(req).await.map_err(|e| {
            SinkError::unavailable(format!(
                "the OAuth2 token endpoint {} is unreachable: {}",
                self.url,
                with_causes(&e)
            ))
        })?;
        self.read(&resp, started)
    }

    /// The token request (RFC 6749 §4.4.2): a form with the grant type and scope, the client
    /// authenticated with HTTP Basic or in the form.
    fn request(&self, client: &reqwest::Client) -> Result<reqwest::RequestBuilder, SinkError> {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "client_credentials");
        if let Some(scope) = &self.scope {
            form.append_pair("scope", scope);
        }
        let mut req = client
            .post(self.url.clone())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(reqwest::header::ACCEPT, "application/json");
        match self.client_auth {
            ClientAuth::Basic => {
                // RFC 6749 §2.3.1: id and secret are form-encoded before Basic encoding.
                let enc = |s: &str| -> String {
                    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
                };
                let pair: String =
                    [enc(&self.client_id), enc(self.client_secret.expose())].join(":");
                let b64 = base64::engine::general_purpose::STANDARD.encode(pair);
                let mut v = HeaderValue::from_str(&format!("Basic {b64}")).map_err(|_| {
                    SinkError::Fatal("auth.client_id is not usable in a header".into())
                })?;
                v.set_sensitive(true);
                req = req.header(AUTHORIZATION, v);
            }
            ClientAuth::Body => {
                form.append_pair("client_id", &self.client_id);
                form.append_pair("client_secret", self.client_secret.expose());
            }
        }
        Ok(req.body(form.finish()))
    }

    fn read(&self, resp: &Response, started: Instant) -> Result<Token, SinkError> {
        let status = resp.status.as_u16();
        if resp.status.is_success() {
            let t: TokenAnswer = serde_json::from_slice(&resp.body).map_err(|_| {
                SinkError::Unauthorized(format!(
                    "the OAuth2 token endpoint {} answered {status} without \
                     `access_token` and `token_type`",
                    self.url
                ))
            })?;
            if !t.token_type.eq_ignore_ascii_case("bearer") {
                return Err(SinkError::Unauthorized(format!(
                    "the OAuth2 token endpoint issued a `{}` token; only bearer tokens are \
                     supported",
                    t.token_type
                )));
            }
            let mut value =
                HeaderValue::from_str(&format!("Bearer {}", t.access_token)).map_err(|_| {
                    SinkError::Unauthorized(
                        "the OAuth2 access token is not usable in a header".into(),
                    )
                })?;
            value.set_sensitive(true);
            let refresh_at = t.expires_in.map(|secs| {
                let life = Duration::from_secs(secs);
                started + life - REFRESH_MARGIN.min(life / 10)
            });
            return Ok(Token { value, refresh_at });
        }
        let reason = match serde_json::from_slice::<ErrorAnswer>(&resp.body) {
            Ok(e) => match e.error_description {
                Some(d) => format!("{} ({d})", e.error),
                None => e.error,
            },
            Err(_) => "no OAuth2 error in the answer".into(),
        };
        let message = format!(
            "the OAuth2 token endpoint {} answered {status}: {reason}",
            self.url
        );
        Err(match StatusClass::of(status) {
            StatusClass::Unavailable => SinkError::Unavailable {
                message,
                retry_after: resp.retry_after(),
            },
            // A refused client, scope or grant: credentials or configuration to fix.
            _ => SinkError::Unauthorized(format!(
                "{message} (check auth.client_id, auth.client_secret and auth.scope)"
            )),
        })
    }
}
