//! The `postgres` sink: one connection, one round trip per batch (binary COPY into a staging
//! table or one multi-row INSERT), bisection to isolate rows PostgreSQL refuses.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::SinkExt;
use sluice_sdk::{async_trait, Health, Outcome, Outcomes, RecordRef, Sink, SinkContext, SinkError};
use tokio::sync::Mutex;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

use crate::config::{Mode, PostgresConfig, Settings, TlsConfig};
use crate::encoder::{Binary, ColumnPlan, Rows, TextColumn};
use crate::request::{self, RowBatch};
use crate::response::{self, Verdict};
use crate::sql::{self, ColumnType};

/// Writes records as rows of one table.
pub struct PostgresSink {
    pg: tokio_postgres::Config,
    tls: TlsConfig,
    settings: Arc<Settings>,
    request_timeout: Duration,
    health: Health,
    conn: Mutex<Option<Conn>>,
    /// Column plan of the last connection, to encode a batch before taking the connection.
    plan: std::sync::Mutex<Option<Arc<Vec<ColumnPlan>>>>,
}

/// A live connection with its prepared statements.
struct Conn {
    client: Client,
    plan: Arc<Vec<ColumnPlan>>,
    insert: Statement,
    copy: Statement,
    merge: Statement,
    /// `mode: append` with every column of a type the sink encodes itself: binary COPY
    /// straight into the table.
    direct: Option<(Statement, Vec<Binary>)>,
}

impl PostgresSink {
    /// Checks the configuration; connects only in `open`.
    pub fn new(cfg: PostgresConfig) -> Result<Self, sluice_sdk::ConfigError> {
        let settings = cfg.settings()?;
        let mut pg: tokio_postgres::Config = cfg
            .url
            .expose()
            .parse()
            .map_err(|_| sluice_sdk::ConfigError::at("url", "not a valid PostgreSQL URL"))?;
        pg.connect_timeout(cfg.connect_timeout);
        if pg.get_application_name().is_none() {
            pg.application_name("sluice");
        }
        Ok(PostgresSink {
            pg,
            tls: cfg.tls,
            settings: Arc::new(settings),
            request_timeout: cfg.request_timeout,
            health: Health::new(),
            conn: Mutex::new(None),
            plan: std::sync::Mutex::new(None),
        })
    }

    async fn connect(&self) -> Result<Conn, SinkError> {
        let client = crate::connect::client(&self.pg, &self.tls).await?;
        let s = &self.settings;
        let setup = |e: tokio_postgres::Error| match response::classify(&e) {
            Verdict::Batch(e) => e,
            Verdict::Row { code, message } => SinkError::Fatal(format!(
                "PostgreSQL error {code}: {}",
                sluice_sdk::dead_letter::message_summary(&message)
            )),
        };
        if s.create_table {
            client
                .batch_execute(&sql::create_table(s))
                .await
                .map_err(setup)?;
        }
        let found = client
            .query(sql::TABLE_COLUMNS, &[&s.table])
            .await
            .map_err(|e| match e.as_db_error() {
                Some(db) if db.code().code() == "42P01" => SinkError::Fatal(format!(
                    "table {} does not exist: create it, or set create_table: true for the \
                     default audit table",
                    s.table
                )),
                _ => setup(e),
            })?;
        let mut types = Vec::with_capacity(s.columns.len());
        for (name, _) in &s.columns {
            let row = found
                .iter()
                .find(|r| r.get::<_, &str>(0) == name)
                .ok_or_else(|| {
                    SinkError::Fatal(format!("column `{name}` is not in table {}", s.table))
                })?;
            types.push(ColumnType {
                sql_type: row.get(1),
                oid: row.get(2),
            });
        }
        let plan: Vec<ColumnPlan> = s
            .columns
            .iter()
            .zip(&types)
            .map(|((_, source), t)| ColumnPlan {
                source: source.clone(),
                json: t.is_json(),
            })
            .collect();
        let st = sql::statements(s, &types);
        client
            .batch_execute(&st.create_stage)
            .await
            .map_err(setup)?;
        let insert = client.prepare(&st.insert_unnest).await.map_err(setup)?;
        let copy = client.prepare(&st.copy_stage).await.map_err(setup)?;
        let merge = client.prepare(&st.insert_from_stage).await.map_err(setup)?;
        let kinds: Option<Vec<Binary>> = types.iter().map(|t| Binary::for_oid(t.oid)).collect();
        let direct = match kinds {
            Some(kinds) if s.mode == Mode::Append => {
                Some((client.prepare(&st.copy_direct).await.map_err(setup)?, kinds))
            }
            _ => None,
        };
        tracing::info!(table = %s.table, "connected to PostgreSQL");
        Ok(Conn {
            client,
            plan: Arc::new(plan),
            insert,
            copy,
            merge,
            direct,
        })
    }

