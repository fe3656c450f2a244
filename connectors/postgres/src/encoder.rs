//! Record -> row cells, and the two wire forms of a batch of rows: a binary COPY stream and
//! `text[]` array parameters for the multi-row INSERT.
//!
//! Every cell travels as text and PostgreSQL converts it to the column type (`::timestamptz`,
//! `::jsonb`), so bad values are reported by the server with its own SQLSTATE and message,
//! exactly as `psql` would.

use std::borrow::Cow;
use std::error::Error as StdError;

use bytes::{BufMut, BytesMut};
use chrono::{DateTime, SecondsFormat};
use sluice_sdk::RecordRef;
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};

use crate::config::ColumnSource;
use crate::fields::{self, Outline};

/// One value of a row, borrowed from the record where possible.
#[derive(Debug)]
pub enum Cell<'a> {
    Null,
    Bytes(&'a [u8]),
    Text(Cow<'a, str>),
}

impl Cell<'_> {
    fn bytes(&self) -> Option<&[u8]> {
        match self {
            Cell::Null => None,
            Cell::Bytes(b) => Some(b),
            Cell::Text(t) => Some(t.as_bytes()),
        }
    }
}

/// How a mapped column is filled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnPlan {
    pub source: ColumnSource,
    /// The column is `json`/`jsonb`: a string field must be sent as a JSON string literal.
    pub json: bool,
}

/// Whether any column needs the record parsed as JSON.
pub fn needs_json(columns: &[ColumnPlan]) -> bool {
    columns
        .iter()
        .any(|c| matches!(c.source, ColumnSource::Field(_)))
}

/// Appends the cells of one record to `out` (one per column).
pub fn push_row<'a>(
    out: &mut Vec<Cell<'a>>,
    columns: &[ColumnPlan],
    record: &RecordRef<'a>,
    parsed: Option<&Outline<'a>>,
) {
    for c in columns {
        let cell = match &c.source {
            ColumnSource::Field(path) => parsed
                .and_then(|o| o.get(path))
                .and_then(|v| fields::text(v, c.json))
                .map_or(Cell::Null, Cell::Text),
            ColumnSource::Value => Cell::Bytes(record.value()),
            ColumnSource::Key => record.key().map_or(Cell::Null, Cell::Bytes),
            ColumnSource::Topic => Cell::Text(Cow::Borrowed(record.origin().stream)),
            ColumnSource::Partition => {
                Cell::Text(Cow::Owned(record.origin().partition.to_string()))
            }
            ColumnSource::Offset => Cell::Text(Cow::Owned(record.origin().offset.to_string())),
            ColumnSource::Timestamp => record
                .timestamp()
                .and_then(DateTime::from_timestamp_millis)
                .map_or(Cell::Null, |t| {
                    Cell::Text(Cow::Owned(t.to_rfc3339_opts(SecondsFormat::Millis, true)))
                }),
        };
        out.push(cell);
    }
}

/// Rows of a batch: `cells` holds `ncols` cells per row.
#[derive(Debug)]
pub struct Rows<'a> {
    pub ncols: usize,
    pub cells: Vec<Cell<'a>>,
}

impl<'a> Rows<'a> {
    fn row(&self, i: usize) -> &[Cell<'a>] {
        &self.cells[i * self.ncols..(i + 1) * self.ncols]
    }

    /// The key cells of row `i`, for de-duplicating upserts within a batch.
    pub fn key_of(&self, i: usize, key: &[usize]) -> Vec<Option<&[u8]>> {
        let row = self.row(i);
        key.iter().map(|&k| row[k].bytes()).collect()
    }

    /// The binary COPY stream of the selected rows, every column as text (for the staging
    /// table): signature, flags and header extension, then per row a 16-bit field count and per field a 32-bit length (-1 for NULL) and the
    /// bytes (text columns' binary form is their UTF-8 text), then the -1 trailer.
    pub fn copy_body(&self, select: &[u32]) -> BytesMut {
        let approx: usize = select
            .iter()
            .map(|&i| {
                self.row(i as usize)
                    .iter()
                    .map(|c| 4 + c.bytes().map_or(0, <[u8]>::len))
                    .sum::<usize>()
                    + 2
            })
            .sum();
        let mut buf = BytesMut::with_capacity(approx + 21);
        put_copy_header(&mut buf);
        for &i in select {
            let row = self.row(i as usize);
            buf.put_i16(self.ncols as i16);
            for cell in row {
                put_field(&mut buf, cell.bytes());
            }
        }
        buf.put_i16(-1);
        buf
    }
}

/// Binary COPY signature, flags (no OIDs) and an empty header extension.
fn put_copy_header(buf: &mut BytesMut) {
    buf.put_slice(b"PGCOPY\n\xff\r\n\0");
    buf.put_i32(0);
    buf.put_i32(0);
}

