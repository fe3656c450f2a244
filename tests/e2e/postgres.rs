//! The real binary writing generator events into the PostgreSQL of this machine: a `kill -9`
//! mid-run with `mode: upsert` leaves exactly one row per event, a row that violates a
//! constraint lands in the file DLQ with its SQLSTATE (and PostgreSQL's DETAIL, which the log
//! leaves out) while every other row is written, and an upsert record without its key is
//! dead-lettered.

use std::time::Duration;

use crate::common::*;

/// A blocking handle on PostgreSQL for checks.
pub(crate) struct Pg {
    rt: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
}

impl Pg {
    pub(crate) fn connect() -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let url = sluice_testkit::env::postgres_url();
        let client = rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| panic!("PostgreSQL must run at {url}: {e}"));
            tokio::spawn(conn);
            client
        });
        Pg { rt, client }
    }

    pub(crate) fn execute(&self, sql: &str) {
        self.rt.block_on(self.client.batch_execute(sql)).unwrap();
    }

    pub(crate) fn rows(&self, sql: &str) -> Vec<tokio_postgres::Row> {
        self.rt.block_on(self.client.query(sql, &[])).unwrap()
    }

    pub(crate) fn count(&self, sql: &str) -> i64 {
        self.rt
            .block_on(self.client.query_one(sql, &[]))
            .map(|r| r.get(0))
            .unwrap_or(0)
    }
}

pub(crate) fn table(name: &str) -> String {
    format!("e2e_{name}_{}_{}", std::process::id(), free_port())
}

#[test]
fn kill_dash_nine_mid_run_with_upsert_leaves_one_row_per_event() {
    let pg = Pg::connect();
    let t = table("kill9");
    let w = Workdir::new();
    let cfg = w.config(
        "pg.yaml",
        &format!(
            "host:\n  data_dir: {{dir}}/data\npipelines:\n  - name: gen-to-pg\n    \
             source: {{ type: generator, count: 60000, rate: 15000 }}\n    \
             sink: {{ type: postgres, url: \"{}\", table: {t}, create_table: true, mode: upsert }}\n    \
             batch: {{ max_events: 1000, linger: 50ms }}\n    commit_interval: 1s\n",
            sluice_testkit::env::postgres_url()
        ),
    );
    let mut s = w.start(&cfg);
    wait_for(Duration::from_secs(60), "15k rows", || {
        (pg.count(&format!("SELECT count(*) FROM {t}")) > 15_000).then_some(())
    });
    s.kill9();
    let before = pg.count(&format!("SELECT count(*) FROM {t}"));
    assert!(before < 60_000, "the run finished before the kill");

    let mut s = w.start(&cfg);
    assert!(s.wait(Duration::from_secs(120)).success(), "{}", s.logs());
    assert_eq!(pg.count(&format!("SELECT count(*) FROM {t}")), 60_000);
    assert_eq!(
        pg.count(&format!(
            "SELECT count(DISTINCT (payload->>'seq')::int) FROM {t}"
        )),
        60_000
    );
    assert_eq!(
        pg.count(&format!(
            "SELECT count(*) FROM {t} WHERE (payload->>'seq')::int NOT BETWEEN 0 AND 59999 \
             OR event_id <> payload->>'event_id' OR tenant_id <> payload->>'tenant_id'"
        )),
        0
    );
    println!("kill -9 at {before} rows; 60000 rows, one per event, after the restart");
    pg.execute(&format!("DROP TABLE {t}"));
}