    /// Writes the selected rows in one round trip.
    async fn write(&self, conn: &Conn, rows: &Rows<'_>, select: &[u32]) -> Result<(), Verdict> {
        let classify = |e: tokio_postgres::Error| response::classify(&e);
        if select.len() < self.settings.copy_threshold {
            let columns: Vec<TextColumn> = (0..rows.ncols)
                .map(|column| TextColumn {
                    rows,
                    column,
                    select,
                })
                .collect();
            let params: Vec<&(dyn ToSql + Sync)> =
                columns.iter().map(|c| c as &(dyn ToSql + Sync)).collect();
            conn.client
                .execute(&conn.insert, &params)
                .await
                .map_err(classify)?;
            return Ok(());
        }
        let client = &conn.client;
        if let Some((copy_direct, kinds)) = &conn.direct {
            if let Some(body) = rows.copy_body_typed(select, kinds) {
                let copy = async {
                    let sink = client.copy_in::<_, Bytes>(copy_direct).await?;
                    futures::pin_mut!(sink);
                    sink.send(body.freeze()).await?;
                    sink.finish().await
                };
                copy.await.map_err(classify)?;
                return Ok(());
            }
        }
        // BEGIN; COPY into the staging table; INSERT ... SELECT (with the casts and the ON
        // CONFLICT clause); COMMIT, which empties the staging table. The four requests are
        // pipelined: tokio-postgres sends them in order without waiting for answers, and the
        // connection streams the COPY data before the INSERT.
        let body = Bytes::from(rows.copy_body(select));
        let copy = async {
            let sink = client.copy_in::<_, Bytes>(&conn.copy).await?;
            futures::pin_mut!(sink);
            sink.send(body).await?;
            sink.finish().await
        };
        let (begin, copied, inserted, commit) = tokio::join!(
            client.batch_execute("BEGIN"),
            copy,
            client.execute(&conn.merge, &[]),
            client.batch_execute("COMMIT"),
        );
        // The first failure is the cause; later statements only report the aborted
        // transaction.
        begin.map_err(classify)?;
        copied.map_err(classify)?;
        inserted.map_err(classify)?;
        commit.map_err(classify)?;
        Ok(())
    }

