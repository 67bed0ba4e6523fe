//! Values between hrmig and tiberius: parameters and the columns of a
//! result row.

use super::super::StoreError;
use super::super::sql::{Param, SqlRow, Statement};
use super::Conn;
use crate::dictionary::{Value, datetime};
use tiberius::{ColumnData, ToSql};

/// A DATETIME2(3) value from UTC milliseconds.
pub(super) struct DateTime2(pub(super) i64);

/// Milliseconds in a day.
const DAY_MS: i64 = 86_400_000;

impl ToSql for DateTime2 {
    fn to_sql(&self) -> ColumnData<'_> {
        datetime2(self.0)
    }
}

/// The DATETIME2(3) value of UTC milliseconds: days since 0001-01-01 and
/// milliseconds of the day.
pub(super) fn datetime2(ms: i64) -> ColumnData<'static> {
    let since = ms - datetime::MIN_MS;
    let date = tiberius::time::Date::new(since.div_euclid(DAY_MS) as u32);
    let time = tiberius::time::Time::new(since.rem_euclid(DAY_MS) as u64, 3);
    ColumnData::DateTime2(Some(tiberius::time::DateTime2::new(date, time)))
}

/// UTC milliseconds of a DATETIME2 value.
pub(super) fn millis(data: &ColumnData<'_>) -> Option<i64> {
    match data {
        ColumnData::DateTime2(Some(dt)) => {
            let scale = u32::from(dt.time().scale());
            let per_ms = 10u64.checked_pow(scale.checked_sub(3)?)?;
            let ms_of_day = dt.time().increments() / per_ms;
            Some(datetime::MIN_MS + i64::from(dt.date().days()) * DAY_MS + ms_of_day as i64)
        }
        _ => None,
    }
}

pub(super) fn datetime_at(row: &tiberius::Row, i: usize) -> Result<i64, StoreError> {
    millis(row.get_column_data(i)?)
        .ok_or_else(|| StoreError::Task(format!("column {i} is not a DATETIME2(3)")))
}

pub(super) fn text_at(row: &tiberius::Row, i: usize) -> Result<String, StoreError> {
    Ok(row.try_get::<&str, _>(i)?.unwrap_or_default().to_owned())
}

pub(super) fn int_at<T: for<'a> tiberius::FromSql<'a>>(
    row: &tiberius::Row,
    i: usize,
) -> Result<T, StoreError> {
    row.try_get::<T, _>(i)?
        .ok_or_else(|| StoreError::Task(format!("column {i} is NULL")))
}

/// A value of a dictionary row, as a parameter.
pub(super) fn param(v: &Value) -> Box<dyn ToSql + '_> {
    match v {
        Value::Int(n) => Box::new(*n),
        Value::Text(s) => Box::new(s.as_str()),
        Value::DateTime(ms) => Box::new(DateTime2(*ms)),
    }
}

/// Runs one statement with boxed parameters and returns its rows.
pub(super) async fn rows_of(
    conn: &mut Conn,
    sql: &str,
    params: &[Box<dyn ToSql + '_>],
) -> Result<Vec<tiberius::Row>, StoreError> {
    let refs: Vec<&dyn ToSql> = params.iter().map(|p| &**p as &dyn ToSql).collect();
    Ok(conn.query(sql, &refs).await?.into_first_result().await?)
}

impl ToSql for Param {
    /// Never the untyped NULL some TDS servers refuse (Babelfish: error
    /// 8009, "Data type 0x1F is unknown"): no parameter is NULL.
    fn to_sql(&self) -> ColumnData<'_> {
        match self {
            Param::Text(s) => ColumnData::String(Some(s.as_str().into())),
            Param::Int(n) => ColumnData::I64(Some(*n)),
            Param::Time(ms) => datetime2(*ms),
        }
    }
}

/// Runs a statement; the rows it changed.
pub(super) async fn execute(conn: &mut Conn, st: &Statement) -> Result<u64, StoreError> {
    Ok(conn
        .execute(st.sql.as_str(), &sql_params(st))
        .await?
        .total())
}

/// Runs a query; its rows.
pub(super) async fn query(
    conn: &mut Conn,
    st: &Statement,
) -> Result<Vec<tiberius::Row>, StoreError> {
    let result = conn.query(st.sql.as_str(), &sql_params(st)).await?;
    Ok(result.into_first_result().await?)
}

/// The parameters of a statement as the driver takes them.
pub(super) fn sql_params(st: &Statement) -> Vec<&dyn ToSql> {
    st.params.iter().map(|p| p as &dyn ToSql).collect()
}

impl SqlRow for tiberius::Row {
    fn int(&self, i: usize) -> Result<i64, StoreError> {
        match self.get_column_data(i)? {
            ColumnData::U8(Some(n)) => Ok(i64::from(*n)),
            ColumnData::I16(Some(n)) => Ok(i64::from(*n)),
            ColumnData::I32(Some(n)) => Ok(i64::from(*n)),
            ColumnData::I64(Some(n)) => Ok(*n),
            _ => Err(StoreError::Task(format!("column {i} is not an integer"))),
        }
    }
    fn text(&self, i: usize) -> Result<String, StoreError> {
        text_at(self, i)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        Ok(self.try_get::<&str, _>(i)?.map(str::to_owned))
    }
    fn time(&self, i: usize) -> Result<String, StoreError> {
        Ok(datetime::format(datetime_at(self, i)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn untyped_null(p: &dyn ToSql) -> bool {
        match p.to_sql() {
            ColumnData::Bit(_)
            | ColumnData::U8(_)
            | ColumnData::I16(_)
            | ColumnData::I32(_)
            | ColumnData::I64(_)
            | ColumnData::F32(_)
            | ColumnData::F64(_)
            | ColumnData::Guid(_) => false,
            ColumnData::String(v) => v.is_none(),
            ColumnData::Binary(v) => v.is_none(),
            ColumnData::Numeric(v) => v.is_none(),
            ColumnData::Xml(v) => v.is_none(),
            ColumnData::DateTime(v) => v.is_none(),
            ColumnData::SmallDateTime(v) => v.is_none(),
            ColumnData::Date(v) => v.is_none(),
            ColumnData::Time(v) => v.is_none(),
            ColumnData::DateTime2(v) => v.is_none(),
            ColumnData::DateTimeOffset(v) => v.is_none(),
        }
    }

    #[test]
    fn no_parameter_is_an_untyped_null() {
        assert!(untyped_null(&Option::<&str>::None), "the check can fail");
        for param in [Param::Text(String::new()), Param::Int(0), Param::Time(0)] {
            assert!(!untyped_null(&param), "{param:?}");
        }
    }

    #[test]
    fn datetime2_round_trips_every_accepted_instant() {
        for ms in [
            datetime::MIN_MS,
            datetime::MAX_MS,
            0,
            -1,
            1_627_401_728_000,
            951_782_400_000, // 2000-02-29
        ] {
            let value = DateTime2(ms);
            assert_eq!(millis(&value.to_sql()), Some(ms), "{ms}");
        }
        // A value read at a finer scale is cut to milliseconds.
        let seven = ColumnData::DateTime2(Some(tiberius::time::DateTime2::new(
            tiberius::time::Date::new(0),
            tiberius::time::Time::new(12_345_678, 7),
        )));
        assert_eq!(millis(&seven), Some(datetime::MIN_MS + 1234));
    }
}
