//! The calls the sink makes: what a record (or a batch) becomes — URL, headers, body — and
//! how a call is sent with its credential.

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE};
use reqwest::Method;
use serde_json::Value;
use sluice_sdk::http::{with_causes, BodyEncoder, ClientBuilder, Response};
use sluice_sdk::{Bytes, ConfigError, RecordRef, Rejection, SinkError};

use crate::auth::Authorizer;
use crate::body::{BatchFormat, JsonTemplate};
use crate::config::{BodyConfig, HttpConfig};
use crate::template::TextTemplate;
use crate::url_template::UrlTemplate;

/// A batch's call (none when no record could be made into it), the indices of the records in
/// it, and the records refused with why.
pub type BatchCall = (Option<Call>, Vec<usize>, Vec<(usize, Rejection)>);

/// One call, ready to send (and to send again after a token refresh).
#[derive(Debug, Clone)]
pub struct Call {
    pub url: url::Url,
    pub headers: HeaderMap,
    pub body: Option<Bytes>,
}

enum Body {
    Record,
    Template(JsonTemplate),
}

/// What every call is made of, from the configuration.
pub struct Shape {
    pub method: Method,
    pub url: UrlTemplate,
    fixed: HeaderMap,
    templated: Vec<(HeaderName, TextTemplate)>,
    idempotency: Option<(HeaderName, TextTemplate)>,
    body: Body,
    pub batch: Option<BatchFormat>,
    sends_body: bool,
    needs_fields: bool,
    bodies: BodyEncoder,
}

/// The rejection of a record whose call cannot be made.
fn refuse(kind: &str, message: impl Into<String>) -> Rejection {
    Rejection {
        kind: kind.to_string(),
        message: message.into(),
    }
}

