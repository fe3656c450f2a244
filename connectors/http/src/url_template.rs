//! The `url` option: fixed scheme, host and port, with `{{ field }}` references in the path
//! and query whose values are percent-encoded, so a record's value can neither add a path
//! segment nor a query parameter, nor choose the host its data goes to.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::Value;

use crate::template::{MissingField, Part, TextTemplate};

/// Everything but RFC 3986's unreserved characters is encoded: a value stays one path
/// segment or one query value, whatever it contains (`/`, `?`, `&`, `=`, `#`, `%`).
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Why a `url` option was refused. Messages never repeat the URL (it may hold a credential).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("{0}")]
    Syntax(#[from] crate::template::SyntaxError),
    #[error(
        "a `{{{{ }}}}` reference at position {0} is in the scheme, host or port: only the path and \
         the query may take record fields (a record must not choose where its data goes)"
    )]
    InAuthority(usize),
    #[error("{0}")]
    Endpoint(#[from] sluice_sdk::http::EndpointError),
}

/// A parsed `url`.
#[derive(Debug, Clone)]
pub struct UrlTemplate {
    template: TextTemplate,
    /// The URL itself when it names no field.
    constant: Option<url::Url>,
}

impl UrlTemplate {
    pub fn parse(text: &str) -> Result<Self, UrlError> {
        let text = text.trim();
        let template = TextTemplate::parse(text)?;
        let authority_end = text
            .find("://")
            .map(|s| {
                let from = s + 3;
                text[from..]
                    .find(['/', '?', '#'])
                    .map_or(text.len(), |e| from + e)
            })
            .unwrap_or(text.len());
        for p in template.parts() {
            if let Part::Field { at, .. } = p {
                if *at < authority_end {
                    return Err(UrlError::InAuthority(*at));
                }
            }
        }
        // The shape is checked with a placeholder in every field.
        let sample = sample_text(&template);
        let url =
            sluice_sdk::http::endpoint_url(&sample, "put credentials in `auth` or `headers`")?;
        let constant = (!template.needs_fields()).then_some(url);
        Ok(UrlTemplate { template, constant })
    }

    pub fn needs_fields(&self) -> bool {
        self.constant.is_none()
    }

    /// The URL without fields, or with every field replaced by `x`: for logs and messages
    /// (never a record's values).
    pub fn display(&self) -> String {
        match &self.constant {
            Some(u) => u.to_string(),
            None => sample_text(&self.template),
        }
    }

    /// The URL for one record (`record` is `Null` when no field is needed).
    pub fn render(&self, record: &Value) -> Result<url::Url, RenderError> {
        if let Some(u) = &self.constant {
            return Ok(u.clone());
        }
        let mut out = String::with_capacity(128);
        self.template
            .render_with(record, &mut out, |_, text, out| {
                out.extend(utf8_percent_encode(text, COMPONENT));
            })
            .map_err(RenderError::Missing)?;
        url::Url::parse(&out).map_err(|_| RenderError::Invalid)
    }
}

/// A record's URL could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("url: {0}")]
    Missing(MissingField),
    #[error("url: the rendered URL is not valid")]
    Invalid,
}

/// The template with `x` for every field.
fn sample_text(template: &TextTemplate) -> String {
    template
        .parts()
        .iter()
        .map(|p| match p {
            Part::Literal(s) => s.as_str(),
            Part::Field { .. } => "x",
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_are_one_encoded_segment_or_query_value() {
        let t = UrlTemplate::parse(
            "http://api:8000/api/applied-controls/{{ control.id }}/?tenant={{ t }}&x=1",
        )
        .unwrap();
        let u = t
            .render(&json!({"control": {"id": "a/b?c#d%"}, "t": "x&y=z é"}))
            .unwrap();
        assert_eq!(
            u.as_str(),
            "http://api:8000/api/applied-controls/a%2Fb%3Fc%23d%25/?tenant=x%26y%3Dz%20%C3%A9&x=1"
        );
        assert_eq!(u.path_segments().unwrap().count(), 4);
        assert_eq!(
            t.display(),
            "http://api:8000/api/applied-controls/x/?tenant=x&x=1"
        );
        assert!(matches!(t.render(&json!({})), Err(RenderError::Missing(_))));
        let c = UrlTemplate::parse("https://h/api/").unwrap();
        assert!(!c.needs_fields());
        assert_eq!(c.render(&Value::Null).unwrap().as_str(), "https://h/api/");
    }

    #[test]
    fn the_authority_and_credentials_are_refused() {
        for bad in [
            "http://{{ host }}/api",
            "http://api:{{ port }}/x",
            "{{ scheme }}://api/x",
            "http://u{{ a }}@api/x",
        ] {
            assert!(
                matches!(UrlTemplate::parse(bad), Err(UrlError::InAuthority(_))),
                "{bad}"
            );
        }
        let e = UrlTemplate::parse("https://h/x?token=hunter2").unwrap_err();
        assert!(!e.to_string().contains("hunter2"));
        assert!(matches!(
            UrlTemplate::parse("https://h/{{ a | b }}"),
            Err(UrlError::Syntax(_))
        ));
        assert!(UrlTemplate::parse("ftp://h/x").is_err());
    }
}
