//! One event: its tenant field read without building the whole value, and the token's
//! tenant written into it when it names none.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

/// What an event says about its tenant.
#[derive(Debug, PartialEq, Eq)]
pub enum Tenant {
    /// No tenant field; `empty` when the object has no field at all.
    Missing {
        empty: bool,
    },
    Named(String),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    #[error("an event must be a JSON object")]
    NotObject,
    #[error("the tenant field `{0}` must be a string")]
    TenantNotString(String),
}

/// Reads the tenant field of an event (a JSON object).
pub fn tenant(raw: &str, field: &str) -> Result<Tenant, EventError> {
    if !raw.starts_with('{') {
        return Err(EventError::NotObject);
    }
    let mut de = serde_json::Deserializer::from_str(raw);
    de.deserialize_map(Probe { field })
        .map_err(|_| EventError::TenantNotString(field.to_string()))
}

/// Writes `raw` to `out` with `"field":"tenant"` as its first member.
pub fn stamp(out: &mut Vec<u8>, raw: &str, field: &str, tenant: &str, empty: bool) {
    let body = &raw[1..];
    out.push(b'{');
    sluice_sdk::json::write_str(out, field);
    out.push(b':');
    sluice_sdk::json::write_str(out, tenant);
    if !empty {
        out.push(b',');
    }
    out.extend_from_slice(body.as_bytes());
}

struct Probe<'f> {
    field: &'f str,
}

impl<'de> Visitor<'de> for Probe<'_> {
    type Value = Tenant;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Tenant, A::Error> {
        let mut found = None;
        let mut empty = true;
        while let Some(is_tenant) = map.next_key_seed(KeyIs(self.field))? {
            empty = false;
            if is_tenant {
                found = Some(map.next_value::<String>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(match found {
            Some(t) => Tenant::Named(t),
            None => Tenant::Missing { empty },
        })
    }
}

/// A key, compared with the tenant field without being kept.
struct KeyIs<'f>(&'f str);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E>(self, v: &str) -> Result<bool, E> {
        Ok(v == self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tenant_is_read_and_stamped() {
        assert_eq!(
            tenant(r#"{"x":{"tenantId":"no"},"tenantId":"t-1"}"#, "tenantId"),
            Ok(Tenant::Named("t-1".into()))
        );
        assert_eq!(
            tenant(r#"{"x":1}"#, "tenantId"),
            Ok(Tenant::Missing { empty: false })
        );
        assert_eq!(
            tenant("{}", "tenantId"),
            Ok(Tenant::Missing { empty: true })
        );
        assert_eq!(tenant("[1]", "tenantId"), Err(EventError::NotObject));
        assert!(tenant(r#"{"tenantId":5}"#, "tenantId").is_err());

        let mut out = Vec::new();
        stamp(&mut out, r#"{"x":1}"#, "tenantId", "t\"2", false);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"tenantId":"t\"2","x":1}"#
        );
        let mut out = Vec::new();
        stamp(&mut out, "{}", "tenantId", "t", true);
        assert_eq!(String::from_utf8(out).unwrap(), r#"{"tenantId":"t"}"#);
    }
}