fn put_field(buf: &mut BytesMut, v: Option<&[u8]>) {
    match v {
        None => buf.put_i32(-1),
        Some(b) => {
            buf.put_i32(b.len() as i32);
            buf.put_slice(b);
        }
    }
}

/// A column type the sink can write in PostgreSQL's binary form itself, for a COPY straight
/// into the target table (no staging table, no casts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binary {
    /// text, varchar, bpchar, json: binary form = the text.
    Text,
    /// jsonb: version byte 1, then the JSON text.
    Jsonb,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Bool,
    /// timestamptz: microseconds since 2000-01-01 UTC.
    Timestamptz,
    Uuid,
}

impl Binary {
    /// The binary form for a type OID, when the sink encodes it.
    pub fn for_oid(oid: u32) -> Option<Self> {
        Some(match oid {
            25 | 1042 | 1043 | 114 => Binary::Text,
            3802 => Binary::Jsonb,
            21 => Binary::Int2,
            23 => Binary::Int4,
            20 => Binary::Int8,
            700 => Binary::Float4,
            701 => Binary::Float8,
            16 => Binary::Bool,
            1184 => Binary::Timestamptz,
            2950 => Binary::Uuid,
            _ => return None,
        })
    }
}

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

fn parse_uuid(t: &str) -> Option<[u8; 16]> {
    let b = t.as_bytes();
    if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
        return None;
    }
    let mut out = [0u8; 16];
    let mut nibbles = b.iter().filter(|&&c| c != b'-');
    for byte in &mut out {
        let hi = (*nibbles.next()? as char).to_digit(16)?;
        let lo = (*nibbles.next()? as char).to_digit(16)?;
        *byte = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// Writes one field in binary form; `None` when the text is not in the strict form this
/// encoder understands (the batch then goes through the staging table and PostgreSQL's own
/// parser, which either accepts the value or names the error).
fn put_binary(buf: &mut BytesMut, kind: Binary, v: &[u8]) -> Option<()> {
    let text = || std::str::from_utf8(v).ok();
    match kind {
        Binary::Text => put_field(buf, Some(v)),
        Binary::Jsonb => {
            buf.put_i32(v.len() as i32 + 1);
            buf.put_u8(1);
            buf.put_slice(v);
        }
        Binary::Int2 => {
            buf.put_i32(2);
            buf.put_i16(text()?.parse().ok()?);
        }
        Binary::Int4 => {
            buf.put_i32(4);
            buf.put_i32(text()?.parse().ok()?);
        }
        Binary::Int8 => {
            buf.put_i32(8);
            buf.put_i64(text()?.parse().ok()?);
        }
        Binary::Float4 | Binary::Float8 => {
            let t = text()?;
            // Only plain decimal numbers: PostgreSQL spells the special values differently.
            if !t
                .bytes()
                .all(|c| c.is_ascii_digit() || b"+-.eE".contains(&c))
            {
                return None;
            }
            let f: f64 = t.parse().ok()?;
            if kind == Binary::Float4 {
                buf.put_i32(4);
                buf.put_f32(t.parse().ok()?);
            } else {
                buf.put_i32(8);
                buf.put_f64(f);
            }
        }
        Binary::Bool => {
            buf.put_i32(1);
            buf.put_u8(match v {
                b"true" => 1,
                b"false" => 0,
                _ => return None,
            });
        }
        Binary::Timestamptz => {
            let t = DateTime::parse_from_rfc3339(text()?).ok()?;
            if t.timestamp_subsec_nanos() % 1000 != 0 {
                return None; // PostgreSQL would round to the microsecond.
            }
            buf.put_i32(8);
            buf.put_i64(t.timestamp_micros().checked_sub(PG_EPOCH_MICROS)?);
        }
        Binary::Uuid => {
            buf.put_i32(16);
            buf.put_slice(&parse_uuid(text()?)?);
        }
    }
    Some(())
}

impl Rows<'_> {
    /// The binary COPY stream of the selected rows in the target table's own column types;
    /// `None` if a value is not in the strict form [`put_binary`] encodes.
    pub fn copy_body_typed(&self, select: &[u32], kinds: &[Binary]) -> Option<BytesMut> {
        let mut buf = BytesMut::with_capacity(select.len() * (self.ncols * 12 + 64) + 21);
        put_copy_header(&mut buf);
        for &i in select {
            buf.put_i16(self.ncols as i16);
            for (cell, kind) in self.row(i as usize).iter().zip(kinds) {
                match cell.bytes() {
                    None => buf.put_i32(-1),
                    Some(v) => put_binary(&mut buf, *kind, v)?,
                }
            }
        }
        buf.put_i16(-1);
        Some(buf)
    }
}

