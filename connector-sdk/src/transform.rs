//! Transforms: one record in, zero or one out.
//!
//! A pipeline's `transforms:` run in order on each record before it is batched for the sink.
//! Each entry is a [`Transform`] built by a factory registered under its type name
//! ([`crate::Registry::register_transform`]), the same way sources and sinks are.
//!
//! A chain shares one [`Event`] per record: the value is parsed into [`Fields`] the first time
//! a transform asks for them, every transform edits that same parsed form, and the host
//! serialises it once at the end of the chain, and only if something changed.
//!
//! ## A minimal transform
//!
//! ```
//! use serde::Deserialize;
//! use sluice_sdk::transform::{Event, Transform, TransformError, Verdict};
//! use sluice_sdk::Registry;
//!
//! #[derive(Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct UppercaseConfig {
//!     field: String,
//! }
//!
//! struct Uppercase {
//!     field: String,
//! }
//!
//! impl Transform for Uppercase {
//!     fn apply(&self, event: &mut Event<'_>) -> Result<Verdict, TransformError> {
//!         let fields = event.fields()?;
//!         let upper = match fields.get(&self.field).as_deref().and_then(|v| v.as_str()) {
//!             Some(text) => text.to_uppercase(),
//!             None => return Ok(Verdict::Keep),
//!         };
//!         if !fields.set(&self.field, upper.into()) {
//!             return Err(TransformError::blocked("set", &self.field));
//!         }
//!         Ok(Verdict::Keep)
//!     }
//! }
//!
//! let mut registry = Registry::new();
//! registry.register_transform("uppercase", "0.1.0", |cfg: UppercaseConfig, _ctx| {
//!     Ok(Box::new(Uppercase { field: cfg.field }))
//! });
//! assert!(registry.transform("uppercase").is_some());
//! ```

mod fields;

use std::borrow::Cow;

use bytes::Bytes;

pub use fields::Fields;

use crate::json::OutlineError;
use crate::Record;

/// The DLQ error kind (`__connect.errors.exception.class.name`) of the built-in failures.
pub const TRANSFORM_ERROR: &str = "transform_error";
/// The DLQ error kind of a record on which a transform in a plugin panicked.
pub const TRANSFORM_PANIC: &str = "transform_panic";
/// The DLQ error kind of the records of a batch a transform in a plugin could not answer for
/// at all (a broken plugin library, never a transform's own verdict).
pub const PLUGIN_ERROR: &str = "plugin_error";

/// What a transform decided for a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Pass the record on to the next transform, then to the sink.
    Keep,
    /// Filter the record out: it is done, counted as filtered and never sent. The transforms
    /// after this one do not see it.
    Skip,
}

/// Why a transform could not process a record. The host dead-letters the record with stage
/// `TRANSFORMATION`, [`kind`](Self::kind) as the error kind and the message; the chain stops
/// there. Only the message's first line is ever logged, so a message that quotes the record
/// must keep the quote on later lines.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransformError {
    /// The value is not a JSON object, so it has no fields.
    #[error(transparent)]
    Value(#[from] OutlineError),
    /// A field could not be written: a value that is not an object is in the way.
    #[error("cannot {action} `{path}`: a parent is not an object")]
    Blocked { action: &'static str, path: String },
    /// The edited value could not be serialised again.
    #[error("cannot serialise: {0}")]
    Serialise(String),
    /// A transform's own reason, under a stable kind of its choosing (`decrypt.unknown_key`).
    #[error("{message}")]
    Other {
        kind: Cow<'static, str>,
        message: String,
    },
}

impl TransformError {
    /// A field edit (`action`, e.g. `set`) at `path` was blocked by a non-object.
    pub fn blocked(action: &'static str, path: &str) -> Self {
        TransformError::Blocked {
            action,
            path: path.to_string(),
        }
    }

    /// A failure with its own kind, for what the other variants do not say.
    pub fn other(kind: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        TransformError::Other {
            kind: kind.into(),
            message: message.into(),
        }
    }

    /// The error kind recorded in the dead-letter queue: [`TRANSFORM_ERROR`] for the
    /// variants every transform shares, the transform's own for [`TransformError::Other`].
    pub fn kind(&self) -> &str {
        match self {
            TransformError::Other { kind, .. } => kind,
            _ => TRANSFORM_ERROR,
        }
    }
}

/// One record on its way through a chain of transforms.
///
/// The record itself (key, headers, timestamp, origin, the value as read) stays readable
/// throughout; the value's fields are parsed on the first call to [`fields`](Self::fields)
/// and shared by every transform after it.
pub struct Event<'a> {
    record: &'a Record,
    fields: Option<Fields<'a>>,
}

