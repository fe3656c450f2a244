//! What Elasticsearch's answers mean: the whole `_bulk` request by its status (the SDK's
//! table, with a refused request dead-lettering its records), then each item of a 200 answer.

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use sluice_sdk::http::{Response, StatusClass};
use sluice_sdk::{Outcome, Outcomes, Rejection, SinkError, Verdict};

use crate::config::OpType;

/// A `_bulk` 200 answer, read in one pass. Elasticsearch writes `errors` before `items`: when
/// it is false the items are only counted, else each item's action, status and error are
/// read, in order.
pub struct BulkAnswer {
    pub errors: bool,
    pub items: Items,
}

/// The `items` of a `_bulk` answer.
pub enum Items {
    /// How many there were, all successful (`errors: false` came first).
    Counted(usize),
    /// What each answered, without the rest of its fields.
    Read(Vec<(Action, ItemResult)>),
}

impl Items {
    fn len(&self) -> usize {
        match self {
            Items::Counted(n) => *n,
            Items::Read(items) => items.len(),
        }
    }
}

impl<'de> Deserialize<'de> for BulkAnswer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(field_identifier, rename_all = "lowercase")]
        enum Field {
            Errors,
            Items,
            #[serde(other)]
            Other,
        }
        struct Answer;
        impl<'de> Visitor<'de> for Answer {
            type Value = BulkAnswer;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a bulk answer")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<BulkAnswer, A::Error> {
                let (mut errors, mut items) = (None, None);
                while let Some(field) = map.next_key::<Field>()? {
                    match field {
                        // A second `errors: true` after items only counted would mark
                        // refused items delivered: a repeated key makes the answer unreadable.
                        Field::Errors if errors.is_some() => {
                            return Err(de::Error::duplicate_field("errors"))
                        }
                        Field::Items if items.is_some() => {
                            return Err(de::Error::duplicate_field("items"))
                        }
                        Field::Errors => errors = Some(map.next_value::<bool>()?),
                        Field::Items => {
                            let read = errors != Some(false);
                            items = Some(map.next_value_seed(ItemsSeed { read })?);
                        }
                        Field::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                let errors = errors.ok_or_else(|| de::Error::missing_field("errors"))?;
                let items = items.ok_or_else(|| de::Error::missing_field("items"))?;
                Ok(BulkAnswer { errors, items })
            }
        }
        d.deserialize_map(Answer)
    }
}

/// Reads `items`: each item's action, status and error, or with `read` false only how many
/// there are.
struct ItemsSeed {
    read: bool,
}

impl<'de> DeserializeSeed<'de> for ItemsSeed {
    type Value = Items;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Items, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ItemsSeed {
    type Value = Items;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of bulk items")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Items, A::Error> {
        if !self.read {
            let mut n = 0;
            while seq.next_element::<IgnoredAny>()?.is_some() {
                n += 1;
            }
            return Ok(Items::Counted(n));
        }
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(entry) = seq.next_element::<ItemEntry>()? {
            let parts = entry
                .into_parts()
                .ok_or_else(|| de::Error::custom("bulk item without an action key"))?;
            out.push(parts);
        }
        Ok(Items::Read(out))
    }
}

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

/// The outcome of one bulk item.
///
/// * 2xx: delivered.
/// * 409 on `create`: the id exists; ids are always explicit here (a field, or the record's
///   origin with a digest of its key and value), so an earlier attempt wrote this record (or,
///   with `id_field`, a record the user declared the same): delivered.
/// * 404 on `delete` (`not_found`): nothing to delete, not a failure.
/// * 429 (`es_rejected_execution_exception`) and 5xx (`unavailable_shards_exception`...):
///   only these items are retried.
/// * anything else (`mapper_parsing_exception`, `document_parsing_exception`, 409 on `index`,
///   `index_not_found_exception`, ...): rejected with the server's type and reason.
pub fn item_outcome(op: OpType, action: Action, status: u16, error: Option<&EsError>) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered,
        409 if action == Action::Create && op == OpType::Create => Outcome::Delivered,
        404 if action == Action::Delete => Outcome::Delivered,
        429 | 500..=599 => Outcome::Retry(match error {
            Some(e) => format!("bulk item answered {status} {}: {}", e.kind, e.message()),
            None => format!("bulk item answered {status}"),
        }),
        _ => match error {
            Some(e) => Outcome::reject(format!("es.bulk.item.{}", e.kind), e.message()),
            None => Outcome::reject(
                format!("es.bulk.item.status={status}"),
                format!("bulk item answered {status} without an error"),
            ),
        },
    }
}