/// One column of the selected rows as a `text[]` parameter, encoded straight from the cells.
#[derive(Debug)]
pub struct TextColumn<'r, 'a> {
    pub rows: &'r Rows<'a>,
    pub column: usize,
    pub select: &'r [u32],
}

impl ToSql for TextColumn<'_, '_> {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        // Array binary form: dimensions, has-nulls flag, element type, then per dimension
        // its length and lower bound, then each element as length + bytes (-1 for NULL).
        let has_null = self
            .select
            .iter()
            .any(|&i| self.rows.row(i as usize)[self.column].bytes().is_none());
        out.put_i32(1);
        out.put_i32(has_null as i32);
        out.put_u32(Type::TEXT.oid());
        out.put_i32(self.select.len() as i32);
        out.put_i32(1);
        for &i in self.select {
            put_field(out, self.rows.row(i as usize)[self.column].bytes());
        }
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::TEXT_ARRAY
    }

    to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::{Origin, Record};

    #[test]
    fn cells_from_fields_and_metadata() {
        let mut r = Record::new(
            r#"{"id":"a1","n":5,"ok":true,"meta":{"x":1},"s":"txt"}"#,
            Origin::new("topic".into(), 3, 42),
        );
        r.timestamp = Some(1_700_000_000_123);
        let v = Outline::parse(&r.value).unwrap();
        let plan = |s: &str, json| ColumnPlan {
            source: ColumnSource::parse(s).unwrap(),
            json,
        };
        let cols = vec![
            plan("id", false),
            plan("n", false),
            plan("ok", false),
            plan("meta", true),
            plan("s", true),
            plan("missing", false),
            plan("$partition", false),
            plan("$offset", false),
            plan("$timestamp", false),
            plan("$topic", false),
        ];
        let mut out = Vec::new();
        push_row(&mut out, &cols, &r.view(), Some(&v));
        let text: Vec<Option<String>> = out
            .iter()
            .map(|c| c.bytes().map(|b| String::from_utf8(b.to_vec()).unwrap()))
            .collect();
        let want = [
            Some("a1"),
            Some("5"),
            Some("true"),
            Some(r#"{"x":1}"#),
            Some(r#""txt""#),
            None,
            Some("3"),
            Some("42"),
            Some("2023-11-14T22:13:20.123Z"),
            Some("topic"),
        ];
        assert_eq!(text, want.map(|s| s.map(String::from)));
    }

    #[test]
    fn typed_binary_forms() {
        let enc = |kind, text: &str| {
            let mut b = BytesMut::new();
            put_binary(&mut b, kind, text.as_bytes()).map(|_| b.to_vec())
        };
        assert_eq!(enc(Binary::Int4, "277").unwrap(), [0, 0, 0, 4, 0, 0, 1, 21]);
        assert!(enc(Binary::Int2, "70000").is_none());
        assert!(enc(Binary::Int4, "fast").is_none());
        assert_eq!(
            enc(Binary::Jsonb, "{}").unwrap(),
            [0, 0, 0, 3, 1, b'{', b'}']
        );
        assert_eq!(enc(Binary::Bool, "true").unwrap(), [0, 0, 0, 1, 1]);
        assert!(enc(Binary::Bool, "yes").is_none());
        // 2000-01-01T00:00:01Z is one second after PostgreSQL's epoch.
        assert_eq!(
            enc(Binary::Timestamptz, "2000-01-01T02:00:01+02:00").unwrap(),
            [0, 0, 0, 8, 0, 0, 0, 0, 0, 0x0f, 0x42, 0x40]
        );
        assert!(enc(Binary::Timestamptz, "yesterday").is_none());
        let u = enc(Binary::Uuid, "00000000-0000-4000-8000-0000000000ff").unwrap();
        assert_eq!((u.len(), u[4 + 6], u[4 + 15]), (20, 0x40, 0xff));
        assert!(enc(Binary::Uuid, "{00000000-0000-4000-8000-0000000000ff}").is_none());
        assert!(enc(Binary::Float8, "Infinity").is_none());
        assert_eq!(
            enc(Binary::Float8, "1.5").unwrap()[4..],
            1.5f64.to_be_bytes()
        );
    }

    #[test]
    fn copy_stream_layout() {
        let rows = Rows {
            ncols: 2,
            cells: vec![Cell::Bytes(b"ab"), Cell::Null],
        };
        let body = rows.copy_body(&[0]);
        let mut want = b"PGCOPY\n\xff\r\n\0".to_vec();
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        want.extend_from_slice(&[
            0, 2, 0, 0, 0, 2, b'a', b'b', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ]);
        assert_eq!(&body[..], &want[..]);
    }
}
