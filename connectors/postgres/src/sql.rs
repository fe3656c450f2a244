//! The SQL the sink runs: the default table's DDL, the column lookup and the write
//! statements built from the mapped columns and their types.

use crate::config::{quote_ident, Mode, OnConflict, Settings};

/// DDL of the default audit table and its indexes; idempotent.
pub fn create_table(s: &Settings) -> String {
    let t = &s.table;
    let idx = |suffix: &str| quote_ident(&format!("{}_{suffix}_idx", s.table_base));
    format!(
        "CREATE TABLE IF NOT EXISTS {t} (\n\
         event_id text PRIMARY KEY,\n\
         event_type text,\n\
         tenant_id text,\n\
         event_time timestamptz,\n\
         received_at timestamptz NOT NULL DEFAULT now(),\n\
         payload jsonb,\n\
         source_topic text,\n\
         source_partition integer,\n\
         source_offset bigint);\n\
         CREATE INDEX IF NOT EXISTS {} ON {t} (event_time);\n\
         CREATE INDEX IF NOT EXISTS {} ON {t} (event_type);\n\
         CREATE INDEX IF NOT EXISTS {} ON {t} (tenant_id);",
        idx("event_time"),
        idx("event_type"),
        idx("tenant_id"),
    )
}

/// Columns of a table: name, type without modifier (for casts), type OID. `$1` is the
/// quoted table name, resolved with the session's search_path.
pub const TABLE_COLUMNS: &str = "SELECT a.attname::text, format_type(a.atttypid, NULL), \
     a.atttypid::oid FROM pg_attribute a \
     WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped";

/// A mapped column as found in the table.
#[derive(Debug, Clone)]
pub struct ColumnType {
    /// Type name without modifier: casting to `varchar` rather than `varchar(10)` keeps
    /// PostgreSQL's length check on assignment (an explicit cast would truncate silently).
    pub sql_type: String,
    pub oid: u32,
}

impl ColumnType {
    pub fn is_json(&self) -> bool {
        self.oid == 114 || self.oid == 3802
    }

    /// text, varchar and bpchar take text by assignment; no cast needed.
    fn takes_text(&self) -> bool {
        matches!(self.oid, 25 | 1042 | 1043)
    }
}

/// Name of the per-connection staging table for COPY (temporary, emptied at commit).
const STAGE: &str = "pg_temp.sluice_stage";

/// The statements of one connection.
#[derive(Debug, Clone)]
pub struct Statements {
    /// `INSERT ... SELECT FROM unnest($1::text[], ...)`: a whole batch in one statement.
    pub insert_unnest: String,
    pub create_stage: String,
    pub copy_stage: String,
    pub insert_from_stage: String,
    /// `COPY <table> (...) FROM STDIN (FORMAT binary)`, for `mode: append`.
    pub copy_direct: String,
}

fn conflict_clause(s: &Settings) -> String {
    if s.mode != Mode::Upsert {
        return String::new();
    }
    let key: Vec<String> = s
        .key
        .iter()
        .map(|&k| quote_ident(&s.columns[k].0))
        .collect();
    let updates: Vec<String> = s
        .columns
        .iter()
        .enumerate()
        .filter(|(i, _)| !s.key.contains(i))
        .map(|(_, (c, _))| format!("{0} = EXCLUDED.{0}", quote_ident(c)))
        .collect();
    if s.on_conflict == OnConflict::Nothing || updates.is_empty() {
        format!(" ON CONFLICT ({}) DO NOTHING", key.join(", "))
    } else {
        format!(
            " ON CONFLICT ({}) DO UPDATE SET {}",
            key.join(", "),
            updates.join(", ")
        )
    }
}

pub fn statements(s: &Settings, types: &[ColumnType]) -> Statements {
    let n = s.columns.len();
    let target_cols: Vec<String> = s.columns.iter().map(|(c, _)| quote_ident(c)).collect();
    let select: Vec<String> = types
        .iter()
        .enumerate()
        .map(|(i, t)| {
            if t.takes_text() {
                format!("s.c{i}")
            } else {
                format!("s.c{i}::{}", t.sql_type)
            }
        })
        .collect();
    let aliases: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
    let params: Vec<String> = (1..=n).map(|i| format!("${i}::text[]")).collect();
    let conflict = conflict_clause(s);
    let insert_unnest = format!(
        "INSERT INTO {} ({}) SELECT {} FROM unnest({}) AS s({}){conflict}",
        s.table,
        target_cols.join(", "),
        select.join(", "),
        params.join(", "),
        aliases.join(", "),
    );
    let create_stage = format!(
        "CREATE TEMP TABLE IF NOT EXISTS sluice_stage ({}) ON COMMIT DELETE ROWS",
        aliases
            .iter()
            .map(|a| format!("{a} text"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let copy_stage = format!(
        "COPY {STAGE} ({}) FROM STDIN (FORMAT binary)",
        aliases.join(", ")
    );
    let insert_from_stage = format!(
        "INSERT INTO {} ({}) SELECT {} FROM {STAGE} AS s{conflict}",
        s.table,
        target_cols.join(", "),
        select.join(", "),
    );
    let copy_direct = format!(
        "COPY {} ({}) FROM STDIN (FORMAT binary)",
        s.table,
        target_cols.join(", ")
    );
    Statements {
        copy_direct,
        insert_unnest,
        create_stage,
        copy_stage,
        insert_from_stage,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PostgresConfig;
    use serde_json::json;

    #[test]
    fn upsert_statements() {
        let c: PostgresConfig = sluice_sdk::config::from_value(json!({
            "url": "postgres://h/db", "table": "audit", "mode": "upsert",
            "columns": {"audit_id": "id", "at": "ts"}, "key": ["audit_id"]}))
        .unwrap();
        let s = c.settings().unwrap();
        let types = vec![
            ColumnType {
                sql_type: "timestamp with time zone".into(),
                oid: 1184,
            },
            ColumnType {
                sql_type: "text".into(),
                oid: 25,
            },
        ];
        let st = statements(&s, &types);
        assert_eq!(
            st.insert_unnest,
            "INSERT INTO \"audit\" (\"at\", \"audit_id\") SELECT s.c0::timestamp with time zone, \
             s.c1 FROM unnest($1::text[], $2::text[]) AS s(c0, c1) \
             ON CONFLICT (\"audit_id\") DO UPDATE SET \"at\" = EXCLUDED.\"at\""
        );
        assert!(st.insert_from_stage.ends_with("FROM pg_temp.sluice_stage AS s ON CONFLICT (\"audit_id\") DO UPDATE SET \"at\" = EXCLUDED.\"at\""));
    }
}