/// Classifies the answer to a `_bulk` request; a delivered one carries the body to read per
/// item with [`apply_items`].
///
/// Elasticsearch's own reading on top of the SDK's table: a request refused as a whole with
/// 400 (malformed) or 404 (missing index, auto-create off) dead-letters every record of it;
/// any other 4xx (405, 406, ...) means a wrong endpoint or a bug, and is fatal.
pub fn verdict(resp: Response) -> Verdict<bytes::Bytes> {
    let status = resp.status.as_u16();
    let class = StatusClass::of(status);
    if class == StatusClass::Success {
        return Verdict::Delivered(resp.body);
    }
    let (kind, message) = describe_error(&resp.body);
    let text = match &kind {
        Some(k) => format!("Elasticsearch answered {status} {k}: {message}"),
        None if message.is_empty() => format!("Elasticsearch answered {status}"),
        None => format!("Elasticsearch answered {status}: {message}"),
    };
    match class {
        StatusClass::Rejected if matches!(status, 400 | 404) => Verdict::Rejected(Rejection {
            kind: format!(
                "es.bulk.request.{}",
                kind.unwrap_or_else(|| format!("status={status}"))
            ),
            message: text,
        }),
        StatusClass::Rejected => Verdict::Failed(SinkError::Fatal(text)),
        class => Verdict::Failed(
            class
                .sink_error(text.clone(), resp.retry_after())
                .unwrap_or(SinkError::Fatal(text)),
        ),
    }
}

