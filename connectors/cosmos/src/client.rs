//! Signed GET requests against one container.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::Url;
use sluice_sdk::http::{ClientBuilder, Response};

use crate::auth;

/// REST API version sent as `x-ms-version`; change-feed and full-fidelity headers exist in it.
pub const API_VERSION: &str = "2020-07-15";

const REQUEST_TIMEOUT: Duration = Duration::from_secs(65);

/// A container-scoped HTTP client that signs every request with the master key.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    endpoint: Url,
    key: Arc<[u8]>,
    database: String,
    container: String,
    /// `dbs/<db>/colls/<coll>`: the resource link of every feed request on the container.
    link: String,
}

impl Client {
    /// Builds the client; no I/O happens until a request is sent.
    pub fn new(
        endpoint: &str,
        key: Arc<[u8]>,
        database: &str,
        container: &str,
    ) -> Result<Self, String> {
        let endpoint = Url::parse(endpoint).map_err(|e| format!("endpoint: {e}"))?;
        let http = ClientBuilder::new("cosmos", env!("CARGO_PKG_VERSION"))
            .request_timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Client {
            http,
            endpoint,
            key,
            database: database.to_string(),
            container: container.to_string(),
            link: format!("dbs/{database}/colls/{container}"),
        })
    }

    /// The container's resource link (`dbs/<db>/colls/<coll>`).
    pub fn link(&self) -> &str {
        &self.link
    }

    /// The endpoint, for messages.
    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    /// `GET /dbs/<db>/colls/<coll>/<feed>` (`feed` is `docs` or `pkranges`), signed now.
    ///
    /// A feed request is signed with the feed as resource type and the container as link.
    pub async fn get_feed(
        &self,
        feed: &str,
        mut headers: HeaderMap,
    ) -> Result<Response, reqwest::Error> {
        let mut url = self.endpoint.clone();
        if let Ok(mut segs) = url.path_segments_mut() {
            segs.pop_if_empty()
                .extend(["dbs", &self.database, "colls", &self.container, feed]);
        }
        let date = auth::http_date(SystemTime::now());
        let token = auth::authorization(&self.key, "get", feed, &self.link, &date);
        // Both values are ASCII by construction (RFC 1123 date, percent-encoded token).
        if let Ok(v) = HeaderValue::from_str(&token) {
            headers.insert("authorization", v);
        }
        if let Ok(v) = HeaderValue::from_str(&date) {
            headers.insert("x-ms-date", v);
        }
        headers.insert("x-ms-version", HeaderValue::from_static(API_VERSION));
        Response::fetch(self.http.get(url).headers(headers)).await
    }
}