#[test]
fn a_row_violating_a_constraint_goes_to_the_dlq_with_its_sqlstate() {
    let pg = Pg::connect();
    let t = table("check");
    pg.execute(&format!(
        "CREATE TABLE {t} (event_id uuid PRIMARY KEY, seq integer NOT NULL CHECK (seq <> 777), \
         severity text, payload jsonb)"
    ));
    let w = Workdir::new();
    let cfg = w.config(
        "pg.yaml",
        &format!(
            "host:\n  data_dir: {{dir}}/data\npipelines:\n  - name: checked\n    \
             source: {{ type: generator, count: 3000 }}\n    \
             sink:\n      type: postgres\n      url: \"{}\"\n      table: {t}\n      \
             columns: {{ event_id: event_id, seq: seq, severity: severity, payload: $value }}\n    \
             batch: {{ max_events: 1000, linger: 50ms }}\n    dead_letter: {{ type: file }}\n",
            sluice_testkit::env::postgres_url()
        ),
    );
    let mut s = w.start(&cfg);
    assert!(s.wait(Duration::from_secs(60)).success(), "{}", s.logs());
    assert_eq!(pg.count(&format!("SELECT count(*) FROM {t}")), 2999);
    assert_eq!(
        pg.count(&format!("SELECT count(*) FROM {t} WHERE seq = 777")),
        0
    );

    let dlq = read_jsonl(&w.join("data/dlq/checked.jsonl"));
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    let d = &dlq[0];
    let value: serde_json::Value = serde_json::from_str(d["value"].as_str().unwrap()).unwrap();
    assert_eq!(value["seq"], 777);
    assert_eq!(
        d["__connect.errors.exception.class.name"],
        "postgres.sqlstate=23514"
    );
    let message = d["__connect.errors.exception.message"].as_str().unwrap();
    assert!(message.contains("violates check constraint"), "{message}");
    // The DLQ keeps PostgreSQL's DETAIL with the row's values; the log line does not.
    let event_id = value["event_id"].as_str().unwrap();
    assert!(
        message.contains("\nDETAIL: Failing row contains (") && message.contains(event_id),
        "{message}"
    );
    assert_eq!(d["__connect.errors.offset"], "777");
    assert_eq!(d["__connect.errors.connector.name"], "checked");
    let logs = s.logs();
    assert!(
        logs.contains("record dead-lettered: new row for relation"),
        "{logs}"
    );
    assert!(
        !logs.contains(event_id) && !logs.contains("Failing row"),
        "row values in the log: {logs}"
    );
    pg.execute(&format!("DROP TABLE {t}"));
}

#[test]
fn upsert_records_without_their_key_go_to_the_dlq_and_the_rest_is_written() {
    let pg = Pg::connect();
    let t = table("nokey");
    pg.execute(&format!(
        "CREATE TABLE {t} (id text UNIQUE, kind text, body jsonb)"
    ));
    let w = Workdir::new();
    std::fs::write(
        w.join("in.jsonl"),
        "{\"kind\":\"no id\"}\n{\"id\":\"a-1\",\"kind\":\"normal\"}\n{\"id\":null,\"kind\":\"null id\"}\n",
    )
    .unwrap();
    let cfg = w.config(
        "pg.yaml",
        &format!(
            "host:\n  data_dir: {{dir}}/data\npipelines:\n  - name: keyed\n    \
             source: {{ type: file, path: \"{{dir}}/in.jsonl\" }}\n    \
             sink:\n      type: postgres\n      url: \"{}\"\n      table: {t}\n      \
             mode: upsert\n      key: [id]\n      \
             columns: {{ id: id, kind: kind, body: $value }}\n    \
             batch: {{ max_events: 10, linger: 200ms }}\n    dead_letter: {{ type: file }}\n",
            sluice_testkit::env::postgres_url()
        ),
    );
    let mut s = w.start(&cfg);
    let dlq_path = w.join("data/dlq/keyed.jsonl");
    wait_for(Duration::from_secs(30), "two dead letters", || {
        (read_jsonl(&dlq_path).len() >= 2).then_some(())
    });
    wait_for(Duration::from_secs(30), "the keyed row", || {
        (pg.count(&format!("SELECT count(*) FROM {t}")) >= 1).then_some(())
    });
    s.sigterm();
    assert!(s.wait(Duration::from_secs(30)).success(), "{}", s.logs());
    assert_eq!(pg.count(&format!("SELECT count(*) FROM {t}")), 1);
    assert_eq!(
        pg.count(&format!(
            "SELECT count(*) FROM {t} WHERE id = 'a-1' AND kind = 'normal'"
        )),
        1
    );
    let dlq = read_jsonl(&dlq_path);
    assert_eq!(dlq.len(), 2, "{dlq:?}");
    let mut kinds = Vec::new();
    for d in &dlq {
        assert_eq!(
            d["__connect.errors.exception.class.name"],
            "postgres.missing_key"
        );
        let message = d["__connect.errors.exception.message"].as_str().unwrap();
        assert!(message.contains("`id`"), "{message}");
        let value: serde_json::Value = serde_json::from_str(d["value"].as_str().unwrap()).unwrap();
        kinds.push(value["kind"].as_str().unwrap().to_string());
    }
    kinds.sort();
    assert_eq!(kinds, ["no id", "null id"]);
    pg.execute(&format!("DROP TABLE {t}"));
}
