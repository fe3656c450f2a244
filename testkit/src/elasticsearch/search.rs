//! Reading documents back: `POST /<index>/_pit?keep_alive=`, `POST /_search` with `pit`,
//! `sort` on `_shard_doc` (or `_doc`), `size` and `search_after`, and `DELETE /_pit`, with
//! Elasticsearch's answers to the mistakes a reader can make. `_shard_doc` is the document's
//! position in the (single-shard) index; a point in time sees the index as it was opened.
//! Queries are not emulated: every search matches all documents.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use serde_json::{json, Value};

use super::{auth_failure, error_body, es_response, Shared};

fn answer(state: &Shared, status: StatusCode, body: Value) -> Response {
    let product = state.lock().opts.product_header;
    es_response(product, status, body)
}

fn bad_request(state: &Shared, kind: &str, reason: &str) -> Response {
    answer(
        state,
        StatusCode::BAD_REQUEST,
        error_body(StatusCode::BAD_REQUEST, kind, reason),
    )
}

fn wrong_method(state: &Shared, path: &str, method: &Method, allowed: &str) -> Response {
    answer(
        state,
        StatusCode::METHOD_NOT_ALLOWED,
        json!({
            "error": format!("Incorrect HTTP method for uri [{path}] and method [{method}], allowed: [{allowed}]"),
            "status": 405,
        }),
    )
}

fn query_param(query: &Option<String>, name: &str) -> Option<String> {
    query.as_deref()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then(|| v.to_string())
    })
}

fn index_not_found(state: &Shared, index: &str) -> Response {
    let mut body = error_body(
        StatusCode::NOT_FOUND,
        "index_not_found_exception",
        &format!("no such index [{index}]"),
    );
    let extra = json!({
        "resource.type": "index_or_alias",
        "resource.id": index,
        "index_uuid": "_na_",
        "index": index,
    });
    for (k, v) in extra.as_object().into_iter().flatten() {
        body["error"][k] = v.clone();
        body["error"]["root_cause"][0][k] = v.clone();
    }
    answer(state, StatusCode::NOT_FOUND, body)
}

/// Documents in index order: (`_id`, `_source`, position).
pub(super) type Snapshot = Vec<(String, Value, u64)>;

/// The documents of `index` in index order.
fn snapshot(state: &Shared, index: &str) -> Option<Snapshot> {
    let s = state.lock();
    let docs = s.docs.get(index)?;
    let mut all: Vec<(String, Value, u64)> = docs
        .iter()
        .map(|(id, d)| (id.clone(), d.source.clone(), d.seq_no))
        .collect();
    all.sort_by_key(|d| d.2);
    Some(all)
}

/// `POST /<index>/_pit?keep_alive=1m`
pub(super) async fn open_pit(
    State(state): State<Shared>,
    Path(index): Path<String>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let path = format!("/{index}/_pit");
    let opts = state.lock().opts.clone();
    if let Some(r) = auth_failure(&opts, &headers, &path) {
        return r;
    }
    if method != Method::POST {
        return wrong_method(&state, &path, &method, "POST");
    }
    if query_param(&query, "keep_alive").is_none() {
        return bad_request(
            &state,
            "action_request_validation_exception",
            "Validation Failed: 1: [keep_alive] is not specified;",
        );
    }
    let Some(docs) = snapshot(&state, &index) else {
        return index_not_found(&state, &index);
    };
    let id =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes());
    state.lock().pits.insert(id.clone(), (index, docs));
    answer(
        &state,
        StatusCode::OK,
        json!({"id": id, "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0}}),
    )
}

/// `DELETE /_pit` with `{"id": ...}`.
pub(super) async fn close_pit(
    State(state): State<Shared>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let opts = state.lock().opts.clone();
    if let Some(r) = auth_failure(&opts, &headers, "/_pit") {
        return r;
    }
    if method != Method::DELETE {
        return wrong_method(&state, "/_pit", &method, "DELETE");
    }
    let id = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["id"].as_str().map(str::to_string));
    let Some(id) = id else {
        return bad_request(
            &state,
            "action_request_validation_exception",
            "Validation Failed: 1: no point-in-time id specified;",
        );
    };
    let freed = state.lock().pits.remove(&id).is_some();
    let status = if freed {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    };
    answer(
        &state,
        status,
        json!({"succeeded": true, "num_freed": u32::from(freed)}),
    )
}

/// `GET|POST /_search`.
pub(super) async fn search(
    State(state): State<Shared>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    run_search(state, None, method, headers, body)
}

/// `GET|POST /<index>/_search`.
pub(super) async fn search_index(
    State(state): State<Shared>,
    Path(index): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    run_search(state, Some(index), method, headers, body)
}

