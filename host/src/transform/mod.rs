//! A pipeline's `transforms:`: the built-in transforms, registered by type name like
//! connectors, and the chain that runs them on each record.
//!
//! A chain parses a record once, into the [`Event`] every transform of it shares, and
//! serialises it once at the end, and only if a transform changed it. A transform that works
//! on whole batches (one from a plugin: [`Transform::per_batch`]) cuts the chain in segments:
//! the records are serialised before it, handed to it in one call per batch, and parsed again
//! by the transforms after it only if they ask.

mod add_fields;
pub mod condition;
mod drop;
mod filter;
pub mod mark;
pub mod privacy;
mod rename;
mod set;

use std::ops::Range;

use bytes::Bytes;
use sluice_sdk::transform::{self, Applied, Event, TransformError, PLUGIN_ERROR};
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
    registry.register_transform("redact", VERSION, privacy::redact::build);
    registry.register_transform("mask", VERSION, privacy::mask::build);
    registry.register_transform("hash", VERSION, privacy::hash::build);
    registry.register_transform("encrypt", VERSION, privacy::encrypt::build);
    registry.register_transform("decrypt", VERSION, privacy::decrypt::build);
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
    /// Consecutive steps that share one [`Event`] per record, and the steps that take whole
    /// batches, in order; empty when every step works record by record.
    segments: Vec<Segment>,
}

/// A run of [`Chain::steps`].
enum Segment {
    /// Steps applied to each record, sharing its parsed fields.
    Each(Range<usize>),
    /// One step that takes the batch in one call.
    Batch(usize),
}

