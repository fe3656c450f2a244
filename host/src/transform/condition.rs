//! The field conditions (`equals`, `one_of`, `exists`, `matches`, `negate`), shared by the
//! `filter` transform and the `route:` of a named sink so both decide alike.

use std::borrow::Cow;
use std::cell::OnceCell;

use regex::Regex;
use serde::Deserialize;
use serde_json::Value;
use sluice_sdk::json::{self, scan_members, MemberSpans};
use sluice_sdk::transform::Fields;
use sluice_sdk::ConfigError;

use crate::config::RouteConfig;

/// A condition on one field: exactly one of `equals`, `one_of`, `exists`, `matches`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionConfig {
    /// Dotted path of the field tested.
    pub field: String,
    #[serde(default)]
    pub equals: Option<Value>,
    #[serde(default)]
    pub one_of: Option<Vec<Value>>,
    /// `true`: the field is present and not null; `false`: it is absent or null.
    #[serde(default)]
    pub exists: Option<bool>,
    /// A regular expression searched in the field's text (strings, numbers, booleans).
    #[serde(default)]
    pub matches: Option<String>,
    /// Invert the outcome.
    #[serde(default)]
    pub negate: bool,
}

enum Test {
    Equals(Value),
    OneOf(Vec<Value>),
    Exists(bool),
    Matches(Regex),
}

/// A compiled [`ConditionConfig`].
pub struct Condition {
    field: String,
    test: Test,
    negate: bool,
    /// For `equals`/`one_of`: the JSON text of each string wanted, compared with a top-level
    /// field's raw text without parsing it (a JSON string without escapes has one spelling).
    texts: Vec<String>,
}

impl Condition {
    /// Compiles a condition; `what` (`filter`, `route`) names it in the message when it does
    /// not say exactly one test.
    pub fn compile(cfg: ConditionConfig, what: &str) -> Result<Self, ConfigError> {
        let test = match (cfg.equals, cfg.one_of, cfg.exists, cfg.matches) {
            (Some(v), None, None, None) => Test::Equals(v),
            (None, Some(vs), None, None) => Test::OneOf(vs),
            (None, None, Some(b), None) => Test::Exists(b),
            (None, None, None, Some(re)) => Test::Matches(
                Regex::new(&re)
                    .map_err(|e| ConfigError::at("matches", format!("invalid regex: {e}")))?,
            ),
            _ => {
                return Err(ConfigError::new(format!(
                    "{what} needs exactly one of `equals`, `one_of`, `exists`, `matches`"
                )))
            }
        };
        let wanted: &[Value] = match &test {
            Test::Equals(v) => std::slice::from_ref(v),
            Test::OneOf(vs) => vs,
            _ => &[],
        };
        let texts = wanted
            .iter()
            .filter_map(Value::as_str)
            .filter_map(|s| serde_json::to_string(s).ok())
            .collect();
        Ok(Condition {
            field: cfg.field,
            test,
            negate: cfg.negate,
            texts,
        })
    }

    /// The decision from a top-level field's raw text alone, when that is certain: a string
    /// without escapes (or `null`, or absent). `None`: parse the value.
    fn quick(&self, fields: &Fields<'_>) -> Option<bool> {
        if self.field.contains('.') {
            return None;
        }
        let Some(raw) = fields.raw(&self.field) else {
            // Absent, or replaced by a transform (then parsed below).
            return (!fields.contains(&self.field)).then_some(match &self.test {
                Test::Exists(want) => !*want,
                _ => false,
            });
        };
        let plain = raw.len() >= 2 && raw.starts_with('"') && !raw.contains('\\');
        match &self.test {
            Test::Exists(want) => Some((raw != "null") == *want),
            Test::Equals(_) | Test::OneOf(_) if plain => Some(self.texts.iter().any(|t| t == raw)),
            Test::Matches(re) if plain => Some(re.is_match(&raw[1..raw.len() - 1])),
            _ => None,
        }
    }

    /// The decision from the raw text of a top-level member found by [`scan_members`]
    /// (`None`: no such member), when that is certain; `None`: parse the record.
    fn quick_scanned(&self, raw: Option<&[u8]>) -> Option<bool> {
        let Some(raw) = raw else {
            return Some(match &self.test {
                Test::Exists(want) => !*want,
                _ => false,
            });
        };
        let plain = raw.len() >= 2 && raw[0] == b'"' && !raw.contains(&b'\\');
        match &self.test {
            Test::Exists(want) if raw == b"null" || plain => Some((raw != b"null") == *want),
            Test::Equals(_) | Test::OneOf(_) if plain => {
                Some(self.texts.iter().any(|t| t.as_bytes() == raw))
            }
            Test::Matches(re) if plain => std::str::from_utf8(&raw[1..raw.len() - 1])
                .ok()
                .map(|text| re.is_match(text)),
            _ => None,
        }
    }

