//! What a PostgreSQL error means for the batch: one bad row, or the whole batch.

use sluice_sdk::http::with_causes;
use sluice_sdk::SinkError;
use tokio_postgres::error::SqlState;

/// What a failed write means for the batch.
#[derive(Debug)]
pub enum Verdict {
    /// A row of the statement is at fault (constraint, bad value): split the batch to find it.
    Row { code: String, message: String },
    /// Nothing of the batch was written for a reason that is not about its rows.
    Batch(SinkError),
}

impl Verdict {
    /// Whether the connection must be dropped and made anew on the next send.
    pub fn breaks_connection(&self) -> bool {
        matches!(
            self,
            Verdict::Batch(SinkError::Unavailable { .. }) | Verdict::Batch(SinkError::Fatal(_))
        )
    }
}

/// The SQLSTATE classes a single row can cause: data exceptions (22: bad value for the
/// type, string too long, NUL byte), integrity violations (23: NOT NULL, CHECK, UNIQUE,
/// FOREIGN KEY), an ON CONFLICT target hit twice (21000) and a too large row (54000).
fn is_row_error(code: &str) -> bool {
    code.starts_with("22") || code.starts_with("23") || code == "21000" || code == "54000"
}

/// Codes that say "try again later": the connection or server (08, 57P0x operator/crash
/// shutdown, 53 resources), lock or serialisation conflicts (40, 55P03), a read-only
/// server after a failover (25006), I/O errors (58), a cancelled statement (57014).
fn is_transient(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("40")
        || code.starts_with("58")
        || code.starts_with("57")
        || code == "55P03"
        || code == "55006"
        || code == "25006"
}

/// Classifies an error of a write.
pub fn classify(e: &tokio_postgres::Error) -> Verdict {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        if is_row_error(code) {
            return Verdict::Row {
                code: code.to_string(),
                message: row_message(code, db.message(), db.detail()),
            };
        }
        let mut message = db.message().to_string();
        if let Some(detail) = db.detail() {
            message.push_str("; DETAIL: ");
            message.push_str(detail);
        }
        let text = format!("PostgreSQL error {code}: {message}");
        if is_transient(code) {
            return Verdict::Batch(SinkError::unavailable(text));
        }
        if code.starts_with("28") || *db.code() == SqlState::INSUFFICIENT_PRIVILEGE {
            return Verdict::Batch(SinkError::Unauthorized(text));
        }
        return Verdict::Batch(SinkError::Fatal(text));
    }
    // No SQLSTATE: the socket closed, an I/O error, a protocol desync. The batch may or may
    // not have been applied; the host sends it again (idempotent with mode: upsert).
    Verdict::Batch(SinkError::unavailable(format!(
        "PostgreSQL connection: {}",
        with_causes(e)
    )))
}

/// The rejection message of a refused row: a first line without the row's values (what logs
/// show), then PostgreSQL's whole message and its `DETAIL` (`Failing row contains (...)`,
/// `Key (id)=(...) already exists`), which only the dead-letter queue keeps. Data exceptions
/// (class 22) quote the bad value after a colon (`invalid input syntax for type integer:
/// "fast"`): the first line stops before it.
pub fn row_message(code: &str, message: &str, detail: Option<&str>) -> String {
    let summary = match message.split_once(": ") {
        Some((head, _)) if code.starts_with("22") => head,
        _ => message,
    };
    let mut rest = String::new();
    if summary.len() < message.len() {
        rest.push_str(message);
    }
    if let Some(detail) = detail {
        if !rest.is_empty() {
            rest.push('\n');
        }
        rest.push_str("DETAIL: ");
        rest.push_str(detail);
    }
    sluice_sdk::dead_letter::with_detail(summary, &rest)
}

/// Classifies a failed connection attempt (refused, timed out, authentication).
pub fn classify_connect(e: &tokio_postgres::Error) -> SinkError {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        let text = format!("PostgreSQL error {code}: {}", db.message());
        if code.starts_with("28") {
            return SinkError::Unauthorized(text);
        }
        if code == "3D000" {
            // Database does not exist: a configuration problem.
            return SinkError::Fatal(text);
        }
        return SinkError::unavailable(text);
    }
    SinkError::unavailable(format!("cannot connect to PostgreSQL: {}", with_causes(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_values_stay_off_the_first_line() {
        let m = row_message(
            "23514",
            "new row for relation \"t\" violates check constraint \"c\"",
            Some("Failing row contains (7, secret)."),
        );
        let summary = sluice_sdk::dead_letter::message_summary(&m);
        assert_eq!(
            summary,
            "new row for relation \"t\" violates check constraint \"c\""
        );
        assert!(
            m.ends_with("\nDETAIL: Failing row contains (7, secret)."),
            "{m}"
        );
        let m = row_message(
            "22P02",
            "invalid input syntax for type integer: \"secret\"",
            None,
        );
        assert_eq!(
            sluice_sdk::dead_letter::message_summary(&m),
            "invalid input syntax for type integer"
        );
        assert!(m.contains("\"secret\""), "{m}");
    }

    #[test]
    fn row_and_transient_codes() {
        assert!(is_row_error("23505"));
        assert!(is_row_error("23514"));
        assert!(is_row_error("22P02"));
        assert!(!is_row_error("42703"));
        assert!(is_transient("57P01"));
        assert!(is_transient("08006"));
        assert!(is_transient("40P01"));
        assert!(!is_transient("42P01"));
    }
}