impl Shape {
    /// Checks every template against the configuration; errors name the option.
    pub fn new(config: &HttpConfig) -> Result<Self, ConfigError> {
        let method = parse_method(&config.method)?;
        let sends_body = !matches!(method, Method::GET);
        let url =
            UrlTemplate::parse(&config.url).map_err(|e| ConfigError::at("url", e.to_string()))?;
        let mut fixed = HeaderMap::new();
        let mut templated = Vec::new();
        for (name, value) in &config.headers {
            let at = format!("headers.{name}");
            let header = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| ConfigError::at(&at, "not a valid header name"))?;
            let t = TextTemplate::parse(value.expose())
                .map_err(|e| ConfigError::at(&at, e.to_string()))?;
            match t.constant() {
                Some(text) => {
                    let mut v = HeaderValue::from_str(&text).map_err(|_| {
                        ConfigError::at(&at, "contains characters not allowed in a header")
                    })?;
                    v.set_sensitive(true);
                    fixed.append(header, v);
                }
                None => templated.push((header, t)),
            }
        }
        let idempotency = match &config.idempotency_key {
            None => None,
            Some(k) => {
                let name = HeaderName::from_bytes(k.header.trim().as_bytes()).map_err(|_| {
                    ConfigError::at("idempotency_key.header", "not a valid header name")
                })?;
                let t = TextTemplate::parse(&k.template)
                    .map_err(|e| ConfigError::at("idempotency_key.template", e.to_string()))?;
                if !t.needs_fields() {
                    return Err(ConfigError::at(
                        "idempotency_key.template",
                        "names no record field: every call would carry the same key, and the \
                         API would apply only the first",
                    ));
                }
                Some((name, t))
            }
        };
        let body = match &config.body {
            BodyConfig::Record => Body::Record,
            BodyConfig::Template(v) => Body::Template(
                JsonTemplate::parse(v, "body.template")
                    .map_err(|e| ConfigError::at(e.path, e.error.to_string()))?,
            ),
        };
        if let Some(format) = config.batch {
            let why = "with `batch`, one request carries many records, so it cannot take \
                       their fields";
            if url.needs_fields() {
                return Err(ConfigError::at("url", why));
            }
            if let Some((name, _)) = templated.first() {
                return Err(ConfigError::at(format!("headers.{name}"), why));
            }
            if idempotency.is_some() {
                return Err(ConfigError::at(
                    "idempotency_key",
                    "with `batch` the records of a request change between retries, so no key \
                     identifies it; use one request per record for idempotency keys",
                ));
            }
            if !sends_body {
                return Err(ConfigError::at(
                    "method",
                    "`batch` needs a method with a body",
                ));
            }
            default_content_type(&mut fixed, format.content_type());
        } else if sends_body {
            default_content_type(&mut fixed, "application/json");
        }
        let needs_fields = url.needs_fields()
            || !templated.is_empty()
            || idempotency.is_some()
            || matches!(&body, Body::Template(t) if t.needs_fields());
        let bodies = config.compression.encoder();
        if let Some(encoding) = bodies.content_encoding() {
            fixed.insert(CONTENT_ENCODING, HeaderValue::from_static(encoding));
        }
        Ok(Shape {
            method,
            url,
            fixed,
            templated,
            idempotency,
            body,
            batch: config.batch,
            sends_body,
            needs_fields,
            bodies,
        })
    }

    /// The call for one record, or why it cannot be made (the record is dead-lettered).
    pub fn one(&self, record: &RecordRef<'_>) -> Result<Call, Rejection> {
        let parsed = self.fields(record)?;
        let url = self
            .url
            .render(&parsed)
            .map_err(|e| refuse("http.url", e.to_string()))?;
        let mut headers = self.fixed.clone();
        for (name, t) in &self.templated {
            headers.append(name.clone(), header_value(t, &parsed, name)?);
        }
        if let Some((name, t)) = &self.idempotency {
            headers.insert(name.clone(), header_value(t, &parsed, name)?);
        }
        let body = if self.sends_body {
            let raw = match &self.body {
                Body::Record => Bytes::copy_from_slice(record.value()),
                Body::Template(t) => {
                    let mut out = Vec::with_capacity(256);
                    t.render(&parsed, &mut out)
                        .map_err(|e| refuse("http.template", format!("body: {e}")))?;
                    Bytes::from(out)
                }
            };
            Some(self.encode(raw)?)
        } else {
            None
        };
        Ok(Call { url, headers, body })
    }

    /// One call for a batch: the records whose body could be made (their indices) go in it,
    /// the others come back refused.
    pub fn batch(
        &self,
        format: BatchFormat,
        records: &[RecordRef<'_>],
    ) -> Result<BatchCall, SinkError> {
        let mut out = Vec::with_capacity(records.iter().map(|r| r.value().len() + 1).sum());
        let mut included = Vec::with_capacity(records.len());
        let mut refused = Vec::new();
        let mut one = Vec::new();
        for (i, r) in records.iter().enumerate() {
            one.clear();
            match self.batch_item(r, format, &mut one) {
                Ok(()) => {
                    format.push(&mut out, included.is_empty(), &one);
                    included.push(i);
                }
                Err(rej) => refused.push((i, rej)),
            }
        }
        if included.is_empty() {
            return Ok((None, included, refused));
        }
        format.finish(&mut out, included.len());
        let body = self
            .bodies
            .encode(out.into())
            .map_err(|e| SinkError::Fatal(e.to_string()))?;
        let call = Call {
            url: self
                .url
                .render(&Value::Null)
                .map_err(|e| SinkError::Fatal(e.to_string()))?,
            headers: self.fixed.clone(),
            body: Some(body),
        };
        Ok((Some(call), included, refused))
    }

    /// One record's JSON on one line, for a batch.
    fn batch_item(
        &self,
        record: &RecordRef<'_>,
        format: BatchFormat,
        out: &mut Vec<u8>,
    ) -> Result<(), Rejection> {
        match &self.body {
            Body::Template(t) => {
                let parsed = if t.needs_fields() {
                    record.json().map_err(not_json)?
                } else {
                    Value::Null
                };
                t.render(&parsed, out)
                    .map_err(|e| refuse("http.template", format!("body: {e}")))
            }
            Body::Record => {
                let value = record.value();
                let one_line = format == BatchFormat::JsonArray || !value.contains(&b'\n');
                if one_line {
                    record.check_json().map_err(not_json)?;
                    out.extend_from_slice(value);
                } else {
                    let v: Value = serde_json::from_slice(value).map_err(not_json)?;
                    let _ = serde_json::to_writer(&mut *out, &v);
                }
                Ok(())
            }
        }
    }

    fn fields(&self, record: &RecordRef<'_>) -> Result<Value, Rejection> {
        if self.needs_fields {
            record.json().map_err(not_json)
        } else {
            Ok(Value::Null)
        }
    }

    fn encode(&self, raw: Bytes) -> Result<Bytes, Rejection> {
        self.bodies
            .encode(raw)
            .map_err(|e| refuse("http.compression", e.to_string()))
    }
}