    /// Whether the record being routed meets the condition: from its scanned members when
    /// they decide, else from its parsed fields.
    fn decide(&self, record: &Routed<'_>) -> bool {
        if record.scanned && !self.field.contains('.') {
            if let Some(hit) = self.quick_scanned(record.member(&self.field)) {
                return hit != self.negate;
            }
        }
        self.holds(record.fields())
    }

    /// Whether the record's fields (`None` when its value is not a JSON object) meet the
    /// condition.
    pub fn holds(&self, fields: Option<&Fields<'_>>) -> bool {
        if let Some(hit) = fields.and_then(|f| self.quick(f)) {
            return hit != self.negate;
        }
        let found: Option<Cow<'_, Value>> = fields.and_then(|f| f.get(&self.field));
        let found = found.as_deref();
        let hit = match &self.test {
            Test::Equals(v) => found == Some(v),
            Test::OneOf(vs) => found.is_some_and(|f| vs.contains(f)),
            Test::Exists(want) => found.is_some_and(|f| !f.is_null()) == *want,
            Test::Matches(re) => found
                .and_then(json::as_text)
                .is_some_and(|t| re.is_match(&t)),
        };
        hit != self.negate
    }
}

/// A compiled `route:`: one condition, or `all`/`any` of nested routes.
pub enum Route {
    Cond(Condition),
    All(Vec<Route>),
    Any(Vec<Route>),
}

impl Route {
    /// Compiles a route; problems are (path below the route, message).
    pub fn compile(r: &RouteConfig) -> Result<Self, Vec<(String, String)>> {
        let nested = |list: &[RouteConfig], key: &str| {
            let mut out = Vec::new();
            let mut errors = Vec::new();
            if list.is_empty() {
                errors.push((key.to_string(), format!("`{key}` needs at least one route")));
            }
            for (i, item) in list.iter().enumerate() {
                match Route::compile(item) {
                    Ok(r) => out.push(r),
                    Err(e) => errors.extend(e.into_iter().map(|(p, m)| {
                        let here = format!("{key}[{i}]");
                        (
                            if p.is_empty() {
                                here
                            } else {
                                format!("{here}.{p}")
                            },
                            m,
                        )
                    })),
                }
            }
            (out, errors)
        };
        let leaf = r.field.is_some()
            || r.equals.is_some()
            || r.one_of.is_some()
            || r.exists.is_some()
            || r.matches.is_some();
        match (&r.all, &r.any, leaf) {
            (Some(list), None, false) => {
                let (out, e) = nested(list, "all");
                if e.is_empty() {
                    Ok(Route::All(out))
                } else {
                    Err(e)
                }
            }
            (None, Some(list), false) => {
                let (out, e) = nested(list, "any");
                if e.is_empty() {
                    Ok(Route::Any(out))
                } else {
                    Err(e)
                }
            }
            (None, None, true) => {
                let Some(field) = &r.field else {
                    return Err(vec![(String::new(), "a route condition needs `field`".into())]);
                };
                let f = ConditionConfig {
                    field: field.clone(),
                    equals: r.equals.clone(),
                    one_of: r.one_of.clone(),
                    exists: r.exists,
                    matches: r.matches.clone(),
                    negate: r.negate,
                };
                Condition::compile(f, "route")
                    .map(Route::Cond)
                    .map_err(|e| vec![(e.path.unwrap_or_default(), e.message)])
            }
            _ => Err(vec![(
                String::new(),
                "a route is one condition (`field` with `equals`, `one_of`, `exists` or `matches`), or `all: [...]`, or `any: [...]`".into(),
            )]),
        }
    }

    /// Whether the record goes this way. `negate` on `all`/`any` is not offered: negate the
    /// conditions inside.
    fn matches(&self, record: &Routed<'_>) -> bool {
        match self {
            Route::Cond(c) => c.decide(record),
            Route::All(rs) => rs.iter().all(|r| r.matches(record)),
            Route::Any(rs) => rs.iter().any(|r| r.matches(record)),
        }
    }
}