    /// The column plan of the current (or a first) connection.
    async fn current_plan(&self) -> Result<Arc<Vec<ColumnPlan>>, SinkError> {
        if let Some(p) = self.plan.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Ok(p);
        }
        let mut guard = self.conn.lock().await;
        if guard.is_none() {
            *guard = Some(self.connect_reporting().await?);
        }
        match guard.as_ref() {
            Some(c) => Ok(c.plan.clone()),
            None => Err(SinkError::unavailable("no PostgreSQL connection")),
        }
    }

    async fn connect_reporting(&self) -> Result<Conn, SinkError> {
        match self.connect().await {
            Ok(c) => {
                *self.plan.lock().unwrap_or_else(|e| e.into_inner()) = Some(c.plan.clone());
                Ok(c)
            }
            Err(e) => {
                self.health.set_unhealthy(e.to_string());
                Err(e)
            }
        }
    }

    /// Writes a batch's rows, bisecting statements PostgreSQL refuses because of a row.
    async fn write_rows(
        &self,
        conn: &Conn,
        p: &RowBatch<'_>,
        outcomes: &mut Outcomes,
    ) -> Result<(), Verdict> {
        let mut stack = vec![(0usize, p.live.len())];
        while let Some((a, b)) = stack.pop() {
            if a == b {
                continue;
            }
            let select = &p.live[a..b];
            match self.write(conn, &p.rows, select).await {
                Ok(()) => {
                    outcomes.set_each(
                        select.iter().map(|&row| p.row_record[row as usize]),
                        &Outcome::Delivered,
                    );
                }
                Err(Verdict::Row { code, message }) if b - a == 1 => {
                    outcomes.set(
                        p.row_record[select[0] as usize],
                        Outcome::reject(format!("postgres.sqlstate={code}"), message),
                    );
                }
                Err(Verdict::Row { .. }) => {
                    let mid = a + (b - a) / 2;
                    stack.push((mid, b));
                    stack.push((a, mid));
                }
                Err(batch) => return Err(batch),
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Sink for PostgresSink {
    async fn open(&mut self, ctx: SinkContext) -> Result<(), SinkError> {
        self.health = ctx.health;
        let mut guard = self.conn.lock().await;
        *guard = Some(self.connect_reporting().await?);
        self.health.set_healthy();
        Ok(())
    }

    async fn send(&self, records: &[RecordRef<'_>]) -> Result<Vec<Outcome>, SinkError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let plan = self.current_plan().await?;
        let mut outcomes = Outcomes::new(records.len());
        let parsed = request::parse(&plan, records, &mut outcomes);
        let batch = RowBatch::build(&self.settings, &plan, records, &parsed, &mut outcomes);

        let mut guard = self.conn.lock().await;
        if guard.as_ref().is_some_and(|c| c.client.is_closed()) {
            *guard = None;
        }
        let conn = match guard.take() {
            Some(c) => c,
            None => self.connect_reporting().await?,
        };
        if *conn.plan != *plan {
            // The table changed under a reconnection (a column became jsonb): encode again.
            *guard = Some(conn);
            return Err(SinkError::unavailable(
                "the table's column types changed; sending the batch again",
            ));
        }
        let result = tokio::time::timeout(
            self.request_timeout,
            self.write_rows(&conn, &batch, &mut outcomes),
        )
        .await;
        match result {
            Ok(Ok(())) => {
                *guard = Some(conn);
                self.health.set_healthy();
                Ok(batch.finish(outcomes))
            }
            Ok(Err(failure)) => {
                let keep = !failure.breaks_connection();
                let e = match failure {
                    Verdict::Batch(e) => e,
                    Verdict::Row { code, message } => SinkError::Fatal(format!(
                        "PostgreSQL error {code}: {}",
                        sluice_sdk::dead_letter::message_summary(&message)
                    )),
                };
                if keep {
                    *guard = Some(conn);
                }
                self.health.set_unhealthy(e.to_string());
                Err(e)
            }
            Err(_) => {
                let e = SinkError::unavailable(format!(
                    "PostgreSQL did not answer within {:?}",
                    self.request_timeout
                ));
                self.health.set_unhealthy(e.to_string());
                Err(e)
            }
        }
    }

    /// Appends may overlap: the next batch is encoded while one is written (the writes
    /// themselves share the one connection). Upserts keep batch order so the last version
    /// of a key wins.
    fn default_concurrency(&self) -> usize {
        match self.settings.mode {
            Mode::Append => 2,
            Mode::Upsert => 1,
        }
    }

    async fn close(&self) -> Result<(), SinkError> {
        self.conn.lock().await.take();
        Ok(())
    }
}
