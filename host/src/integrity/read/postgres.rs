//! A PostgreSQL table: the column holding the record (json, jsonb or text), read in one
//! REPEATABLE READ snapshot through a cursor, ordered by `--order-by` or else the primary key.
//! The order column must follow insertion (a `bigserial`/identity key), since read order is
//! what `reordered` is judged on.

use std::collections::VecDeque;

use sluice_postgres::tokio_postgres::{self, Client};
use sluice_postgres::{quote_ident, TlsConfig};

use super::{Entry, ReadError, RecordReader};

const PAGE: usize = 5000;

/// The primary-key columns of `$1` (a table name as `regclass` text), in key order.
const PRIMARY_KEY: &str = "SELECT a.attname::text FROM pg_index i \
     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
     WHERE i.indrelid = $1::text::regclass AND i.indisprimary \
     ORDER BY array_position(i.indkey::int2[], a.attnum)";

pub struct PostgresReader {
    rt: tokio::runtime::Runtime,
    client: Client,
    table: String,
    order: Vec<String>,
    page: VecDeque<Entry>,
    done: bool,
}

/// The server's own words when it refused (`relation "x" does not exist`), else the error.
fn pg_error(e: tokio_postgres::Error) -> ReadError {
    ReadError::Postgres(match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    })
}

/// `table` or `schema.table`, quoted.
fn quoted_table(table: &str) -> Result<String, ReadError> {
    let parts: Vec<&str> = table.split('.').collect();
    if parts.len() > 2 || parts.iter().any(|p| p.is_empty()) {
        return Err(ReadError::Postgres(format!(
            "--table {table}: expected `table` or `schema.table`"
        )));
    }
    Ok(parts
        .iter()
        .map(|p| quote_ident(p))
        .collect::<Vec<_>>()
        .join("."))
}

impl PostgresReader {
    /// Connects (TLS as the sink's `tls:` setting `tls`), finds the order and opens the
    /// cursor.
    pub fn open(
        url: &str,
        tls: &TlsConfig,
        table: &str,
        column: &str,
        order_by: Option<&str>,
    ) -> Result<Self, ReadError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| ReadError::Io {
                what: "the runtime".into(),
                source,
            })?;
        // The URL may hold a password: the parser's message is not repeated.
        let mut pg: tokio_postgres::Config = url.parse().map_err(|_| {
            ReadError::Postgres("--postgres is not a valid PostgreSQL connection URL".into())
        })?;
        pg.connect_timeout(std::time::Duration::from_secs(10));
        if pg.get_application_name().is_none() {
            pg.application_name("sluice-verify");
        }
        let client = rt
            .block_on(sluice_postgres::connect::client(&pg, tls))
            .map_err(|e| ReadError::Postgres(e.to_string()))?;
        let quoted = quoted_table(table)?;
        let order = match order_by {
            Some(c) => vec![c.to_string()],
            None => {
                let rows = rt
                    .block_on(client.query(PRIMARY_KEY, &[&quoted]))
                    .map_err(pg_error)?;
                let key: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
                if key.is_empty() {
                    return Err(ReadError::Postgres(format!(
                        "table {table} has no primary key: give --order-by, a column that \
                         grows with insertion (a bigserial or identity column)"
                    )));
                }
                key
            }
        };
        let order_sql = order
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ");
        // Output columns get names of their own: ORDER BY a name that is also an output
        // column's would sort the text form (10 before 9).
        let labels = order
            .iter()
            .enumerate()
            .map(|(i, c)| format!("({})::text AS sluice_verify_key{i}", quote_ident(c)))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;\n\
             DECLARE sluice_verify NO SCROLL CURSOR FOR \
             SELECT ({})::text AS sluice_verify_record, {labels} FROM {quoted} \
             ORDER BY {order_sql};",
            quote_ident(column)
        );
        rt.block_on(client.batch_execute(&sql)).map_err(pg_error)?;
        Ok(PostgresReader {
            rt,
            client,
            table: table.to_string(),
            order,
            page: VecDeque::new(),
            done: false,
        })
    }

    fn fetch(&mut self) -> Result<(), ReadError> {
        let rows = self
            .rt
            .block_on(
                self.client
                    .query(&format!("FETCH {PAGE} FROM sluice_verify"), &[]),
            )
            .map_err(pg_error)?;
        if rows.len() < PAGE {
            self.done = true;
        }
        for row in rows {
            let key: Vec<String> = (0..self.order.len())
                .map(|i| {
                    let v: Option<String> = row.get(i + 1);
                    format!("{}={}", self.order[i], v.as_deref().unwrap_or("NULL"))
                })
                .collect();
            let at = format!("row {}", key.join(","));
            match row.get::<_, Option<String>>(0) {
                Some(v) => self.page.push_back(Entry {
                    value: v.into_bytes(),
                    at: at.into(),
                    lane: 0,
                    stamp: None,
                }),
                // A NULL record is no record of the chain; reported as not JSON.
                None => self.page.push_back(Entry {
                    value: b"NULL".to_vec(),
                    at: at.into(),
                    lane: 0,
                    stamp: None,
                }),
            }
        }
        Ok(())
    }
}

impl RecordReader for PostgresReader {
    fn next_entry(&mut self) -> Result<Option<Entry>, ReadError> {
        if self.page.is_empty() && !self.done {
            self.fetch()?;
        }
        Ok(self.page.pop_front())
    }

    fn describe(&self) -> String {
        format!("table {}", self.table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_quoted_per_part() {
        assert_eq!(quoted_table("audit").unwrap(), "\"audit\"");
        assert_eq!(quoted_table("a.b\"c").unwrap(), "\"a\".\"b\"\"c\"");
        assert!(quoted_table("a..b").is_err());
        assert!(quoted_table("a.b.c").is_err());
    }
}
