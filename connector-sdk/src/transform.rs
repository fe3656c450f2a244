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

pub use fields::Fields;

use crate::json::OutlineError;
use crate::Record;

/// The DLQ error kind (`__connect.errors.exception.class.name`) of the built-in failures.
pub const TRANSFORM_ERROR: &str = "transform_error";

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
/// plugin boundary: the value goes over as bytes and comes back as bytes.
pub trait Transform: Send + Sync {
    fn apply(&self, event: &mut Event<'_>) -> Result<Verdict, TransformError>;
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