impl<'a> Event<'a> {
    #[inline]
    pub fn new(record: &'a Record) -> Self {
        Event {
            record,
            fields: None,
        }
    }

    /// The record as the source produced it; edits made through [`fields`](Self::fields) are
    /// not visible here.
    #[inline]
    pub fn record(&self) -> &'a Record {
        self.record
    }

    /// The value's fields, parsed on first use. Fails when the value is not a JSON object.
    #[inline]
    pub fn fields(&mut self) -> Result<&mut Fields<'a>, TransformError> {
        let record: &'a Record = self.record;
        match &mut self.fields {
            Some(f) => Ok(f),
            none => Ok(none.insert(Fields::parse(&record.value)?)),
        }
    }

    /// Replaces the value as a whole with `value`, a JSON object: what a transform that
    /// rewrites records elsewhere (a plugin) hands back. Later transforms see its fields.
    pub fn replace_value(&mut self, value: &[u8]) -> Result<(), TransformError> {
        self.fields = Some(Fields::replacing(value)?);
        Ok(())
    }

    /// Whether a transform edited the value.
    #[inline]
    pub fn is_changed(&self) -> bool {
        self.fields.as_ref().is_some_and(Fields::is_changed)
    }

    /// Ends the chain: the new value if a transform edited it, `None` if the record's value
    /// stands as it is.
    #[inline]
    pub fn finish(self) -> Result<Option<Vec<u8>>, TransformError> {
        match self.fields {
            Some(f) if f.is_changed() => {
                let mut out = Vec::with_capacity(self.record.value.len() + 64);
                f.write(&mut out)
                    .map_err(|e| TransformError::Serialise(e.to_string()))?;
                Ok(Some(out))
            }
            _ => Ok(None),
        }
    }
}

/// A transform: looks at one record and keeps it (possibly edited), filters it out, or fails.
///
/// The host calls `apply` from the pipeline's source task, record by record in source order,
/// so it runs on the hot path: no I/O, no blocking, no allocation it can avoid. A transform
/// with state (counters, a key cache) keeps it behind interior mutability.
///
/// The signature uses no host type and the trait is object-safe, so a transform can cross a
/// plugin boundary: a plugin exports it like a source or a sink, and the host hands it whole
/// batches ([`apply_batch`](Self::apply_batch)), one call across the boundary per batch.
pub trait Transform: Send + Sync {
    fn apply(&self, event: &mut Event<'_>) -> Result<Verdict, TransformError>;

    /// Whether the host's chain should hand this transform whole batches through
    /// [`apply_batch`](Self::apply_batch) instead of one [`Event`] at a time. True for a
    /// transform that lives in a plugin, where a call per record would cost a crossing per
    /// record; a transform written against this trait leaves the default.
    fn per_batch(&self) -> bool {
        false
    }

    /// Applies the transform to each record of a batch, pushing one [`Applied`] per record
    /// onto `out`, in order. The default runs [`apply`](Self::apply) on each record by itself
    /// ([`apply_one`]).
    fn apply_batch(&self, records: &[&Record], out: &mut Vec<Applied>) {
        out.extend(records.iter().map(|r| apply_one(self, r)));
    }
}

/// What a transform did to one record of a batch ([`Transform::apply_batch`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Applied {
    /// Passed on with its value as it was.
    Kept,
    /// Passed on with this new value.
    Changed(Bytes),
    /// Filtered out ([`Verdict::Skip`]).
    Skipped,
    /// Failed: the host dead-letters the record with the error's kind and message.
    Failed(TransformError),
}

