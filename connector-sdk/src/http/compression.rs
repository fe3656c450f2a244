//! The `compression` option of HTTP connectors and the body encoder it makes.

use bytes::Bytes;
use serde::{Deserialize, Deserializer};

use crate::gzip::{Gzip, GzipError};

/// Request body compression: `none`, `gzip` (level 1), or
/// `{ algorithm: gzip, level: 1-9 }` (1 is fastest; CPU per record is what a host runs out
/// of, and JSON shrinks well even at level 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip { level: u32 },
}

impl Compression {
    /// Level of a bare `gzip`.
    pub const DEFAULT_GZIP_LEVEL: u32 = 1;

    /// Gzip at the default level.
    pub const fn gzip() -> Self {
        Compression::Gzip {
            level: Self::DEFAULT_GZIP_LEVEL,
        }
    }

    pub fn is_none(&self) -> bool {
        matches!(self, Compression::None)
    }

    /// The `Content-Encoding` header value, if any.
    pub fn content_encoding(&self) -> Option<&'static str> {
        match self {
            Compression::None => None,
            Compression::Gzip { .. } => Some("gzip"),
        }
    }

    /// The encoder for request bodies; it keeps its compressors and buffers between requests.
    pub fn encoder(&self) -> BodyEncoder {
        BodyEncoder {
            gzip: match *self {
                Compression::None => None,
                Compression::Gzip { level } => Some(Gzip::new(level)),
            },
        }
    }
}

impl<'de> Deserialize<'de> for Compression {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Name(String),
            Table {
                algorithm: String,
                #[serde(default)]
                level: Option<u32>,
            },
        }
        const EXPECTED: &str = "expected `none`, `gzip` or `{ algorithm: gzip, level: 1-9 }`";
        let (algorithm, level) =
            match Raw::deserialize(d).map_err(|_| serde::de::Error::custom(EXPECTED))? {
                Raw::Name(a) => (a, None),
                Raw::Table { algorithm, level } => (algorithm, level),
            };
        match (algorithm.as_str(), level) {
            ("none", None) => Ok(Compression::None),
            ("gzip", None) => Ok(Compression::gzip()),
            ("gzip", Some(level @ 1..=9)) => Ok(Compression::Gzip { level }),
            ("gzip", Some(l)) => Err(serde::de::Error::custom(format!(
                "gzip level {l} is out of range: use 1 (fastest) to 9 (smallest)"
            ))),
            (other, _) => Err(serde::de::Error::custom(format!(
                "unknown compression `{other}`: {EXPECTED}"
            ))),
        }
    }
}

/// Compression failed; see [`GzipError`].
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct CompressionError(#[from] GzipError);

/// Turns request bodies into what goes on the wire, as configured.
#[derive(Debug)]
pub struct BodyEncoder {
    gzip: Option<Gzip>,
}

impl BodyEncoder {
    /// `raw` compressed, or as it is without compression.
    pub fn encode(&self, raw: Bytes) -> Result<Bytes, CompressionError> {
        match &self.gzip {
            None => Ok(raw),
            Some(gz) => Ok(gz.compress(&raw)?),
        }
    }

    /// Like [`encode`](Self::encode) for a slice; copies only without compression.
    pub fn encode_slice(&self, raw: &[u8]) -> Result<Bytes, CompressionError> {
        match &self.gzip {
            None => Ok(Bytes::copy_from_slice(raw)),
            Some(gz) => Ok(gz.compress(raw)?),
        }
    }

    /// The `Content-Encoding` header value, if any.
    pub fn content_encoding(&self) -> Option<&'static str> {
        self.gzip.as_ref().map(|_| "gzip")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: serde_json::Value) -> Result<Compression, String> {
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    #[test]
    fn names_and_tables() {
        use serde_json::json;
        assert_eq!(parse(json!("none")), Ok(Compression::None));
        assert_eq!(parse(json!("gzip")), Ok(Compression::Gzip { level: 1 }));
        assert_eq!(
            parse(json!({"algorithm": "gzip", "level": 6})),
            Ok(Compression::Gzip { level: 6 })
        );
        assert!(parse(json!("zstd")).unwrap_err().contains("`zstd`"));
        assert!(parse(json!({"algorithm": "gzip", "level": 0}))
            .unwrap_err()
            .contains("out of range"));
        assert!(parse(json!(3)).is_err());
    }

    #[test]
    fn bodies_and_headers() {
        let plain = Compression::None.encoder();
        assert_eq!(plain.content_encoding(), None);
        assert_eq!(plain.encode(Bytes::from_static(b"x")).unwrap(), "x");
        let gz = Compression::gzip().encoder();
        assert_eq!(gz.content_encoding(), Some("gzip"));
        let body = gz.encode_slice(b"hello").unwrap();
        assert_eq!(&body[..2], &[0x1f, 0x8b]);
    }
}
