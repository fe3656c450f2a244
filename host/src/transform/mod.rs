//! Record transforms: filter, add_fields, set, rename, drop. They work on the parsed JSON
//! value; a chain parses a record once and serialises it once, and only if a step changed it.

pub mod condition;
pub mod mark;
mod raw;

use bytes::Bytes;
use serde_json::Value;
use sluice_sdk::Record;

use condition::Condition;
use raw::RawObject;

use crate::config::ConfigError as PositionedError;
use crate::config::{Declared, TransformConfig};

enum Step {
    Filter(Condition),
    AddFields {
        fields: Vec<(String, Value)>,
        overwrite: bool,
    },
    Set {
        field: String,
        value: Value,
    },
    Rename {
        from: String,
        to: String,
    },
    Drop {
        fields: Vec<String>,
    },
}

/// What a chain decided for one record.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    Keep,
    /// Filtered out: done, never sent.
    Skip,
    /// Could not be transformed (not JSON, a path blocked by a non-object): dead-letter it.
    Fail(String),
}

/// The compiled `transforms:` of a pipeline.
#[derive(Default)]
pub struct Chain {
    steps: Vec<Step>,
}

impl Chain {
    pub fn compile(cfgs: &[TransformConfig], at: &Declared) -> Result<Self, Vec<PositionedError>> {
        let mut steps = Vec::new();
        let mut errors = Vec::new();
        for (i, c) in cfgs.iter().enumerate() {
            let here = |k: &str, m: String| at.error(&format!("transforms[{i}].{k}"), m);
            match c {
                TransformConfig::Filter(f) => match Condition::compile(f) {
                    Ok(c) => steps.push(Step::Filter(c)),
                    Err(("", m)) => {
                        errors.push(at.error(&format!("transforms[{i}]"), format!("filter {m}")))
                    }
                    Err((k, m)) => errors.push(here(k, m)),
                },
                TransformConfig::AddFields(a) => steps.push(Step::AddFields {
                    fields: a
                        .fields
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                    overwrite: a.overwrite,
                }),
                TransformConfig::Set(s) => steps.push(Step::Set {
                    field: s.field.clone(),
                    value: s.value.clone(),
                }),
                TransformConfig::Rename(r) => steps.push(Step::Rename {
                    from: r.from.clone(),
                    to: r.to.clone(),
                }),
                TransformConfig::Drop(d) => steps.push(Step::Drop {
                    fields: d.fields.clone(),
                }),
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

    /// Applies the chain to a record, rewriting its value if a step changed it.
    pub fn apply(&self, record: &mut Record) -> Verdict {
        let mut obj = match RawObject::parse(&record.value) {
            Ok(o) => o,
            Err(e) => return Verdict::Fail(e),
        };
        let mut changed = false;
        for step in &self.steps {
            match step {
                Step::Filter(c) => {
                    if !c.holds(Some(&obj)) {
                        return Verdict::Skip;
                    }
                }
                Step::AddFields { fields, overwrite } => {
                    for (k, v) in fields {
                        if !*overwrite && obj.contains(k) {
                            continue;
                        }
                        if !obj.set(k, v.clone()) {
                            return Verdict::Fail(format!(
                                "cannot add field `{k}`: a parent is not an object"
                            ));
                        }
                        changed = true;
                    }
                }
                Step::Set { field, value } => {
                    if !obj.set(field, value.clone()) {
                        return Verdict::Fail(format!(
                            "cannot set `{field}`: a parent is not an object"
                        ));
                    }
                    changed = true;
                }
                Step::Rename { from, to } => {
                    if let Some(v) = obj.remove(from) {
                        if !obj.set(to, v) {
                            return Verdict::Fail(format!(
                                "cannot rename to `{to}`: a parent is not an object"
                            ));
                        }
                        changed = true;
                    }
                }
                Step::Drop { fields } => {
                    for f in fields {
                        changed |= obj.remove(f).is_some();
                    }
                }
            }
        }
        if changed {
            let mut out = Vec::with_capacity(record.value.len() + 64);
            if let Err(e) = obj.write(&mut out) {
                return Verdict::Fail(format!("cannot serialise: {e}"));
            }
            drop(obj);
            record.value = Bytes::from(out);
        }
        Verdict::Keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sluice_sdk::Origin;

    fn chain(yaml: &str) -> Chain {
        let cfgs: Vec<TransformConfig> = serde_yaml::from_str(yaml).unwrap();
        let declared = crate::config::PipelineConfig::declared_for_tests();
        Chain::compile(&cfgs, &declared).unwrap_or_else(|e| panic!("{e:?}"))
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
}
