//! Bearer tokens to tenants.

use subtle::ConstantTimeEq;

/// The configured tenants and their tokens. Tokens are compared in constant time, every one
/// of them on every request, so neither timing nor the tenant order tells a caller anything.
pub struct Tokens {
    tenants: Vec<(String, Vec<u8>)>,
}

impl Tokens {
    pub fn new(tenants: impl IntoIterator<Item = (String, String)>) -> Self {
        Tokens {
            tenants: tenants
                .into_iter()
                .map(|(t, tok)| (t, tok.into_bytes()))
                .collect(),
        }
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tenants.iter().map(|(t, _)| t.as_str())
    }

    /// The index of the tenant whose token the `Authorization` header carries.
    pub fn tenant(&self, authorization: Option<&[u8]>) -> Option<usize> {
        let header = authorization?;
        let token = strip_bearer(header)?;
        let mut found = None;
        for (i, (_, t)) in self.tenants.iter().enumerate() {
            if bool::from(t.as_slice().ct_eq(token)) && !t.is_empty() {
                found = Some(i);
            }
        }
        found
    }
}

/// The token of a `Bearer` credential (the scheme is case-insensitive, RFC 7235).
fn strip_bearer(header: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = header.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_tenant_and_nothing_else_does() {
        let t = Tokens::new([("a".into(), "tok-a".into()), ("b".into(), "tok-b".into())]);
        assert_eq!(t.tenant(Some(b"Bearer tok-b")), Some(1));
        assert_eq!(t.tenant(Some(b"bearer tok-a")), Some(0));
        assert_eq!(t.tenant(Some(b"Bearer tok-c")), None);
        assert_eq!(t.tenant(Some(b"Basic tok-a")), None);
        assert_eq!(t.tenant(Some(b"Bearer ")), None);
        assert_eq!(t.tenant(None), None);
    }
}
