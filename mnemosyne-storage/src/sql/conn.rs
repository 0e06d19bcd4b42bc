//! The small synchronous connection every backend adapts its driver to:
//! statements with [`SqlValue`] parameters, rows read as owned values,
//! transactions, and the few error kinds the operations tell apart.

use mnemosyne_core::{Error, Result};

use crate::rows::SqlValue;

/// What an operation needs to know about a driver's error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbErrorKind {
    /// A UNIQUE or PRIMARY KEY constraint refused the row.
    UniqueViolation,
    /// SQLITE_BUSY or SQLITE_LOCKED: another connection holds the lock.
    Busy,
    /// SQLITE_FULL: the disk is full, or the file reached its size limit.
    DiskFull,
    /// Anything else.
    Other,
}

/// A driver error, classified; its message names the driver.
#[derive(Clone, Debug)]
pub struct DbError {
    /// What kind of failure it is.
    pub kind: DbErrorKind,
    /// The driver's message, prefixed with the backend's name.
    pub message: String,
}

impl DbError {
    /// True for a refused UNIQUE or PRIMARY KEY.
    pub fn is_unique_violation(&self) -> bool {
        self.kind == DbErrorKind::UniqueViolation
    }

    /// True when another connection holds the lock.
    pub fn is_busy(&self) -> bool {
        self.kind == DbErrorKind::Busy
    }
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<DbError> for Error {
    /// A full disk is [`Error::DiskFull`] (the pooled store names the file);
    /// everything else a storage error.
    fn from(error: DbError) -> Self {
        match error.kind {
            DbErrorKind::DiskFull => Error::disk_full(error.message),
            _ => Error::Storage(error.message),
        }
    }
}

/// One row of a result, read column by column as owned values.
pub trait Row {
    /// The value of column `idx` (0-based).
    fn value(&self, idx: usize) -> Result<SqlValue>;

    /// The name of column `idx`, for error messages.
    fn column_name(&self, idx: usize) -> String;

    /// An INTEGER column.
    fn int(&self, idx: usize) -> Result<i64> {
        match self.value(idx)? {
            SqlValue::Int(v) => Ok(v),
            other => Err(self.type_error(idx, "an integer", &other)),
        }
    }

    /// A number column (an INTEGER is widened).
    fn real(&self, idx: usize) -> Result<f64> {
        match self.value(idx)? {
            SqlValue::Real(v) => Ok(v),
            SqlValue::Int(v) => Ok(v as f64),
            other => Err(self.type_error(idx, "a number", &other)),
        }
    }

    /// A TEXT column, or a BLOB holding UTF-8 (how memory texts are read:
    /// see [`crate::rows::MEMORY_COLUMNS`]).
    fn text(&self, idx: usize) -> Result<String> {
        self.opt_text(idx)?
            .ok_or_else(|| self.type_error(idx, "text", &SqlValue::Null))
    }

    /// A TEXT (or UTF-8 BLOB) column that may be NULL.
    fn opt_text(&self, idx: usize) -> Result<Option<String>> {
        match self.value(idx)? {
            SqlValue::Null => Ok(None),
            SqlValue::Text(v) => Ok(Some(v)),
            SqlValue::Blob(bytes) => String::from_utf8(bytes).map(Some).map_err(|_| {
                Error::Storage(format!(
                    "column {} holds text that is not UTF-8",
                    self.column_name(idx)
                ))
            }),
            other => Err(self.type_error(idx, "text or NULL", &other)),
        }
    }

    /// An INTEGER column that may be NULL.
    fn opt_int(&self, idx: usize) -> Result<Option<i64>> {
        match self.value(idx)? {
            SqlValue::Null => Ok(None),
            SqlValue::Int(v) => Ok(Some(v)),
            other => Err(self.type_error(idx, "an integer or NULL", &other)),
        }
    }

    /// A BLOB column.
    fn blob(&self, idx: usize) -> Result<Vec<u8>> {
        match self.value(idx)? {
            SqlValue::Blob(v) => Ok(v),
            other => Err(self.type_error(idx, "a blob", &other)),
        }
    }

