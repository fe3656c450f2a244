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
use serde_json::Value;
use sluice_sdk::{json, Record};
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};

use crate::config::ColumnSource;

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
#[derive(Debug, Clone)]
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

fn field_cell<'a>(v: Option<&'a Value>, json_column: bool) -> Cell<'a> {
    match v {
        None | Some(Value::Null) => Cell::Null,
        Some(Value::String(s)) if !json_column => Cell::Text(Cow::Borrowed(s)),
        Some(Value::Bool(b)) => Cell::Text(Cow::Borrowed(if *b { "true" } else { "false" })),
        Some(Value::Number(n)) => Cell::Text(Cow::Owned(n.to_string())),
        Some(other) => Cell::Text(Cow::Owned(other.to_string())),
    }
}

/// Appends the cells of one record to `out` (one per column).
pub fn push_row<'a>(
    out: &mut Vec<Cell<'a>>,
    columns: &[ColumnPlan],
    record: &'a Record,
    parsed: Option<&'a Value>,
) {
    for c in columns {
        let cell = match &c.source {
            ColumnSource::Field(path) => {
                field_cell(parsed.and_then(|v| json::get(v, path)), c.json)
            }
            ColumnSource::Value => Cell::Bytes(&record.value),
            ColumnSource::Key => record.key.as_deref().map_or(Cell::Null, Cell::Bytes),
            ColumnSource::Topic => Cell::Text(Cow::Borrowed(&record.origin.stream)),
            ColumnSource::Partition => Cell::Text(Cow::Owned(record.origin.partition.to_string())),
            ColumnSource::Offset => Cell::Text(Cow::Owned(record.origin.offset.to_string())),
            ColumnSource::Timestamp => record
                .timestamp
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

    /// The binary COPY stream of the selected rows: signature, flags and header extension,
    /// then per row a 16-bit field count and per field a 32-bit length (-1 for NULL) and the
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
        buf.put_slice(b"PGCOPY\n\xff\r\n\0");
        buf.put_i32(0);
        buf.put_i32(0);
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

fn put_field(buf: &mut BytesMut, v: Option<&[u8]>) {
    match v {
        None => buf.put_i32(-1),
        Some(b) => {
            buf.put_i32(b.len() as i32);
            buf.put_slice(b);
        }
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
    use sluice_sdk::Origin;

    #[test]
    fn cells_from_fields_and_metadata() {
        let mut r = Record::new(
            r#"{"id":"a1","n":5,"ok":true,"meta":{"x":1},"s":"txt"}"#,
            Origin::new("topic".into(), 3, 42),
        );
        r.timestamp = Some(1_700_000_000_123);
        let v = r.json().unwrap();
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
        push_row(&mut out, &cols, &r, Some(&v));
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
