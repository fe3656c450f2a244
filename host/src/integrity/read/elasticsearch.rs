//! An Elasticsearch index, read through a point in time (one consistent view) in pages with
//! `search_after` over `_shard_doc`. Elasticsearch keeps no write order (segment merges and
//! shards reorder documents), so `reordered` is not judged here; every other check is.
//! Credentials: `ES_API_KEY` (the encoded key), or `ES_USERNAME` and `ES_PASSWORD`.

use std::collections::VecDeque;

use serde_json::{json, Value};
use sluice_elasticsearch::client::{build_transport, check_cluster, Target};
use sluice_elasticsearch::elasticsearch::http::headers::HeaderMap;
use sluice_elasticsearch::elasticsearch::http::request::JsonBody;
use sluice_elasticsearch::elasticsearch::http::transport::Transport;
use sluice_elasticsearch::elasticsearch::http::Method;
use sluice_elasticsearch::EsConfig;

use super::{Entry, ReadError, RecordReader};

const PAGE: usize = 1000;
const KEEP_ALIVE: &str = "2m";

pub struct EsReader {
    rt: tokio::runtime::Runtime,
    transport: Transport,
    index: String,
    pit: String,
    after: Option<Value>,
    page: VecDeque<Entry>,
    done: bool,
}

fn es_error(e: impl std::fmt::Display) -> ReadError {
    ReadError::Elasticsearch(e.to_string())
}

/// `auth:` as the sink takes it, from the environment.
fn auth_from_env() -> Value {
    let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
    match (var("ES_API_KEY"), var("ES_USERNAME"), var("ES_PASSWORD")) {
        (Some(key), _, _) => json!({ "type": "api_key", "key": key }),
        (None, Some(username), Some(password)) => {
            json!({ "type": "basic", "username": username, "password": password })
        }
        _ => Value::Null,
    }
}

impl EsReader {
    /// Checks the cluster and opens a point in time on `index`; `ca_file` adds CA
    /// certificates (PEM) to the system's for an `https` URL, as the sink's `tls.ca_file`.
    pub fn open(
        url: &str,
        index: &str,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Self, ReadError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| ReadError::Io {
                what: "the runtime".into(),
                source,
            })?;
        let mut cfg = json!({
            "endpoints": [url],
            "index": index,
            "auth": auth_from_env(),
        });
        if let Some(ca) = ca_file {
            cfg["tls"] = json!({ "ca_file": ca });
        }
        let cfg: EsConfig = serde_json::from_value(cfg).map_err(es_error)?;
        let target = Target::from_config(&cfg).map_err(es_error)?;
        let transport = build_transport(&cfg, &target).map_err(es_error)?;
        rt.block_on(check_cluster(&transport, &target.describe()))
            .map_err(es_error)?;
        let opened = rt.block_on(call(
            &transport,
            Method::Post,
            &format!("/{index}/_pit"),
            Some(&[("keep_alive", KEEP_ALIVE)]),
            None,
        ))?;
        let pit = opened["id"]
            .as_str()
            .ok_or_else(|| es_error("opening a point in time gave no id"))?
            .to_string();
        Ok(EsReader {
            rt,
            transport,
            index: index.to_string(),
            pit,
            after: None,
            page: VecDeque::new(),
            done: false,
        })
    }

    fn fetch(&mut self) -> Result<(), ReadError> {
        let mut body = json!({
            "size": PAGE,
            "pit": { "id": self.pit, "keep_alive": KEEP_ALIVE },
            "sort": [{ "_shard_doc": "asc" }],
            "track_total_hits": false,
        });
        if let Some(after) = &self.after {
            body["search_after"] = after.clone();
        }
        let answer = self.rt.block_on(call(
            &self.transport,
            Method::Post,
            "/_search",
            None,
            Some(body),
        ))?;
        if let Some(id) = answer["pit_id"].as_str() {
            self.pit = id.to_string();
        }
        let hits = answer["hits"]["hits"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if hits.len() < PAGE {
            self.done = true;
        }
        for hit in hits {
            self.after = Some(hit["sort"].clone());
            let id = hit["_id"].as_str().unwrap_or("?");
            let value = serde_json::to_vec(&hit["_source"]).map_err(es_error)?;
            self.page.push_back(Entry {
                value,
                at: format!("doc _id={id}").into(),
                lane: 0,
                stamp: None,
            });
        }
        if self.done {
            self.close();
        }
        Ok(())
    }

    /// Frees the point in time; it expires on its own if this fails.
    fn close(&mut self) {
        let body = json!({ "id": self.pit });
        let _ = self.rt.block_on(call(
            &self.transport,
            Method::Delete,
            "/_pit",
            None,
            Some(body),
        ));
    }
}

/// One request; a non-2xx answer becomes an error with Elasticsearch's reason.
async fn call(
    transport: &Transport,
    method: Method,
    path: &str,
    query: Option<&[(&str, &str)]>,
    body: Option<Value>,
) -> Result<Value, ReadError> {
    let resp = transport
        .send(
            method,
            path,
            HeaderMap::new(),
            query,
            body.map(JsonBody::new),
            None,
        )
        .await
        .map_err(es_error)?;
    let status = resp.status_code().as_u16();
    let bytes = resp.bytes().await.map_err(es_error)?;
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if !(200..300).contains(&status) {
        let reason = v["error"]["reason"]
            .as_str()
            .or_else(|| v["error"].as_str())
            .unwrap_or("no reason given");
        let kind = v["error"]["type"].as_str().unwrap_or("error");
        return Err(ReadError::Elasticsearch(format!(
            "{path} answered {status}: {kind}: {reason}"
        )));
    }
    Ok(v)
}

impl RecordReader for EsReader {
    fn next_entry(&mut self) -> Result<Option<Entry>, ReadError> {
        if self.page.is_empty() && !self.done {
            self.fetch()?;
        }
        Ok(self.page.pop_front())
    }

    fn ordered(&self) -> bool {
        false
    }

    fn describe(&self) -> String {
        format!("index {}", self.index)
    }
}