fn not_json(e: impl std::fmt::Display) -> Rejection {
    // Parsing and checking fail only on syntax or UTF-8, whose messages say where, never what.
    refuse(
        "http.not_json",
        format!("the record's value is not JSON, which this sink's body or templates need: {e}"),
    )
}

fn header_value(
    t: &TextTemplate,
    record: &Value,
    name: &HeaderName,
) -> Result<HeaderValue, Rejection> {
    let text = t
        .render(record)
        .map_err(|e| refuse("http.template", format!("header {name}: {e}")))?;
    let mut v = HeaderValue::from_str(&text).map_err(|_| {
        refuse(
            "http.header",
            format!("header {name}: the rendered value has characters not allowed in a header"),
        )
    })?;
    v.set_sensitive(true);
    Ok(v)
}

fn default_content_type(headers: &mut HeaderMap, value: &'static str) {
    if !headers.contains_key(CONTENT_TYPE) {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(value));
    }
}

fn parse_method(text: &str) -> Result<Method, ConfigError> {
    match text.trim().to_ascii_uppercase().as_str() {
        "POST" => Ok(Method::POST),
        "PUT" => Ok(Method::PUT),
        "PATCH" => Ok(Method::PATCH),
        "DELETE" => Ok(Method::DELETE),
        "GET" => Ok(Method::GET),
        other => Err(ConfigError::at(
            "method",
            format!("unsupported method `{other}`: use POST, PUT, PATCH, DELETE or GET"),
        )),
    }
}

/// The client and the credential: sends calls.
pub struct Api {
    client: reqwest::Client,
    auth: Authorizer,
    method: Method,
}

impl Api {
    /// Builds the client (reads TLS files, so it runs in `open`).
    pub fn new(config: &HttpConfig, auth: Authorizer, method: Method) -> Result<Self, SinkError> {
        let client = ClientBuilder::new("http", env!("CARGO_PKG_VERSION"))
            .request_timeout(config.request_timeout)
            .tls(config.tls.as_ref())
            .max_idle_per_host(config.max_in_flight.max(1))
            .no_redirects()
            .build()?;
        Ok(Api {
            client,
            auth,
            method,
        })
    }

    /// Sends a call and reads the whole answer; after a 401 with an OAuth2 token, fetches a
    /// new token and sends it once more. `Err` when no answer came.
    pub async fn send(&self, call: &Call) -> Result<Response, SinkError> {
        let (resp, used) = self.send_once(call).await?;
        if resp.status == reqwest::StatusCode::UNAUTHORIZED {
            if let Some(used) = used {
                if self.auth.refused(&used).await {
                    return Ok(self.send_once(call).await?.0);
                }
            }
        }
        Ok(resp)
    }

    async fn send_once(&self, call: &Call) -> Result<(Response, Option<HeaderValue>), SinkError> {
        let auth = self.auth.header(&self.client).await?;
        let mut req = self
            .client
            .request(self.method.clone(), call.url.clone())
            .headers(call.headers.clone());
        let mut used = None;
        if let Some((name, value)) = auth {
            used = Some(value.clone());
            req = req.header(name, value);
        }
        if let Some(body) = &call.body {
            req = req.body(body.clone());
        }
        let resp = Response::fetch(req).await.map_err(|e| {
            // The URL may carry record values: only its host is named.
            SinkError::unavailable(format!(
                "{} {} unreachable: {}",
                self.method,
                call.url.host_str().unwrap_or_default(),
                with_causes(&e.without_url())
            ))
        })?;
        Ok((resp, used))
    }
}