/// Runs `transform` on one record by itself: parses it if the transform asks for fields, and
/// serialises it again only if the transform changed it.
pub fn apply_one<T: Transform + ?Sized>(transform: &T, record: &Record) -> Applied {
    let mut event = Event::new(record);
    match transform.apply(&mut event) {
        Ok(Verdict::Keep) => match event.finish() {
            Ok(None) => Applied::Kept,
            Ok(Some(value)) => Applied::Changed(Bytes::from(value)),
            Err(e) => Applied::Failed(e),
        },
        Ok(Verdict::Skip) => Applied::Skipped,
        Err(e) => Applied::Failed(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Origin;

    fn record(value: &'static [u8]) -> Record {
        Record::new(value, Origin::new("s".into(), 0, 0))
    }

    #[test]
    fn an_event_is_parsed_once_and_written_only_when_changed() {
        let r = record(br#"{"a": 1}"#);
        let mut e = Event::new(&r);
        assert_eq!(e.fields().unwrap().get("a").as_deref(), Some(&1.into()));
        assert!(!e.is_changed());
        assert_eq!(e.finish(), Ok(None));

        let mut e = Event::new(&r);
        assert!(e.fields().unwrap().set("b", "x".into()));
        assert!(e.fields().unwrap().contains("b"), "the same parsed fields");
        assert_eq!(
            e.finish().unwrap().as_deref(),
            Some(&br#"{"a":1,"b":"x"}"#[..])
        );
    }

    #[test]
    fn a_batch_is_applied_record_by_record_by_default() {
        struct SetB;
        impl Transform for SetB {
            fn apply(&self, event: &mut Event<'_>) -> Result<Verdict, TransformError> {
                let fields = event.fields()?;
                if fields.contains("skip") {
                    return Ok(Verdict::Skip);
                }
                if fields.contains("b") {
                    return Ok(Verdict::Keep);
                }
                fields.set("b", "x".into());
                Ok(Verdict::Keep)
            }
        }
        let rs = [
            record(br#"{"a":1}"#),
            record(br#"{"b":1}"#),
            record(br#"{"skip":1}"#),
            record(b"[1]"),
        ];
        let refs: Vec<&Record> = rs.iter().collect();
        let mut out = Vec::new();
        assert!(!SetB.per_batch());
        SetB.apply_batch(&refs, &mut out);
        assert_eq!(
            out,
            [
                Applied::Changed(Bytes::from_static(br#"{"a":1,"b":"x"}"#)),
                Applied::Kept,
                Applied::Skipped,
                Applied::Failed(TransformError::Value(OutlineError::NotAnObject)),
            ]
        );
    }

    #[test]
    fn a_replaced_value_is_what_later_transforms_see_and_write() {
        let r = record(br#"{"a":1}"#);
        let mut e = Event::new(&r);
        e.replace_value(br#"{"b":2,"a":3}"#).unwrap();
        assert!(e.is_changed());
        assert_eq!(e.fields().unwrap().get("a").as_deref(), Some(&3.into()));
        assert_eq!(
            e.finish().unwrap().as_deref(),
            Some(&br#"{"b":2,"a":3}"#[..])
        );
        let mut e = Event::new(&r);
        assert_eq!(
            e.replace_value(b"[1]"),
            Err(TransformError::Value(OutlineError::NotAnObject))
        );
    }

    #[test]
    fn errors_carry_the_dead_letter_kind_and_message() {
        let r = record(b"[1]");
        let err = Event::new(&r).fields().err().unwrap();
        assert_eq!(err.kind(), TRANSFORM_ERROR);
        assert_eq!(err.to_string(), "value is not a JSON object");
        let err = TransformError::blocked("set", "a.b");
        assert_eq!(
            err.to_string(),
            "cannot set `a.b`: a parent is not an object"
        );
        let err = TransformError::other("decrypt.unknown_key", "no key `k2`");
        assert_eq!(
            (err.kind(), err.to_string().as_str()),
            ("decrypt.unknown_key", "no key `k2`")
        );
    }
}
