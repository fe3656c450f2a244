//! A pipeline's `transforms:`: the built-in transforms, registered by type name like
//! connectors, and the chain that runs them on each record.
//!
//! A chain parses a record once, into the [`Event`] every transform of it shares, and
//! serialises it once at the end, and only if a transform changed it.

mod add_fields;
pub mod condition;
mod drop;
mod filter;
pub mod mark;
mod rename;
mod set;

use bytes::Bytes;
use sluice_sdk::transform::{self, Event, TransformError};
use sluice_sdk::{BuildContext, Record, Registry, RegistryError, Transform};

use crate::config::{ConfigError as PositionedError, ConnectorSpec, Declared};

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Registers the built-in transforms.
pub fn register(registry: &mut Registry) {
    registry.register_transform("filter", VERSION, filter::build);
    registry.register_transform("add_fields", VERSION, add_fields::build);
    registry.register_transform("set", VERSION, set::build);
    registry.register_transform("rename", VERSION, rename::build);
    registry.register_transform("drop", VERSION, drop::build);
}

/// Builds entry `index` of a pipeline's `transforms:`. A problem comes with the path of the
/// key it is about, below the pipeline (`transforms[2].matches`), and its message.
pub fn build(
    index: usize,
    spec: &ConnectorSpec,
    registry: &Registry,
    ctx: &BuildContext,
) -> Result<Box<dyn Transform>, (String, String)> {
    let here = format!("transforms[{index}]");
    registry
        .build_transform(&spec.type_name, spec.config.clone(), ctx)
        .map_err(|e| match e {
            RegistryError::UnknownType { .. } => (format!("{here}.type"), e.to_string()),
            RegistryError::Config(c) => match c.path {
                Some(p) if p.starts_with('[') => (format!("{here}{p}"), c.message),
                Some(p) => (format!("{here}.{p}"), c.message),
                None => (here, c.message),
            },
            other => (here, other.to_string()),
        })
}

/// What a chain decided for one record.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    Keep,
    /// Filtered out: done, never sent.
    Skip,
    /// Could not be transformed (not JSON, a path blocked by a non-object): dead-letter it
    /// with this error's kind and message.
    Fail(TransformError),
}

/// The compiled `transforms:` of a pipeline.
#[derive(Default)]
pub struct Chain {
    steps: Vec<Box<dyn Transform>>,
}

