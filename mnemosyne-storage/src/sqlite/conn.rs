//! rusqlite behind [`Conn`]: every statement through the connection's
//! prepared statement cache.

use mnemosyne_core::Result;
use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{Connection, ToSql, params_from_iter};

use crate::rows::SqlValue;
use crate::sql::{Conn, DbError, DbErrorKind, Row};

impl ToSql for SqlValue {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            SqlValue::Int(v) => ToSqlOutput::Owned(Value::Integer(*v)),
            SqlValue::Real(v) => ToSqlOutput::Owned(Value::Real(*v)),
            SqlValue::Text(v) => ToSqlOutput::Borrowed(v.as_str().into()),
            SqlValue::Blob(v) => ToSqlOutput::Borrowed(v.as_slice().into()),
            SqlValue::Null => ToSqlOutput::Owned(Value::Null),
        })
    }
}

/// The classified error of a rusqlite error.
pub(super) fn db(error: rusqlite::Error) -> DbError {
    use rusqlite::ErrorCode;
    let kind = match &error {
        rusqlite::Error::SqliteFailure(e, _)
            if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
        {
            DbErrorKind::UniqueViolation
        }
        _ => match error.sqlite_error_code() {
            Some(ErrorCode::DiskFull) => DbErrorKind::DiskFull,
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => DbErrorKind::Busy,
            _ => DbErrorKind::Other,
        },
    };
    DbError {
        kind,
        message: format!("sqlite: {error}"),
    }
}

/// A pooled rusqlite connection.
#[derive(Debug)]
pub struct SqliteConn(pub(super) Connection);

impl SqliteConn {
    /// The rusqlite connection, for what only this backend does (its vector index).
    pub(super) fn raw(&self) -> &Connection {
        &self.0
    }
}

struct RusqliteRow<'a, 'stmt>(&'a rusqlite::Row<'stmt>);

impl Row for RusqliteRow<'_, '_> {
    fn value(&self, idx: usize) -> Result<SqlValue> {
        Ok(match self.0.get_ref(idx).map_err(db)? {
            ValueRef::Null => SqlValue::Null,
            ValueRef::Integer(v) => SqlValue::Int(v),
            ValueRef::Real(v) => SqlValue::Real(v),
            ValueRef::Text(bytes) => {
                SqlValue::Text(String::from_utf8(bytes.to_vec()).map_err(|_| {
                    mnemosyne_core::Error::Storage(format!(
                        "column {} holds text that is not UTF-8",
                        self.column_name(idx)
                    ))
                })?)
            }
            ValueRef::Blob(bytes) => SqlValue::Blob(bytes.to_vec()),
        })
    }

    fn column_name(&self, idx: usize) -> String {
        self.0.as_ref().column_name(idx).unwrap_or("?").to_owned()
    }
}

impl Conn for SqliteConn {
    fn execute(&mut self, sql: &str, params: &[SqlValue]) -> std::result::Result<u64, DbError> {
        let changed = self
            .0
            .prepare_cached(sql)
            .and_then(|mut stmt| stmt.execute(params_from_iter(params)))
            .map_err(db)?;
        Ok(changed as u64)
    }

    fn execute_batch(&mut self, sql: &str) -> std::result::Result<(), DbError> {
        self.0.execute_batch(sql).map_err(db)
    }

    fn for_each_row(
        &mut self,
        sql: &str,
        params: &[SqlValue],
        each: &mut dyn FnMut(&dyn Row) -> Result<()>,
    ) -> Result<()> {
        let mut stmt = self.0.prepare_cached(sql).map_err(db)?;
        let mut rows = stmt.query(params_from_iter(params)).map_err(db)?;
        while let Some(row) = rows.next().map_err(db)? {
            each(&RusqliteRow(row))?;
        }
        Ok(())
    }

    fn begin(&mut self) -> std::result::Result<(), DbError> {
        self.execute("BEGIN IMMEDIATE", &[]).map(|_| ())
    }

    fn is_autocommit(&self) -> bool {
        self.0.is_autocommit()
    }
}