    /// The error for a column that holds the wrong type.
    fn type_error(&self, idx: usize, expected: &str, found: &SqlValue) -> Error {
        let found = match found {
            SqlValue::Null => "NULL",
            SqlValue::Int(_) => "an integer",
            SqlValue::Real(_) => "a real",
            SqlValue::Text(_) => "text",
            SqlValue::Blob(_) => "a blob",
        };
        Error::Storage(format!(
            "column {} holds {found}, expected {expected}",
            self.column_name(idx)
        ))
    }
}

/// A database connection, as the operations in [`crate::sql`] use it. Every
/// call blocks: the pooled store runs operations on a blocking thread.
pub trait Conn {
    /// Runs one statement; returns the number of rows it changed.
    fn execute(&mut self, sql: &str, params: &[SqlValue]) -> std::result::Result<u64, DbError>;

    /// Runs a script of statements without parameters.
    fn execute_batch(&mut self, sql: &str) -> std::result::Result<(), DbError>;

    /// Runs a query and hands each row to `each`, in order, stopping at the
    /// first error (its own or one `each` returns).
    fn for_each_row(
        &mut self,
        sql: &str,
        params: &[SqlValue],
        each: &mut dyn FnMut(&dyn Row) -> Result<()>,
    ) -> Result<()>;

    /// Starts a write transaction (`BEGIN IMMEDIATE`: the write lock at once).
    fn begin(&mut self) -> std::result::Result<(), DbError>;

    /// True outside any transaction.
    fn is_autocommit(&self) -> bool;

    /// Every row of a query, decoded.
    fn query_all<T>(
        &mut self,
        sql: &str,
        params: &[SqlValue],
        decode: impl Fn(&dyn Row) -> Result<T>,
    ) -> Result<Vec<T>>
    where
        Self: Sized,
    {
        let mut out = Vec::new();
        self.for_each_row(sql, params, &mut |row| {
            out.push(decode(row)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// The first row of a query, if any.
    fn query_first<T>(
        &mut self,
        sql: &str,
        params: &[SqlValue],
        decode: impl Fn(&dyn Row) -> Result<T>,
    ) -> Result<Option<T>>
    where
        Self: Sized,
    {
        let mut first = None;
        self.for_each_row(sql, params, &mut |row| {
            if first.is_none() {
                first = Some(decode(row)?);
            }
            Ok(())
        })?;
        Ok(first)
    }

    /// The one row a query returns.
    fn query_one<T>(
        &mut self,
        sql: &str,
        params: &[SqlValue],
        decode: impl Fn(&dyn Row) -> Result<T>,
    ) -> Result<T>
    where
        Self: Sized,
    {
        self.query_first(sql, params, decode)?
            .ok_or_else(|| Error::Storage(format!("no row returned by {sql}")))
    }
}

/// Runs `work` inside a write transaction: committed when it succeeds,
/// rolled back when it (or the commit) fails.
pub fn transaction<C: Conn, T>(conn: &mut C, work: impl FnOnce(&mut C) -> Result<T>) -> Result<T> {
    conn.begin()?;
    let outcome = work(conn);
    finish(conn, outcome)
}

/// Runs reads inside one deferred transaction, so that they all see the
/// same snapshot of the database; inside a transaction already, in that one.
pub fn read_transaction<C: Conn, T>(
    conn: &mut C,
    work: impl FnOnce(&mut C) -> Result<T>,
) -> Result<T> {
    if !conn.is_autocommit() {
        return work(conn);
    }
    conn.execute("BEGIN", &[])?;
    let outcome = work(conn);
    finish(conn, outcome)
}

/// Commits after `outcome` succeeded, rolls back after it failed.
fn finish<C: Conn, T>(conn: &mut C, outcome: Result<T>) -> Result<T> {
    match outcome {
        Ok(value) => match conn.execute("COMMIT", &[]) {
            Ok(_) => Ok(value),
            Err(e) => {
                rollback(conn);
                Err(match Error::from(e) {
                    Error::Storage(message) => Error::Storage(format!("commit failed: {message}")),
                    other => other,
                })
            }
        },
        Err(e) => {
            rollback(conn);
            Err(e)
        }
    }
}

fn rollback<C: Conn>(conn: &mut C) {
    if conn.is_autocommit() {
        return;
    }
    if let Err(e) = conn.execute("ROLLBACK", &[]) {
        // The pool throws the connection away when it comes back still inside a transaction.
        tracing::warn!(error = %e, "rollback failed");
    }
}
