//! The `_bulk` answer and Elasticsearch error bodies.

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;

/// Top of a `_bulk` 200 answer; `items` is read only as far as needed.
#[derive(Deserialize)]
pub struct BulkHead<'a> {
    pub errors: bool,
    #[serde(borrow)]
    pub items: &'a RawValue,
}

/// Counts items without reading them (the answer when `errors` is false).
pub type ItemCount = Vec<IgnoredAny>;

/// One element of `items`: a single key naming the action.
#[derive(Deserialize)]
pub struct ItemEntry {
    index: Option<ItemResult>,
    create: Option<ItemResult>,
    update: Option<ItemResult>,
    delete: Option<ItemResult>,
}

/// The bulk action an item answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Index,
    Create,
    Update,
    Delete,
}

impl ItemEntry {
    pub fn into_parts(self) -> Option<(Action, ItemResult)> {
        self.index
            .map(|r| (Action::Index, r))
            .or_else(|| self.create.map(|r| (Action::Create, r)))
            .or_else(|| self.update.map(|r| (Action::Update, r)))
            .or_else(|| self.delete.map(|r| (Action::Delete, r)))
    }
}

#[derive(Deserialize)]
pub struct ItemResult {
    pub status: u16,
    #[serde(default)]
    pub error: Option<EsError>,
}

/// Elasticsearch's error object (`type`, `reason`, `caused_by`).
#[derive(Debug, Deserialize)]
pub struct EsError {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub caused_by: Option<Box<EsError>>,
}

impl EsError {
    /// `reason`, followed by the first cause, as the server worded them.
    pub fn message(&self) -> String {
        let mut m = self.reason.clone().unwrap_or_else(|| self.kind.clone());
        if let Some(c) = &self.caused_by {
            m.push_str(" (caused by ");
            m.push_str(&c.kind);
            if let Some(r) = &c.reason {
                m.push_str(": ");
                m.push_str(r);
            }
            m.push(')');
        }
        m
    }
}

/// Whole-request error body `{"error": {...}, "status": N}`; `error` is a plain string on
/// some proxies and old versions.
#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorField,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ErrorField {
    Object(EsError),
    Text(String),
}

/// `(type, message)` of an error answer, falling back to the start of the raw body.
pub fn describe_error(body: &[u8]) -> (Option<String>, String) {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody {
            error: ErrorField::Object(e),
        }) => {
            let m = e.message();
            (Some(e.kind), m)
        }
        Ok(ErrorBody {
            error: ErrorField::Text(t),
        }) => (None, t),
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text: String = text.chars().take(300).collect();
            (None, text)
        }
    }
}