impl Chain {
    /// Builds every transform of `specs`, reporting every problem with its position.
    pub fn compile(
        specs: &[ConnectorSpec],
        registry: &Registry,
        ctx: &BuildContext,
        at: &Declared,
    ) -> Result<Self, Vec<PositionedError>> {
        let mut steps = Vec::with_capacity(specs.len());
        let mut errors = Vec::new();
        for (i, spec) in specs.iter().enumerate() {
            match build(i, spec, registry, ctx) {
                Ok(t) => steps.push(t),
                Err((path, message)) => errors.push(at.error(&path, message)),
            }
        }
        if errors.is_empty() {
            Ok(Chain { steps })
        } else {
            Err(errors)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Applies the chain to a record, rewriting its value if a transform changed it.
    pub fn apply(&self, record: &mut Record) -> Verdict {
        let mut event = Event::new(record);
        for step in &self.steps {
            match step.apply(&mut event) {
                Ok(transform::Verdict::Keep) => {}
                Ok(transform::Verdict::Skip) => return Verdict::Skip,
                Err(e) => return Verdict::Fail(e),
            }
        }
        match event.finish() {
            Ok(None) => Verdict::Keep,
            Ok(Some(value)) => {
                record.value = Bytes::from(value);
                Verdict::Keep
            }
            Err(e) => Verdict::Fail(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use sluice_sdk::Origin;

    fn registry() -> Registry {
        let mut r = Registry::new();
        register(&mut r);
        r
    }

    fn ctx() -> BuildContext {
        BuildContext {
            pipeline: "p".into(),
            data_dir: std::env::temp_dir(),
        }
    }

    fn compile(yaml: &str) -> Result<Chain, Vec<PositionedError>> {
        let specs: Vec<ConnectorSpec> = serde_yaml::from_str(yaml).unwrap();
        let declared = crate::config::PipelineConfig::declared_for_tests();
        Chain::compile(&specs, &registry(), &ctx(), &declared)
    }

    fn chain(yaml: &str) -> Chain {
        compile(yaml).unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn rec(v: Value) -> Record {
        Record::new(
            serde_json::to_vec(&v).unwrap(),
            Origin::new("s".into(), 0, 0),
        )
    }

    #[test]
    fn filter_conditions() {
        let c = chain("- { type: filter, field: t, one_of: [a, b] }");
        assert_eq!(c.apply(&mut rec(json!({"t": "a"}))), Verdict::Keep);
        assert_eq!(c.apply(&mut rec(json!({"t": "c"}))), Verdict::Skip);
        let c = chain("- { type: filter, field: x.y, exists: true, negate: true }");
        assert_eq!(c.apply(&mut rec(json!({"x": {"y": 1}}))), Verdict::Skip);
        assert_eq!(c.apply(&mut rec(json!({"x": {}}))), Verdict::Keep);
        let c = chain("- { type: filter, field: sev, matches: '^(high|critical)$' }");
        assert_eq!(c.apply(&mut rec(json!({"sev": "high"}))), Verdict::Keep);
        assert_eq!(c.apply(&mut rec(json!({"sev": "low"}))), Verdict::Skip);
        let c = chain("- { type: filter, field: n, equals: 3 }");
        assert_eq!(c.apply(&mut rec(json!({"n": 3}))), Verdict::Keep);
    }

    #[test]
    fn field_edits_and_bad_json() {
        let c = chain(
            "- { type: add_fields, fields: { tenant_id: acme } }\n- { type: rename, from: classification, to: status }\n- { type: drop, fields: [internal_note] }\n- { type: set, field: source.system, value: cmmc-scout }",
        );
        let mut r = rec(json!({"classification": "x", "internal_note": "n"}));
        assert_eq!(c.apply(&mut r), Verdict::Keep);
        assert_eq!(
            r.json().unwrap(),
            json!({"tenant_id": "acme", "status": "x", "source": {"system": "cmmc-scout"}})
        );
        let mut bad = Record::new(&b"not json"[..], Origin::new("s".into(), 0, 0));
        assert!(matches!(c.apply(&mut bad), Verdict::Fail(_)));
    }

    #[test]
    fn failures_keep_their_dead_letter_kind_and_message() {
        let c = chain("- { type: set, field: a.b, value: 1 }");
        let Verdict::Fail(e) = c.apply(&mut rec(json!({"a": "text"}))) else {
            panic!("a string is in the way");
        };
        assert_eq!(e.kind(), "transform_error");
        assert_eq!(e.to_string(), "cannot set `a.b`: a parent is not an object");
        let c = chain("- { type: add_fields, fields: { a.b: 1 } }");
        let Verdict::Fail(e) = c.apply(&mut rec(json!({"a": 1}))) else {
            panic!("a number is in the way");
        };
        assert_eq!(
            e.to_string(),
            "cannot add field `a.b`: a parent is not an object"
        );
        let Verdict::Fail(e) = c.apply(&mut rec(json!([1]))) else {
            panic!("an array has no fields");
        };
        assert_eq!(
            (e.kind(), e.to_string().as_str()),
            ("transform_error", "value is not a JSON object")
        );
    }

    #[test]
    fn an_unchanged_record_keeps_its_bytes() {
        let c = chain(
            "- { type: filter, field: a, exists: true }\n- { type: drop, fields: [missing] }",
        );
        let mut r = Record::new(
            &br#"{"a": 1,  "b":[1, 2]}"#[..],
            Origin::new("s".into(), 0, 0),
        );
        assert_eq!(c.apply(&mut r), Verdict::Keep);
        assert_eq!(&r.value[..], br#"{"a": 1,  "b":[1, 2]}"#);
    }

    #[test]
    fn problems_point_at_their_entry_and_key() {
        let e = compile(
            "- { type: filter, field: x, matches: '(' }\n- { type: filter, field: x }\n- { type: drop, feilds: [x] }\n- { type: nope }",
        )
        .err()
        .unwrap();
        let got: Vec<&str> = e.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(got.len(), 4, "{got:#?}");
        assert!(got[0].starts_with("invalid regex"), "{got:#?}");
        assert_eq!(
            got[1],
            "filter needs exactly one of `equals`, `one_of`, `exists`, `matches`"
        );
        assert!(got[2].contains("did you mean `fields`?"), "{got:#?}");
        assert!(
            got[3].starts_with(
                "unknown transform type `nope` (known: add_fields, drop, filter, rename, set)"
            ),
            "{got:#?}"
        );
    }
}
