//! The T-SQL of the SQL Server backend's own paths: multi-row inserts
//! under the parameter limit, the race-settling insert of a batch, and the
//! staging table of a restore.

use super::super::{Dialect, Table, ddl};

/// Parameters one request may carry: SQL Server's limit is 2100, and
/// `sp_executesql` takes two of them for the statement and its declaration.
pub(super) const MAX_PARAMS: usize = 2098;
/// Rows one `INSERT … VALUES` may list.
const MAX_VALUES_ROWS: usize = 1000;

/// Quotes an identifier from the dictionary or the bookkeeping tables.
pub(super) fn q(ident: &str) -> String {
    Dialect::Mssql.quote(ident)
}

/// Every column of `table`, quoted, as columns of the alias `alias`.
fn aliased(table: Table, alias: &str) -> String {
    let names: Vec<String> = table
        .columns()
        .iter()
        .map(|c| format!("{alias}.{}", q(c.name)))
        .collect();
    names.join(", ")
}

/// Rows one multi-row statement of `width` columns may carry.
pub(super) fn rows_per_statement(width: usize) -> usize {
    (MAX_PARAMS / width.max(1)).min(MAX_VALUES_ROWS)
}

/// `(@P1, @P2), (@P3, @P4)…`: `rows` tuples of `width` placeholders,
/// numbered from `@P{first}`.
pub(super) fn values(rows: usize, width: usize, first: usize) -> String {
    let tuples: Vec<String> = (0..rows)
        .map(|r| {
            let marks: Vec<String> = (0..width)
                .map(|c| format!("@P{}", first + r * width + c))
                .collect();
            format!("({})", marks.join(", "))
        })
        .collect();
    tuples.join(", ")
}

/// A plain multi-row insert of `rows` rows of `table` into `target` (the
/// table itself, or a restore's staging table).
pub(super) fn insert_sql(target: &str, table: Table, rows: usize) -> String {
    format!(
        "INSERT INTO {} ({}) VALUES {}",
        target,
        Dialect::Mssql.table_columns(table),
        values(rows, table.columns().len(), 1)
    )
}

/// An insert that skips ids already in the table and returns the ids it
/// inserted. `UPDLOCK, HOLDLOCK` keep the checked key range locked until
/// the commit, so a concurrent writer of the same id waits, then skips it.
pub(super) fn conflict_insert_sql(table: Table, rows: usize) -> String {
    let cols = Dialect::Mssql.table_columns(table);
    let from_values = aliased(table, "v");
    format!(
        "INSERT INTO {t} ({cols}) OUTPUT inserted.{id}
         SELECT {from} FROM (VALUES {vals}) AS v ({cols})
         WHERE NOT EXISTS (SELECT 1 FROM {t} WITH (UPDLOCK, HOLDLOCK) WHERE {t}.{id} = v.{id})",
        t = q(table.name()),
        id = q("id"),
        from = from_values,
        vals = values(rows, table.columns().len(), 1),
    )
}

/// The ids of `table` among a JSON array of ids (`@P1`): one parameter,
/// Replaces the stored rows of the ids among `rows` rows of values,
/// returning the ids it replaced; the others are left to an insert.
/// `UPDLOCK, HOLDLOCK` keep the rows locked until the commit.
pub(super) fn update_sql(table: Table, rows: usize) -> String {
    let sets: Vec<String> = (table.columns().iter().enumerate())
        .filter(|(i, _)| *i != Table::PRIMARY_KEY)
        .map(|(_, c)| format!("{n} = v.{n}", n = q(c.name)))
        .collect();
    format!(
        "UPDATE {t} SET {sets} OUTPUT inserted.{id}
         FROM {t} WITH (UPDLOCK, HOLDLOCK) JOIN (VALUES {vals}) AS v ({cols}) ON v.{id} = {t}.{id}",
        t = q(table.name()),
        id = q("id"),
        sets = sets.join(", "),
        vals = values(rows, table.columns().len(), 1),
        cols = Dialect::Mssql.table_columns(table),
    )
}

/// whatever the number of ids.
pub(super) fn existing_sql(table: Table) -> String {
    format!(
        "SELECT {id} FROM {t} WHERE {id} IN (SELECT CAST([value] AS INT) FROM OPENJSON(@P1))",
        id = q("id"),
        t = q(table.name())
    )
}

/// Inserts `rows` rejections (table, source, position, raw, errors, time).
pub(super) fn rejection_insert_sql(rows: usize) -> String {
    format!(
        "INSERT INTO {} ([table_name], [source], [position], [raw], [errors], [rejected_at]) VALUES {}",
        q(ddl::REJECTIONS),
        values(rows, 6, 1)
    )
}

/// The temporary table a restore of a referenced table is staged in.
pub(super) const STAGE: &str = "#hrmig_restore";

/// Creates [`STAGE`] with `table`'s columns and primary key, so a repeated
/// id in a backup is refused as it is staged.
pub(super) fn stage_sql(table: Table) -> String {
    let cols: Vec<String> = table
        .columns()
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let key = if i == Table::PRIMARY_KEY {
                " PRIMARY KEY"
            } else {
                ""
            };
            let ty = ddl::column_type(Dialect::Mssql, c.ty);
            format!("{} {ty} NOT NULL{key}", q(c.name))
        })
        .collect();
    format!("CREATE TABLE {STAGE} ({})", cols.join(", "))
}