/// A record being routed. Its top-level members are located once, without parsing
/// ([`scan_members`]); a condition that needs more (a dotted path, a number, a string with
/// escapes) has the record parsed, once for all routes.
struct Routed<'a> {
    value: &'a [u8],
    spans: &'a MemberSpans,
    scanned: bool,
    fields: OnceCell<Option<Fields<'a>>>,
}

impl<'a> Routed<'a> {
    /// The raw text of the last member named `name` (readers take the last copy).
    fn member(&self, name: &str) -> Option<&'a [u8]> {
        let (_, v) = self
            .spans
            .iter()
            .rev()
            .find(|(k, _)| &self.value[k.clone()] == name.as_bytes())?;
        Some(&self.value[v.clone()])
    }

    fn fields(&self) -> Option<&Fields<'a>> {
        self.fields
            .get_or_init(|| Fields::parse(self.value).ok())
            .as_ref()
    }
}

/// Decides, for each route (`None`: takes every record), whether the record goes that way.
/// A value that is not a JSON object has no fields. `spans` is scratch space kept by the
/// caller between records.
pub fn route_all(
    routes: &[Option<&Route>],
    value: &[u8],
    spans: &mut MemberSpans,
    hits: &mut Vec<bool>,
) {
    hits.clear();
    if routes.iter().all(Option::is_none) {
        hits.resize(routes.len(), true);
        return;
    }
    let scanned = scan_members(value, spans);
    let record = Routed {
        value,
        spans,
        scanned,
        fields: OnceCell::new(),
    };
    hits.extend(routes.iter().map(|r| r.is_none_or(|r| r.matches(&record))));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(yaml: &str) -> Route {
        let cfg: RouteConfig = serde_yaml::from_str(yaml).unwrap();
        Route::compile(&cfg).unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn hits(routes: &[Option<&Route>], value: &str) -> Vec<bool> {
        let mut out = Vec::new();
        route_all(routes, value.as_bytes(), &mut MemberSpans::new(), &mut out);
        out
    }

    #[test]
    fn conditions_all_and_any_decide_per_sink() {
        let gaps = route("{ field: event_type, one_of: [gap.identified] }");
        let high = route(
            "{ all: [ { field: severity, matches: '^(high|critical)$' }, { field: tenant, exists: true } ] }",
        );
        let either = route(
            "{ any: [ { field: event_type, equals: x }, { field: muted, equals: true, negate: true } ] }",
        );
        let routes = [Some(&gaps), Some(&high), Some(&either), None];
        assert_eq!(
            hits(
                &routes,
                r#"{"event_type":"gap.identified","severity":"high","tenant":"a"}"#
            ),
            [true, true, true, true]
        );
        assert_eq!(
            hits(
                &routes,
                r#"{"event_type":"y","severity":"high","muted":true}"#
            ),
            [false, false, false, true]
        );
        // A string with escapes, and a number, are read parsed.
        let dotted = route(r#"{ field: t, one_of: ["a.b", 3] }"#);
        let exact = [Some(&dotted)];
        assert_eq!(hits(&exact, r#"{"t":"a\u002eb"}"#), [true]);
        assert_eq!(hits(&exact, r#"{"t":3.0}"#), [false]);
        assert_eq!(hits(&exact, r#"{"t":3}"#), [true]);
        assert_eq!(hits(&exact, r#"{"t":"a.c"}"#), [false]);
        // Not JSON: no field exists, so only routes that ask for an absence take it.
        assert_eq!(hits(&routes, "not json"), [false, false, true, true]);
    }

    #[test]
    fn a_route_is_one_condition_or_a_list() {
        let bad = |yaml: &str| {
            let cfg: RouteConfig = serde_yaml::from_str(yaml).unwrap();
            Route::compile(&cfg).err().unwrap_or_default()
        };
        assert_eq!(
            bad("{ field: a }")[0].1,
            "route needs exactly one of `equals`, `one_of`, `exists`, `matches`"
        );
        assert!(bad("{ field: a, equals: 1, all: [] }")[0]
            .1
            .contains("one condition"));
        assert_eq!(bad("{ all: [] }")[0].0, "all");
        let e = bad("{ any: [ { field: a, equals: 1 }, { field: b, matches: '(' } ] }");
        assert_eq!(e[0].0, "any[1].matches");
        assert!(e[0].1.starts_with("invalid regex"));
    }
}