fn segments(steps: &[Box<dyn Transform>]) -> Vec<Segment> {
    if !steps.iter().any(|s| s.per_batch()) {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut start = 0;
    for (i, s) in steps.iter().enumerate() {
        if s.per_batch() {
            if start < i {
                out.push(Segment::Each(start..i));
            }
            out.push(Segment::Batch(i));
            start = i + 1;
        }
    }
    if start < steps.len() {
        out.push(Segment::Each(start..steps.len()));
    }
    out
}

impl Chain {
    /// Builds every transform of `specs`, reporting every problem with its position and the
    /// path of its key (a plugin's transform types are first checked here).
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
                Err((path, message)) => errors.push(at.keyed_error(&path, message)),
            }
        }
        if errors.is_empty() {
            Ok(Chain {
                segments: segments(&steps),
                steps,
            })
        } else {
            Err(errors)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Applies the chain to one record (a named sink's copy), rewriting its value if a
    /// transform changed it.
    pub fn apply(&self, record: &mut Record) -> Verdict {
        if self.segments.is_empty() {
            return apply_each(&self.steps, record);
        }
        self.apply_batch(std::slice::from_mut(record))
            .pop()
            .unwrap_or(Verdict::Keep)
    }

    /// Applies the chain to a batch, one verdict per record in order, rewriting the values
    /// of kept records a transform changed. Records with a `decode_error` are left alone
    /// (verdict `Keep`: the caller dead-letters them). A failed record keeps the value it
    /// came with, for the dead-letter queue.
    pub fn apply_batch(&self, records: &mut [Record]) -> Vec<Verdict> {
        let mut verdicts: Vec<Verdict> = records.iter().map(|_| Verdict::Keep).collect();
        let live = |r: &Record, v: &Verdict| r.decode_error.is_none() && *v == Verdict::Keep;
        if self.segments.is_empty() {
            for (r, v) in records.iter_mut().zip(&mut verdicts) {
                if live(r, v) {
                    *v = apply_each(&self.steps, r);
                }
            }
            return verdicts;
        }
        // Bytes are shared: keeping the values as they came costs a reference count each.
        let originals: Vec<Bytes> = records.iter().map(|r| r.value.clone()).collect();
        for segment in &self.segments {
            match segment {
                Segment::Each(range) => {
                    let steps = &self.steps[range.clone()];
                    for (r, v) in records.iter_mut().zip(&mut verdicts) {
                        if live(r, v) {
                            *v = apply_each(steps, r);
                        }
                    }
                }
                Segment::Batch(i) => {
                    let at: Vec<usize> = (0..records.len())
                        .filter(|&k| live(&records[k], &verdicts[k]))
                        .collect();
                    if at.is_empty() {
                        break;
                    }
                    let batch: Vec<&Record> = at.iter().map(|&k| &records[k]).collect();
                    let mut applied = Vec::with_capacity(at.len());
                    self.steps[*i].apply_batch(&batch, &mut applied);
                    drop(batch);
                    if applied.len() != at.len() {
                        let e = TransformError::other(
                            PLUGIN_ERROR,
                            format!("{} results for {} records", applied.len(), at.len()),
                        );
                        for &k in &at {
                            verdicts[k] = Verdict::Fail(e.clone());
                        }
                        continue;
                    }
                    for (&k, a) in at.iter().zip(applied) {
                        match a {
                            Applied::Kept => {}
                            Applied::Changed(value) => records[k].value = value,
                            Applied::Skipped => verdicts[k] = Verdict::Skip,
                            Applied::Failed(e) => verdicts[k] = Verdict::Fail(e),
                        }
                    }
                }
            }
        }
        for ((r, v), original) in records.iter_mut().zip(&verdicts).zip(originals) {
            if matches!(v, Verdict::Fail(_)) {
                r.value = original;
            }
        }
        verdicts
    }
}

/// Applies steps that share one parsed [`Event`] to a record.
fn apply_each(steps: &[Box<dyn Transform>], record: &mut Record) -> Verdict {
    let mut event = Event::new(record);
    for step in steps {
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

    /// A transform taking whole batches, as a plugin's does: it counts its calls, sets `n` to
    /// the number of records in the batch, skips `"skip"` and fails `"fail"`.
    struct Batched(std::sync::atomic::AtomicUsize);

    impl Transform for Batched {
        fn apply(&self, _: &mut Event<'_>) -> Result<transform::Verdict, TransformError> {
            unreachable!("the chain hands a per-batch transform whole batches")
        }

        fn per_batch(&self) -> bool {
            true
        }

        fn apply_batch(&self, records: &[&Record], out: &mut Vec<Applied>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            for r in records {
                let mut v: Value = serde_json::from_slice(&r.value).unwrap();
                out.push(match v["t"].as_str() {
                    Some("skip") => Applied::Skipped,
                    Some("fail") => Applied::Failed(TransformError::other("batched.fail", "no")),
                    _ => {
                        v["n"] = records.len().into();
                        Applied::Changed(serde_json::to_vec(&v).unwrap().into())
                    }
                });
            }
        }
    }

    #[test]
    fn a_per_batch_transform_takes_the_live_records_in_one_call_between_the_others() {
        let mut r = registry();
        r.register_transform("batched", "1", |_: Value, _| {
            Ok(Box::new(Batched(Default::default())))
        });
        let specs: Vec<ConnectorSpec> = serde_yaml::from_str(
            "- { type: filter, field: t, equals: out, negate: true }\n- { type: set, field: a, value: 1 }\n- { type: batched }\n- { type: rename, from: n, to: count }",
        )
        .unwrap();
        let declared = crate::config::PipelineConfig::declared_for_tests();
        let c = Chain::compile(&specs, &r, &ctx(), &declared).unwrap_or_else(|e| panic!("{e:?}"));
        let mut undecodable = rec(json!({"t": "x"}));
        undecodable.decode_error = Some("bad".into());
        let mut records = vec![
            rec(json!({"t": "keep"})),
            rec(json!({"t": "out"})),
            rec(json!({"t": "skip"})),
            undecodable,
            rec(json!({"t": "fail"})),
        ];
        let verdicts = c.apply_batch(&mut records);
        assert_eq!(verdicts[0], Verdict::Keep);
        assert_eq!(verdicts[1], Verdict::Skip, "filtered before the batch");
        assert_eq!(verdicts[2], Verdict::Skip);
        assert_eq!(verdicts[3], Verdict::Keep, "left for the caller");
        let Verdict::Fail(e) = &verdicts[4] else {
            panic!("{verdicts:?}")
        };
        assert_eq!((e.kind(), e.to_string().as_str()), ("batched.fail", "no"));
        assert_eq!(
            records[0].json().unwrap(),
            json!({"t": "keep", "a": 1, "count": 3}),
            "the edits before, of and after the batch step, which saw three live records"
        );
        assert_eq!(records[3].value, rec(json!({"t": "x"})).value);
        assert_eq!(
            records[4].json().unwrap(),
            json!({"t": "fail"}),
            "a failed record keeps the value it came with"
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
        assert!(
            got[0].starts_with("pipelines[0].transforms[0].matches: invalid regex"),
            "{got:#?}"
        );
        assert_eq!(
            got[1],
            "pipelines[0].transforms[1]: filter needs exactly one of `equals`, `one_of`, `exists`, `matches`"
        );
        assert!(got[2].contains("did you mean `fields`?"), "{got:#?}");
        assert!(
            got[3].starts_with(
                "pipelines[0].transforms[3].type: unknown transform type `nope` (known: add_fields, decrypt, drop, encrypt, filter, hash, mask, redact, rename, set)"
            ),
            "{got:#?}"
        );
    }

    #[test]
    fn privacy_transforms_leave_no_trace_of_a_duplicate_copy() {
        std::env::set_var("SLUICE_TEST_CHAIN_KEY", "hex:0011223344556677");
        let c = chain(
            "- { type: redact, fields: [note], patterns: [us_ssn] }\n- { type: mask, fields: [card] }\n- { type: hash, fields: [id], key_env: SLUICE_TEST_CHAIN_KEY }",
        );
        let mut r = Record::new(
            &br#"{"note":"ssn 123-45-6789","note":"none","card":"4111111111111111","card":"5500000000000004","id":"c-1","id":"c-2"}"#[..],
            Origin::new("s".into(), 0, 0),
        );
        assert_eq!(c.apply(&mut r), Verdict::Keep);
        let text = String::from_utf8_lossy(&r.value).into_owned();
        for secret in ["123-45-6789", "4111", "550000000000", "c-1", "c-2"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        let v = r.json().unwrap();
        assert_eq!(v["note"], json!("none"));
        assert_eq!(v["card"], json!("************0004"));
        assert_eq!(v["id"].as_str().map(str::len), Some(64));
    }

    #[test]
    fn redact_reaches_nested_values_arrays_and_numbers_and_applies_when() {
        let c = chain("- { type: redact, fields: ['*'], when: { field: tags, equals: gdpr } }");
        let mut r = rec(json!({
            "tags": "gdpr",
            "user": {"mail": "a@b.io", "ips": ["10.0.0.1", 7]},
            "card": 4111111111111111u64,
            "n": 5
        }));
        assert_eq!(c.apply(&mut r), Verdict::Keep);
        assert_eq!(
            r.json().unwrap(),
            json!({
                "tags": "gdpr",
                "user": {"mail": "[REDACTED:email]", "ips": ["[REDACTED:ipv4]", 7]},
                "card": "[REDACTED:credit_card]",
                "n": 5
            })
        );
        let mut other = rec(json!({"tags": "other", "mail": "a@b.io"}));
        assert_eq!(c.apply(&mut other), Verdict::Keep);
        assert_eq!(
            other.json().unwrap()["mail"],
            json!("a@b.io"),
            "when: not met"
        );
        let c = chain(
            "- { type: redact, fields: [a.b], custom: { ticket: 'TCK-\\d+' }, replacement: '***' }",
        );
        let mut r = rec(json!({"a": {"b": "see TCK-123 and a@b.io"}}));
        assert_eq!(c.apply(&mut r), Verdict::Keep);
        assert_eq!(r.json().unwrap(), json!({"a": {"b": "see *** and a@b.io"}}));
        let mut missing = rec(json!({"x": 1}));
        assert_eq!(c.apply(&mut missing), Verdict::Keep);
        assert_eq!(missing.json().unwrap(), json!({"x": 1}));
    }

    #[test]
    fn mask_dead_letters_a_non_string() {
        let c = chain("- { type: mask, fields: [acct], keep_first: 1, keep_last: 2, char: '#' }");
        let mut r = rec(json!({"acct": "abcdef", "other": 1}));
        assert_eq!(c.apply(&mut r), Verdict::Keep);
        assert_eq!(r.json().unwrap()["acct"], json!("a###ef"));
        let Verdict::Fail(e) = c.apply(&mut rec(json!({"acct": 123456}))) else {
            panic!("a number is not masked");
        };
        assert_eq!(
            (e.kind(), e.to_string().as_str()),
            ("mask_error", "cannot mask `acct`: not a string")
        );
        assert_eq!(c.apply(&mut rec(json!({"other": 1}))), Verdict::Keep);
    }
}