/// Reads a 200 `_bulk` answer: one outcome per item, for the records at `positions`.
pub fn apply_items(
    op: OpType,
    body: &[u8],
    positions: impl ExactSizeIterator<Item = usize>,
    outcomes: &mut Outcomes,
) -> Result<(), SinkError> {
    let sent = positions.len();
    let answer: BulkAnswer = serde_json::from_slice(body)
        .map_err(|e| SinkError::Fatal(format!("unreadable bulk answer: {e}")))?;
    if answer.items.len() != sent {
        return Err(SinkError::Fatal(format!(
            "bulk answer has {} items for {sent} actions; nothing can be matched",
            answer.items.len()
        )));
    }
    let items = match answer.items {
        // Without errors every item was taken, whichever of the two came first.
        Items::Read(items) if answer.errors => items,
        _ => {
            outcomes.set_each(positions, &Outcome::Delivered);
            return Ok(());
        }
    };
    for (pos, (action, result)) in positions.zip(items) {
        outcomes.set(
            pos,
            item_outcome(op, action, result.status, result.error.as_ref()),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(op: OpType, body: &str, sent: usize) -> Result<Outcomes, String> {
        let mut outcomes = Outcomes::new(sent + 1);
        // Records 1 to `sent` were sent; record 0 was not and keeps no outcome.
        apply_items(op, body.as_bytes(), 1..sent + 1, &mut outcomes).map_err(|e| e.to_string())?;
        assert!(outcomes.get(0).is_none());
        Ok(outcomes)
    }

    #[test]
    fn a_bulk_answer_is_read_item_by_item_in_order() {
        let ok = r#"{"index":{"_index":"a","_id":"1","_version":1,"result":"created","_shards":{"total":2,"successful":1,"failed":0},"_seq_no":0,"_primary_term":1,"status":201}}"#;
        let body = format!(r#"{{"took":3,"errors":false,"items":[{ok},{ok}]}}"#);
        let o = applied(OpType::Index, &body, 2).unwrap();
        assert_eq!(o.get(1), Some(&Outcome::Delivered));
        assert_eq!(o.get(2), Some(&Outcome::Delivered));

        let refused = r#"{"create":{"_index":"a","_id":"2","status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [n]"}}}"#;
        let busy = r#"{"create":{"_index":"a","_id":"3","status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}}"#;
        let exists = r#"{"create":{"_index":"a","_id":"4","status":409,"error":{"type":"version_conflict_engine_exception","reason":"exists"}}}"#;
        let created = ok.replace("\"index\"", "\"create\"");
        let body =
            format!(r#"{{"took":3,"errors":true,"items":[{created},{refused},{busy},{exists}]}}"#);
        let o = applied(OpType::Create, &body, 4).unwrap();
        assert_eq!(o.get(1), Some(&Outcome::Delivered));
        assert!(
            matches!(o.get(2), Some(Outcome::Reject(r)) if r.kind == "es.bulk.item.mapper_parsing_exception"),
            "{:?}",
            o.get(2)
        );
        assert!(matches!(o.get(3), Some(Outcome::Retry(m)) if m.contains("429")));
        assert_eq!(o.get(4), Some(&Outcome::Delivered));
    }

    #[test]
    fn items_before_errors_are_read_the_same() {
        let refused = r#"{"index":{"status":400,"error":{"type":"mapper_parsing_exception","reason":"bad"}}}"#;
        let body = format!(r#"{{"items":[{{"index":{{"status":201}}}},{refused}],"errors":true}}"#);
        let o = applied(OpType::Index, &body, 2).unwrap();
        assert_eq!(o.get(1), Some(&Outcome::Delivered));
        assert!(
            matches!(o.get(2), Some(Outcome::Reject(_))),
            "{:?}",
            o.get(2)
        );
        let body = r#"{"items":[{"index":{"status":201}}],"took":1,"errors":false}"#;
        let o = applied(OpType::Index, body, 1).unwrap();
        assert_eq!(o.get(1), Some(&Outcome::Delivered));
        let e = applied(OpType::Index, r#"{"items":[]}"#, 0).unwrap_err();
        assert!(e.contains("missing field `errors`"), "{e}");
    }

    #[test]
    fn a_bulk_answer_that_cannot_be_matched_is_fatal() {
        let ok = r#"{"index":{"status":201}}"#;
        let short = format!(r#"{{"errors":false,"items":[{ok},{ok}]}}"#);
        let e = applied(OpType::Index, &short, 3).unwrap_err();
        assert!(e.contains("2 items for 3 actions"), "{e}");
        let nameless = r#"{"errors":true,"items":[{"status":201}]}"#;
        let e = applied(OpType::Index, nameless, 1).unwrap_err();
        assert!(e.contains("without an action key"), "{e}");
        let e = applied(OpType::Index, r#"{"errors":false,"items":[{"index":"#, 1).unwrap_err();
        assert!(e.contains("unreadable bulk answer"), "{e}");
        let refused = r#"{"index":{"status":400,"error":{"type":"mapper_parsing_exception","reason":"bad"}}}"#;
        let twice = format!(r#"{{"errors":false,"items":[{refused}],"errors":true}}"#);
        let e = applied(OpType::Index, &twice, 1).unwrap_err();
        assert!(e.contains("duplicate field `errors`"), "{e}");
    }

    fn err(kind: &str) -> EsError {
        EsError {
            kind: kind.into(),
            reason: Some("why".into()),
            caused_by: None,
        }
    }

    #[test]
    fn items() {
        use Action::*;
        assert_eq!(
            item_outcome(OpType::Index, Index, 201, None),
            Outcome::Delivered
        );
        assert_eq!(
            item_outcome(
                OpType::Create,
                Create,
                409,
                Some(&err("version_conflict_engine_exception"))
            ),
            Outcome::Delivered
        );
        assert!(matches!(
            item_outcome(
                OpType::Index,
                Index,
                409,
                Some(&err("version_conflict_engine_exception"))
            ),
            Outcome::Reject(_)
        ));
        assert_eq!(
            item_outcome(OpType::Index, Delete, 404, None),
            Outcome::Delivered
        );
        assert!(matches!(
            item_outcome(
                OpType::Index,
                Index,
                429,
                Some(&err("es_rejected_execution_exception"))
            ),
            Outcome::Retry(_)
        ));
        assert!(matches!(
            item_outcome(OpType::Index, Index, 503, None),
            Outcome::Retry(_)
        ));
        assert_eq!(
            item_outcome(
                OpType::Index,
                Index,
                400,
                Some(&err("mapper_parsing_exception"))
            ),
            Outcome::reject("es.bulk.item.mapper_parsing_exception", "why")
        );
    }

    fn answer(status: u16, body: &[u8]) -> Verdict<bytes::Bytes> {
        verdict(Response {
            status: elasticsearch::http::StatusCode::from_u16(status).unwrap(),
            headers: Default::default(),
            body: bytes::Bytes::copy_from_slice(body),
        })
    }

    #[test]
    fn requests() {
        let body =
            br#"{"error":{"type":"es_rejected_execution_exception","reason":"busy"},"status":429}"#;
        assert!(matches!(
            answer(429, body),
            Verdict::Failed(SinkError::Unavailable { .. })
        ));
        // A request timeout is an outage like a 503, never a reason to restart the pipeline.
        for status in [408, 425, 500, 503] {
            assert!(matches!(
                answer(status, b""),
                Verdict::Failed(SinkError::Unavailable { .. })
            ));
        }
        assert!(matches!(
            answer(413, b""),
            Verdict::Failed(SinkError::TooLarge(_))
        ));
        for status in [401, 403, 407] {
            assert!(matches!(
                answer(status, b""),
                Verdict::Failed(SinkError::Unauthorized(_))
            ));
        }
        for status in [406, 501, 301] {
            assert!(matches!(
                answer(status, b""),
                Verdict::Failed(SinkError::Fatal(_))
            ));
        }
        let body = br#"{"error":{"type":"illegal_argument_exception","reason":"The bulk request must be terminated by a newline [\\n]"},"status":400}"#;
        match answer(400, body) {
            Verdict::Rejected(r) => {
                assert_eq!(r.kind, "es.bulk.request.illegal_argument_exception");
                assert!(r.message.contains("terminated by a newline"));
            }
            _ => panic!("400 must reject"),
        }
        assert!(matches!(answer(200, b"{}"), Verdict::Delivered(b) if &b[..] == b"{}"));
    }
}
