//! libsql behind [`Conn`]. libsql's API is async; the pooled store runs
//! every operation on a blocking thread, where each call is driven to its
//! end with the runtime's handle (a local connection does its work
//! synchronously anyway; a remote one waits for the server there).
//!
//! Transactions are begun and ended with plain SQL (`BEGIN IMMEDIATE`,
//! `COMMIT`, `ROLLBACK`) on the pooled connection itself, not with
//! `libsql::Transaction`: the local one panics when a rollback on drop fails,
//! and the remote one opens a separate server stream on which
//! `PRAGMA foreign_keys` (needed by the cascading deletes) was never set.

use libsql::Value;
use mnemosyne_core::Result;
use tokio::runtime::Handle;

use crate::rows::SqlValue;
use crate::sql::{Conn, DbError, DbErrorKind, Row};

/// Starts a write transaction. Foreign keys are switched on first, on the
/// same connection: for a remote database every statement outside a
/// transaction runs on a fresh server stream, so a pragma set when the
/// connection was created would be gone.
const BEGIN: &str = "PRAGMA foreign_keys = ON; BEGIN IMMEDIATE";

/// `SQLITE_CONSTRAINT_UNIQUE` and `SQLITE_CONSTRAINT_PRIMARYKEY` (extended result codes).
const CONSTRAINT_UNIQUE: i32 = 2067;
const CONSTRAINT_PRIMARYKEY: i32 = 1555;

/// `SQLITE_FULL` (primary result code).
const SQLITE_FULL: i32 = 13;

/// The classified error of a libsql error.
pub(super) fn db(error: libsql::Error) -> DbError {
    let kind = match &error {
        libsql::Error::SqliteFailure(code, _) => match *code {
            CONSTRAINT_UNIQUE | CONSTRAINT_PRIMARYKEY => DbErrorKind::UniqueViolation,
            code if code & 0xff == SQLITE_FULL => DbErrorKind::DiskFull,
            code if matches!(code & 0xff, 5 | 6) => DbErrorKind::Busy,
            _ => DbErrorKind::Other,
        },
        // A remote server's error arrives as text.
        other => {
            let text = other.to_string();
            if text.contains("UNIQUE constraint failed")
                || text.contains("SQLITE_CONSTRAINT_UNIQUE")
                || text.contains("SQLITE_CONSTRAINT_PRIMARYKEY")
            {
                DbErrorKind::UniqueViolation
            } else {
                DbErrorKind::Other
            }
        }
    };
    DbError {
        kind,
        message: format!("libsql: {error}"),
    }
}

fn value(param: &SqlValue) -> Value {
    match param {
        SqlValue::Int(v) => Value::Integer(*v),
        SqlValue::Real(v) => Value::Real(*v),
        SqlValue::Text(v) => Value::Text(v.clone()),
        SqlValue::Blob(v) => Value::Blob(v.clone()),
        SqlValue::Null => Value::Null,
    }
}

fn values(params: &[SqlValue]) -> Vec<Value> {
    params.iter().map(value).collect()
}

/// How long a remote server has to answer one request, and its name.
#[derive(Clone, Debug)]
pub(super) struct RequestTimeout {
    pub(super) server: String,
    pub(super) timeout: std::time::Duration,
}

/// A pooled libsql connection and the runtime that drives its calls.
pub struct LibsqlConn {
    pub(super) conn: libsql::Connection,
    pub(super) runtime: Handle,
    /// For a remote server: each call fails after this long.
    pub(super) request_timeout: Option<RequestTimeout>,
}

impl LibsqlConn {
    /// Drives one call of libsql to its end, or (remote) to its timeout.
    fn call<T>(
        &self,
        call: impl std::future::Future<Output = libsql::Result<T>>,
    ) -> std::result::Result<T, DbError> {
        match &self.request_timeout {
            None => self.runtime.block_on(call).map_err(db),
            Some(limit) => match self
                .runtime
                .block_on(async { tokio::time::timeout(limit.timeout, call).await })
            {
                Ok(done) => done.map_err(|e| {
                    let e = db(e);
                    DbError {
                        kind: e.kind,
                        message: format!("libsql server {}: {}", limit.server, e.message),
                    }
                }),
                Err(_elapsed) => Err(DbError {
                    kind: DbErrorKind::Other,
                    message: format!(
                        "libsql server {}: no answer within {} ms (remote_request_timeout_ms)",
                        limit.server,
                        limit.timeout.as_millis()
                    ),
                }),
            },
        }
    }
}

impl std::fmt::Debug for LibsqlConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LibsqlConn")
            .field("autocommit", &self.conn.is_autocommit())
            .finish_non_exhaustive()
    }
}

struct LibsqlRow<'a>(&'a libsql::Row);

impl Row for LibsqlRow<'_> {
    fn value(&self, idx: usize) -> Result<SqlValue> {
        let idx = i32::try_from(idx).unwrap_or(i32::MAX);
        Ok(match self.0.get_value(idx).map_err(db)? {
            Value::Null => SqlValue::Null,
            Value::Integer(v) => SqlValue::Int(v),
            Value::Real(v) => SqlValue::Real(v),
            Value::Text(v) => SqlValue::Text(v),
            Value::Blob(v) => SqlValue::Blob(v),
        })
    }

    fn column_name(&self, idx: usize) -> String {
        let idx = i32::try_from(idx).unwrap_or(i32::MAX);
        self.0.column_name(idx).unwrap_or("?").to_owned()
    }
}

impl Conn for LibsqlConn {
    fn execute(&mut self, sql: &str, params: &[SqlValue]) -> std::result::Result<u64, DbError> {
        self.call(self.conn.execute(sql, values(params)))
    }

    fn execute_batch(&mut self, sql: &str) -> std::result::Result<(), DbError> {
        self.call(self.conn.execute_batch(sql)).map(|_| ())
    }

    fn for_each_row(
        &mut self,
        sql: &str,
        params: &[SqlValue],
        each: &mut dyn FnMut(&dyn Row) -> Result<()>,
    ) -> Result<()> {
        let mut rows = self.call(self.conn.query(sql, values(params)))?;
        // Each row is decoded before the next is fetched: a local row is
        // only a view of the statement's current row.
        while let Some(row) = self.call(rows.next())? {
            each(&LibsqlRow(&row))?;
        }
        Ok(())
    }

    fn begin(&mut self) -> std::result::Result<(), DbError> {
        self.execute_batch(BEGIN)
    }

    fn is_autocommit(&self) -> bool {
        self.conn.is_autocommit()
    }
}