/// The one sort key emulated: `_shard_doc` or `_doc`, ascending or descending.
fn sort_of(sort: &Value) -> Result<Option<(String, bool)>, String> {
    let list = match sort {
        Value::Null => return Ok(None),
        Value::Array(a) => a.clone(),
        other => vec![other.clone()],
    };
    if list.len() != 1 {
        return Err("the emulator sorts on one key only (`_shard_doc` or `_doc`)".into());
    }
    let (field, order) = match &list[0] {
        Value::String(f) => (f.clone(), "asc".to_string()),
        Value::Object(m) if m.len() == 1 => {
            let (f, o) = m
                .iter()
                .next()
                .map(|(f, o)| (f.clone(), o.clone()))
                .unwrap_or_default();
            let order = match &o {
                Value::String(s) => s.clone(),
                Value::Object(m) => m
                    .get("order")
                    .and_then(Value::as_str)
                    .unwrap_or("asc")
                    .to_string(),
                _ => "asc".into(),
            };
            (f, order)
        }
        _ => return Err("malformed sort".into()),
    };
    if field != "_shard_doc" && field != "_doc" {
        return Err(format!("the emulator does not sort on [{field}]"));
    }
    match order.as_str() {
        "asc" => Ok(Some((field, true))),
        "desc" => Ok(Some((field, false))),
        o => Err(format!("Unknown SortOrder [{o}]")),
    }
}

fn run_search(
    state: Shared,
    index: Option<String>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = match &index {
        Some(i) => format!("/{i}/_search"),
        None => "/_search".into(),
    };
    let opts = state.lock().opts.clone();
    if let Some(r) = auth_failure(&opts, &headers, &path) {
        return r;
    }
    if method != Method::GET && method != Method::POST {
        return wrong_method(&state, &path, &method, "GET, POST");
    }
    let req: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                return bad_request(
                    &state,
                    "parsing_exception",
                    "Unknown key for a VALUE_STRING in [query].",
                )
            }
        }
    };
    let size = req["size"].as_u64().unwrap_or(10) as usize;
    if size > 10_000 {
        return bad_request(
            &state,
            "illegal_argument_exception",
            &format!(
                "Result window is too large, from + size must be less than or equal to: [10000] but was [{size}]. See the scroll api for a more efficient way to request large data sets. This limit can be set by changing the [index.max_result_window] index level setting."
            ),
        );
    }
    let pit_id = req["pit"]["id"].as_str().map(str::to_string);
    if pit_id.is_some() && index.is_some() {
        return bad_request(
            &state,
            "action_request_validation_exception",
            "Validation Failed: 1: [indices] cannot be used with point in time. Do not specify any index with point in time.;",
        );
    }
    let sort = match sort_of(&req["sort"]) {
        Ok(s) => s,
        Err(reason) => return bad_request(&state, "illegal_argument_exception", &reason),
    };
    if matches!(&sort, Some((f, _)) if f == "_shard_doc") && pit_id.is_none() {
        return bad_request(
            &state,
            "illegal_argument_exception",
            "[_shard_doc] sort field cannot be used without [point in time]",
        );
    }
    // Taken before the match: a guard in the scrutinee would be held by every arm.
    let pit = pit_id
        .as_ref()
        .and_then(|id| state.lock().pits.get(id).cloned());
    let (index_name, docs) = match (&pit_id, &index) {
        (Some(id), _) => match pit {
            Some(found) => found,
            None => {
                return answer(
                    &state,
                    StatusCode::NOT_FOUND,
                    error_body(
                        StatusCode::NOT_FOUND,
                        "search_context_missing_exception",
                        &format!("No search context found for id [{id}]"),
                    ),
                )
            }
        },
        (None, Some(i)) => match snapshot(&state, i) {
            Some(d) => (i.clone(), d),
            None => return index_not_found(&state, i),
        },
        (None, None) => {
            return bad_request(
                &state,
                "illegal_argument_exception",
                "the emulator searches one index or a point in time",
            )
        }
    };
    let after = match (&req["search_after"], &sort) {
        (Value::Null, _) => None,
        (Value::Array(a), Some(_)) if a.len() == 1 => match a[0].as_u64() {
            Some(n) => Some(n),
            None => {
                return bad_request(
                    &state,
                    "illegal_argument_exception",
                    "Failed to parse search_after value for field [_shard_doc].",
                )
            }
        },
        (Value::Array(a), Some(_)) => {
            return bad_request(
                &state,
                "illegal_argument_exception",
                &format!("search_after has {} value(s) but sort has 1.", a.len()),
            )
        }
        (_, None) => {
            return bad_request(
                &state,
                "illegal_argument_exception",
                "Sort must contain at least one field.",
            )
        }
        _ => {
            return bad_request(
                &state,
                "parsing_exception",
                "[search_after] must be an array",
            )
        }
    };
    let mut ordered = docs;
    if let Some((_, false)) = sort {
        ordered.reverse();
    }
    let ascending = !matches!(sort, Some((_, false)));
    let total = ordered.len();
    let hits: Vec<Value> = ordered
        .into_iter()
        .filter(|(_, _, n)| match after {
            None => true,
            Some(a) if ascending => *n > a,
            Some(a) => *n < a,
        })
        .take(size)
        .map(|(id, source, n)| {
            let mut hit =
                json!({"_index": index_name, "_id": id, "_score": null, "_source": source});
            if sort.is_some() {
                hit["sort"] = json!([n]);
            }
            hit
        })
        .collect();
    let mut out = json!({
        "took": 1,
        "timed_out": false,
        "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
        "hits": {"max_score": null, "hits": hits},
    });
    if req["track_total_hits"] != json!(false) {
        out["hits"]["total"] = json!({"value": total, "relation": "eq"});
    }
    if let Some(id) = pit_id {
        out["pit_id"] = json!(id);
    }
    answer(&state, StatusCode::OK, out)
}