/// Makes `table` hold exactly the rows of [`STAGE`] with every foreign key
/// left on: the rows not staged are deleted, the others updated in place,
/// the new ones inserted. (Switching the children's keys off with `NOCHECK`
/// would be shorter, but not every TDS server has it, and a key switched
/// off is one more thing a failure could leave behind.)
pub(super) fn apply_stage_sql(table: Table) -> [String; 3] {
    let t = q(table.name());
    let id = q("id");
    let sets: Vec<String> = table
        .columns()
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != Table::PRIMARY_KEY)
        .map(|(_, c)| format!("{n} = s.{n}", n = q(c.name)))
        .collect();
    let from = aliased(table, "s");
    [
        format!(
            "DELETE FROM {t} WHERE NOT EXISTS (SELECT 1 FROM {STAGE} s WHERE s.{id} = {t}.{id})"
        ),
        format!(
            "UPDATE {t} SET {} FROM {t} JOIN {STAGE} s ON s.{id} = {t}.{id}",
            sets.join(", ")
        ),
        format!(
            "INSERT INTO {t} ({}) SELECT {} FROM {STAGE} s \
             WHERE NOT EXISTS (SELECT 1 FROM {t} WHERE {t}.{id} = s.{id})",
            Dialect::Mssql.table_columns(table),
            from
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_stay_under_the_parameter_and_row_limits() {
        for table in Table::ALL {
            let width = table.columns().len();
            let rows = rows_per_statement(width);
            assert!(rows * width <= MAX_PARAMS && rows <= MAX_VALUES_ROWS);
            // As many rows as fit: one more would not.
            assert!(rows == MAX_VALUES_ROWS || (rows + 1) * width > MAX_PARAMS);
            let sql = conflict_insert_sql(table, rows);
            assert_eq!(sql.matches("@P").count(), rows * width);
            assert!(sql.contains(&format!("@P{}", rows * width)));
            assert!(!sql.contains(&format!("@P{}", rows * width + 1)));
        }
        assert_eq!(rows_per_statement(5), 419);
        assert_eq!(rows_per_statement(6), 349);
        assert_eq!(rows_per_statement(1), 1000);
        assert_eq!(rejection_insert_sql(349).matches("@P").count(), 2094);
    }

    #[test]
    fn placeholders_are_numbered_row_after_row() {
        assert_eq!(values(2, 3, 1), "(@P1, @P2, @P3), (@P4, @P5, @P6)");
        assert_eq!(values(1, 2, 5), "(@P5, @P6)");
        assert_eq!(
            insert_sql("[jobs]", Table::Jobs, 2),
            "INSERT INTO [jobs] ([id], [job]) VALUES (@P1, @P2), (@P3, @P4)"
        );
    }

    #[test]
    fn the_conflict_insert_skips_taken_ids_under_a_range_lock_and_says_which_it_took() {
        let sql = conflict_insert_sql(Table::Departments, 2);
        let flat = sql.split_whitespace().collect::<Vec<_>>().join(" ");
        assert_eq!(
            flat,
            "INSERT INTO [departments] ([id], [department]) OUTPUT inserted.[id] \
             SELECT v.[id], v.[department] FROM (VALUES (@P1, @P2), (@P3, @P4)) AS v ([id], [department]) \
             WHERE NOT EXISTS (SELECT 1 FROM [departments] WITH (UPDLOCK, HOLDLOCK) \
             WHERE [departments].[id] = v.[id])"
        );
        assert_eq!(
            existing_sql(Table::Jobs),
            "SELECT [id] FROM [jobs] WHERE [id] IN (SELECT CAST([value] AS INT) FROM OPENJSON(@P1))"
        );
    }

    #[test]
    fn an_update_replaces_every_column_but_the_id_and_says_which_ids() {
        assert_eq!(
            update_sql(Table::Jobs, 2),
            "UPDATE [jobs] SET [job] = v.[job] OUTPUT inserted.[id]
         FROM [jobs] WITH (UPDLOCK, HOLDLOCK) JOIN (VALUES (@P1, @P2), (@P3, @P4)) AS v ([id], [job]) ON v.[id] = [jobs].[id]"
        );
    }

    #[test]
    fn restores_of_a_referenced_table_are_staged_and_merged_with_keys_on() {
        assert_eq!(
            stage_sql(Table::Departments),
            "CREATE TABLE #hrmig_restore ([id] INT NOT NULL PRIMARY KEY, \
             [department] NVARCHAR(255) NOT NULL)"
        );
        assert_eq!(
            apply_stage_sql(Table::Departments),
            [
                "DELETE FROM [departments] WHERE NOT EXISTS \
                 (SELECT 1 FROM #hrmig_restore s WHERE s.[id] = [departments].[id])",
                "UPDATE [departments] SET [department] = s.[department] \
                 FROM [departments] JOIN #hrmig_restore s ON s.[id] = [departments].[id]",
                "INSERT INTO [departments] ([id], [department]) SELECT s.[id], s.[department] \
                 FROM #hrmig_restore s WHERE NOT EXISTS \
                 (SELECT 1 FROM [departments] WHERE [departments].[id] = s.[id])",
            ]
        );
        assert_eq!(
            Table::Departments.children().collect::<Vec<_>>(),
            [Table::HiredEmployees]
        );
        for table in Table::ALL {
            for sql in apply_stage_sql(table) {
                assert!(!sql.contains("NOCHECK"), "{sql}");
            }
        }
    }
}
