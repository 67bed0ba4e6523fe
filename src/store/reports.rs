//! The reports (hires per department and job by quarter; departments hiring
//! above the mean), read from counts kept beside the hires rather than from
//! a scan of them: a scan of 2 M hires took 0.4 to 2.5 s a report.
//!
//! The gold views (`ddl::reports`) stay the definition BI tools read. The
//! API and the CLI read the same figures from [`COUNTS`]: hires per year,
//! department and job, a column per quarter (UTC), which every change to a
//! hire keeps true in the transaction that makes it:
//! - on SQLite the writer connection tallies each change to a hire as
//!   SQLite makes it (a pre-update hook, see `sqlite::counts`) and appends
//!   the [`Tally`] to [`CHANGES`] before the commit; the writer folds them
//!   into the counts now and then (SQLite has one writer).
//! - on PostgreSQL each change appends a tally to [`CHANGES`] (one row of
//!   seven arrays), so that concurrent writers never wait on one another's
//!   count rows: statement triggers tally updates and deletes, whoever the writer, and hrmig the
//!   hires it inserts (see [`pg_triggers`]). A report reads the counts and
//!   the changes not folded yet in one statement, from one snapshot; it
//!   folds them first ([`fold`]) unless another fold runs, or counts the
//!   table again ([`recount`]) after another program inserted hires.
//! - SQL Server reads the views.

use super::sql::{SqlRow, Statement};
use super::{DepartmentHires, Dialect, QuarterRow, StoreError};
use crate::dictionary::{Row, Table, Value, datetime};
use rustc_hash::FxHashMap;
use std::sync::LazyLock;

/// Hires per year, department and job: `q1` to `q4`.
pub const COUNTS: &str = "hrmig_hire_counts";
/// The tallies of transactions (SQLite) or statements (PostgreSQL), not
/// folded into [`COUNTS`] yet, each one row: its groups packed as varints
/// (SQLite) or as seven arrays (PostgreSQL).
pub const CHANGES: &str = "hrmig_hire_count_changes";
/// PostgreSQL: a row for each insert another program made, whose rows
/// nobody counted; the next report counts the table again ([`recount`]).
pub const UNCOUNTED: &str = "hrmig_hire_inserts_uncounted";
/// PostgreSQL: the session setting of hrmig's connections, which count the
/// hires they insert themselves (see [`pg_function`]).
pub const COUNTED_OPTION: &str = "-c hrmig.counted=on";

/// A tally's groups as [`COUNTS`] keys them: (year, department, job).
type Group = (i32, i32, i32);

/// A group whose counts change, and by how much each quarter.
pub(super) type Changed = (Group, [i32; 4]);

/// Changes to hires per year, department and job, by quarter: what one
/// transaction adds to [`COUNTS`].
#[derive(Debug, Default)]
pub(super) struct Tally {
    /// Within a transaction a count changes by less than 2^31 (more is
    /// refused): half the memory of 64-bit counts, which a lookup per row
    /// misses in the caches less often.
    groups: FxHashMap<Group, [i32; 4]>,
    /// Why a change could not be counted: the transaction then fails
    /// rather than commit counts that are not true.
    uncounted: Option<String>,
}

impl Tally {
    /// Counts `n` hires (1 in, -1 out) at `datetime`, a canonical UTC text
    /// (`YYYY-MM-DDTHH:MM:SS…`, see `dictionary::datetime::format`).
    pub(super) fn add(&mut self, datetime: &[u8], department: i64, job: i64, n: i32) {
        match year_quarter(datetime) {
            Some((year, quarter)) => match (i32::try_from(department), i32::try_from(job)) {
                (Ok(department), Ok(job)) => self.add_at(year, quarter, department, job, n),
                _ => self.refuse(format!("a hire's ids {department}, {job} out of range")),
            },
            None => self.refuse(format!(
                "a hire's datetime {:?} is not in canonical form",
                String::from_utf8_lossy(datetime)
            )),
        }
    }

    fn add_at(&mut self, year: i32, quarter: usize, department: i32, job: i32, n: i32) {
        let count = &mut self.groups.entry((year, department, job)).or_default()[quarter];
        match count.checked_add(n) {
            Some(sum) => *count = sum,
            None => self.refuse("a count changed by 2^31 or more".into()),
        }
    }

    /// Counts `n` hires (1 in, -1 out) of a row of the hires.
    pub(super) fn add_row(&mut self, row: &Row, n: i32) {
        let [at, department, job] = HIRE_COLUMNS.map(|i| row.0.get(i));
        match (at, department, job) {
            (Some(Value::DateTime(ms)), Some(Value::Int(d)), Some(Value::Int(j))) => {
                let (year, month) = datetime::year_month(*ms);
                let quarter = (month as usize - 1) / 3;
                self.add_at(year as i32, quarter, *d, *j, n);
            }
            _ => self.refuse(format!(
                "a row of {} of another shape",
                Table::HiredEmployees.name()
            )),
        }
    }

    /// Adds another tally's changes.
    pub(super) fn merge(&mut self, other: Tally) {
        for (group, counts) in other.groups {
            for (quarter, n) in counts.into_iter().enumerate() {
                self.add_at(group.0, quarter, group.1, group.2, n);
            }
        }
        if let Some(why) = other.uncounted {
            self.refuse(why);
        }
    }

    /// Records a change that could not be counted.
    pub(super) fn refuse(&mut self, why: String) {
        self.uncounted.get_or_insert(why);
    }

    /// Whether nothing was counted or refused.
    pub(super) fn is_empty(&self) -> bool {
        self.groups.is_empty() && self.uncounted.is_none()
    }

    /// Forgets everything (the transaction was rolled back).
    pub(super) fn clear(&mut self) {
        self.groups.clear();
        self.uncounted = None;
    }

    /// The groups whose counts change, emptying the tally; an error if a
    /// change could not be counted.
    pub(super) fn take(&mut self) -> Result<Vec<Changed>, StoreError> {
        if let Some(why) = self.uncounted.take() {
            self.groups.clear();
            return Err(StoreError::Task(format!("the hire counts: {why}")));
        }
        let mut changed: Vec<Changed> = (self.groups.drain())
            .filter(|(_, counts)| counts.iter().any(|&n| n != 0))
            .collect();
        // In key order: the counts' B-tree is written front to back.
        changed.sort_unstable_by_key(|(group, _)| *group);
        Ok(changed)
    }
}

/// See [`hire_columns`].
pub(super) static HIRE_COLUMNS: LazyLock<[usize; 3]> = LazyLock::new(hire_columns);

/// The positions of `datetime`, `department_id` and `job_id` in a row of
/// the hires: the columns the views group by.
fn hire_columns() -> [usize; 3] {
    let at = |name: &str| {
        (Table::HiredEmployees.columns().iter())
            .position(|c| c.name == name)
            .unwrap_or(usize::MAX)
    };
    [at("datetime"), at("department_id"), at("job_id")]
}

/// The year and the quarter (0 to 3) of a canonical datetime text, as the
/// views compute them: its first four digits, and its month.
fn year_quarter(datetime: &[u8]) -> Option<(i32, usize)> {
    let digits = |s: &[u8]| -> Option<u32> {
        s.iter().try_fold(0u32, |n, &b| {
            b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
        })
    };
    let year = digits(datetime.get(0..4)?)?;
    let month = digits(datetime.get(5..7)?)?;
    if datetime.get(4) != Some(&b'-') || !(1..=12).contains(&month) {
        return None;
    }
    Some((year as i32, (month as usize - 1) / 3))
}

/// SQLite: appends a transaction's tally to [`CHANGES`] as one row, its
/// groups packed ([`sqlite_pack`]). One row rather than a row per group: a
/// batch of varied hires changes most of the counts, and a row per group
/// (about 730 a batch) halved the API's rate, as adding to the counts in
/// place did.
pub(super) fn sqlite_add() -> String {
    format!("INSERT INTO \"{CHANGES}\" (tally) VALUES (?1)")
}

/// The numbers of a group in a packed tally: year, department, job and the
/// four quarters' changes, each a zigzag LEB128 varint (mostly one or two
/// bytes: a batch's tally takes about 8 bytes a group). Packed rather
/// than JSON, where SQLite's `json_each` took about 1.5 µs a group, so
/// that a fold of 256 batches' changes stalled the writer for 300 to
/// 450 ms; and small, as the tally is written with every transaction.
const NUMBERS: usize = 7;

/// The blob of [`sqlite_add`].
pub(super) fn sqlite_pack(changed: &[Changed]) -> Vec<u8> {
    let mut packed = Vec::with_capacity(changed.len() * 10);
    for ((year, department, job), quarters) in changed {
        for &n in [*year, *department, *job].iter().chain(quarters) {
            let mut zigzag = ((n << 1) ^ (n >> 31)) as u32;
            while zigzag >= 0x80 {
                packed.push(zigzag as u8 | 0x80);
                zigzag >>= 7;
            }
            packed.push(zigzag as u8);
        }
    }
    packed
}

/// What a fold adds to the counts: per group, each quarter's sum.
pub(super) type Sums = FxHashMap<Group, [i64; 4]>;

/// Adds a blob of [`sqlite_pack`] to `sums`.
pub(super) fn sqlite_unpack(packed: &[u8], sums: &mut Sums) -> Result<(), StoreError> {
    let mut bytes = packed.iter();
    while bytes.len() > 0 {
        let mut numbers = [0; NUMBERS];
        for n in &mut numbers {
            *n = varint(&mut bytes).ok_or_else(|| {
                StoreError::Task(format!(
                    "a hire-count change of {} bytes is cut short or garbled",
                    packed.len()
                ))
            })?;
        }
        let sum = sums
            .entry((numbers[0], numbers[1], numbers[2]))
            .or_default();
        for (total, n) in sum.iter_mut().zip(&numbers[3..]) {
            *total += i64::from(*n);
        }
    }
    Ok(())
}

/// The next number of a packed tally, if it is whole and fits 32 bits.
fn varint(bytes: &mut std::slice::Iter<'_, u8>) -> Option<i32> {
    let mut zigzag = 0u32;
    for shift in (0..32).step_by(7) {
        let byte = *bytes.next()?;
        if shift == 28 && byte > 0x0f {
            return None;
        }
        zigzag |= u32::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some((zigzag >> 1) as i32 ^ -((zigzag & 1) as i32));
        }
    }
    None
}

/// SQLite's writer folds the changes into the counts in the transaction
/// that makes them this many rows (transactions), so that they never grow
/// without bound; a report folds them first (see `sqlite::counts`).
pub(super) const SQLITE_FOLD_AT: i64 = 256;

/// SQLite: how many change rows there are, about (rowids only grow
/// between folds): two lookups, where `MAX` and `MIN` in one `SELECT`
/// scan the table.
pub(super) fn sqlite_changes() -> String {
    format!(
        "SELECT COALESCE((SELECT MAX(rowid) FROM \"{CHANGES}\")
                         - (SELECT MIN(rowid) FROM \"{CHANGES}\") + 1, 0)"
    )
}

/// SQLite: the change rows a fold reads, and then forgets.
pub(super) fn sqlite_change_rows() -> [String; 2] {
    [
        format!("SELECT tally FROM \"{CHANGES}\""),
        format!("DELETE FROM \"{CHANGES}\""),
    ]
}

/// SQLite: adds a group's [`Sums`] to the counts.
pub(super) fn sqlite_fold_group() -> String {
    format!(
        "INSERT INTO \"{COUNTS}\" (year, department_id, job_id, q1, q2, q3, q4)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (year, department_id, job_id) DO UPDATE SET
             q1 = q1 + excluded.q1, q2 = q2 + excluded.q2,
             q3 = q3 + excluded.q3, q4 = q4 + excluded.q4"
    )
}

/// Migration 0006: a tally packed as one row. On SQLite as varints rather
/// than JSON, the JSON rows a database holds folded first; on PostgreSQL
/// as seven arrays rather than a row per group (an `INSERT` of a batch's
/// 700 groups took 0.8 ms of its 6 ms on the server), the rows a database
/// holds packed into one.
pub fn packed_changes(d: Dialect) -> Option<String> {
    match d {
        Dialect::Sqlite => Some(sqlite_packed_changes()),
        Dialect::Postgres => Some(pg_packed_changes()),
        Dialect::Mssql => None,
    }
}

/// See [`packed_changes`].
fn sqlite_packed_changes() -> String {
    let json =
        "SELECT g.value ->> 0 AS year, g.value ->> 1 AS department_id, g.value ->> 2 AS job_id,
             g.value ->> 3 AS q1, g.value ->> 4 AS q2, g.value ->> 5 AS q3, g.value ->> 6 AS q4";
    format!(
            "-- hrmig hire count changes, sqlite dialect: a transaction's tally packed, which hrmig folds.

INSERT INTO \"{COUNTS}\" (year, department_id, job_id, q1, q2, q3, q4)
SELECT year, department_id, job_id, SUM(q1), SUM(q2), SUM(q3), SUM(q4)
FROM ({json}
      FROM \"{CHANGES}\" AS c, json_each(c.tally) AS g)
WHERE true GROUP BY year, department_id, job_id
ON CONFLICT (year, department_id, job_id) DO UPDATE SET
    q1 = q1 + excluded.q1, q2 = q2 + excluded.q2,
    q3 = q3 + excluded.q3, q4 = q4 + excluded.q4;

DROP TABLE \"{CHANGES}\";

CREATE TABLE \"{CHANGES}\" (\"tally\" BLOB NOT NULL);
"
    )
}

/// The advisory lock a PostgreSQL fold holds (and a `TRUNCATE` of the
/// hires waits for), per schema: its first key, the second being the
/// counts table's oid.
const FOLD_LOCK: i32 = 0x6872_6d69;

/// PostgreSQL: moves the changes committed so far into the counts, unless
/// another fold is running (the lock is then not taken, and nothing
/// happens). The `DELETE` moves what its snapshot sees; a change committed
/// meanwhile stays for the next fold.
pub(super) fn fold() -> String {
    format!(
        "WITH locked AS (SELECT pg_try_advisory_xact_lock({FOLD_LOCK}, '\"{COUNTS}\"'::regclass::oid::int) AS held),
         moved AS (DELETE FROM \"{CHANGES}\" WHERE (SELECT held FROM locked)
                   RETURNING year, department_id, job_id, q1, q2, q3, q4)
         INSERT INTO \"{COUNTS}\" AS c (year, department_id, job_id, q1, q2, q3, q4)
         SELECT u.year, u.department_id, u.job_id, SUM(u.q1), SUM(u.q2), SUM(u.q3), SUM(u.q4)
         FROM moved AS p, {PG_UNPACKED}
         GROUP BY u.year, u.department_id, u.job_id
         ON CONFLICT (year, department_id, job_id) DO UPDATE SET
             q1 = c.q1 + EXCLUDED.q1, q2 = c.q2 + EXCLUDED.q2,
             q3 = c.q3 + EXCLUDED.q3, q4 = c.q4 + EXCLUDED.q4"
    )
}

/// PostgreSQL: the groups of a packed change (`p`, a row of [`CHANGES`]),
/// as rows `u`.
const PG_UNPACKED: &str = "unnest(p.year, p.department_id, p.job_id, p.q1, p.q2, p.q3, p.q4)
         AS u(year, department_id, job_id, q1, q2, q3, q4)";

/// PostgreSQL: whether another program inserted hires nobody counted.
pub(super) fn uncounted() -> String {
    format!("SELECT EXISTS (SELECT 1 FROM \"{UNCOUNTED}\")")
}

/// PostgreSQL: counts the table again, in a `REPEATABLE READ` transaction
/// (one snapshot: the changes it drops are those its count includes) that
/// holds the fold lock.
pub(super) fn recount() -> String {
    let hires = Table::HiredEmployees.name();
    format!(
        "SELECT pg_advisory_xact_lock({FOLD_LOCK}, '\"{COUNTS}\"'::regclass::oid::int);
         DELETE FROM \"{UNCOUNTED}\";
         DELETE FROM \"{CHANGES}\";
         DELETE FROM \"{COUNTS}\";
         INSERT INTO \"{COUNTS}\" (year, department_id, job_id, q1, q2, q3, q4) {};",
        pg_tally(hires, "")
    )
}

/// PostgreSQL: appends a tally to the changes as one row, its columns as
/// seven arrays (see [`pg_columns`]).
pub(super) fn pg_add() -> String {
    format!(
        "INSERT INTO \"{CHANGES}\" (year, department_id, job_id, q1, q2, q3, q4)
         VALUES ($1::int4[], $2::int4[], $3::int4[], $4::int8[], $5::int8[], $6::int8[], $7::int8[])"
    )
}

/// The columns of [`pg_add`]: years, departments and jobs, then each
/// quarter's changes.
pub(super) fn pg_columns(changed: &[Changed]) -> ([Vec<i32>; 3], [Vec<i64>; 4]) {
    let mut keys: [Vec<i32>; 3] = Default::default();
    let mut quarters: [Vec<i64>; 4] = Default::default();
    for ((year, department, job), counts) in changed {
        keys[0].push(*year);
        keys[1].push(*department);
        keys[2].push(*job);
        for (q, n) in counts.iter().enumerate() {
            quarters[q].push(i64::from(*n));
        }
    }
    (keys, quarters)
}

/// Migration 0005: the counts, filled from the hires already stored; on
/// PostgreSQL the changes table and the triggers that append to it. SQL
/// Server has none (its reports read the views).
pub fn migration(d: Dialect) -> Option<String> {
    let head = format!(
        "-- hrmig hire counts, {} dialect: what the reports read (the views stay their definition).\n\n",
        d.name()
    );
    let hires = Table::HiredEmployees.name();
    let key = ",\n    PRIMARY KEY (\"year\", \"department_id\", \"job_id\")";
    match d {
        Dialect::Sqlite => Some(format!(
            "{head}{} WITHOUT ROWID;

{};

INSERT INTO \"{COUNTS}\"
SELECT CAST(substr(\"datetime\", 1, 4) AS INTEGER), \"department_id\", \"job_id\",
       SUM(substr(\"datetime\", 6, 2) BETWEEN '01' AND '03'),
       SUM(substr(\"datetime\", 6, 2) BETWEEN '04' AND '06'),
       SUM(substr(\"datetime\", 6, 2) BETWEEN '07' AND '09'),
       SUM(substr(\"datetime\", 6, 2) BETWEEN '10' AND '12')
FROM \"{hires}\" GROUP BY 1, 2, 3;
",
            counts_table(COUNTS, "", key),
            format_args!("CREATE TABLE IF NOT EXISTS \"{CHANGES}\" (\"tally\" TEXT NOT NULL)")
        )),
        Dialect::Postgres => Some(format!(
            "{head}{counts};

{changes};

CREATE TABLE IF NOT EXISTS \"{UNCOUNTED}\" (\"at\" TIMESTAMP(3) WITH TIME ZONE NOT NULL);

{function}

{triggers}
",
            counts = counts_table(COUNTS, "", key),
            changes = counts_table(CHANGES, "", ""),
            function = pg_function(false),
            triggers = pg_triggers(),
        )),
        Dialect::Mssql => None,
    }
}

/// `CREATE TABLE IF NOT EXISTS` of [`COUNTS`]' columns under `name`, each
/// type followed by `array` (`[]` for [`CHANGES`] packed on PostgreSQL),
/// then `key`.
fn counts_table(name: &str, array: &str, key: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS \"{name}\" (
    \"year\" INTEGER{array} NOT NULL,
    \"department_id\" INTEGER{array} NOT NULL,
    \"job_id\" INTEGER{array} NOT NULL,
    \"q1\" BIGINT{array} NOT NULL,
    \"q2\" BIGINT{array} NOT NULL,
    \"q3\" BIGINT{array} NOT NULL,
    \"q4\" BIGINT{array} NOT NULL{key}
)"
    )
}

/// Year, department, job and the four quarters' counts of hires in
/// `rows`, each times `n`, grouped: the columns of [`COUNTS`]. A hire at
/// `infinity` (which hrmig never writes, and the views cannot show) is
/// left out rather than fail another program's write.
fn pg_tally(rows: &str, n: &str) -> String {
    let at = "\"datetime\" AT TIME ZONE 'UTC'";
    let quarters: Vec<String> = (1..=4)
        .map(|q| format!("{n}COUNT(*) FILTER (WHERE date_part('quarter', {at}) = {q})"))
        .collect();
    format!(
        "SELECT date_part('year', {at})::int, \"department_id\", \"job_id\",
               {}
        FROM \"{rows}\" WHERE isfinite(\"datetime\") GROUP BY 1, 2, 3",
        quarters.join(",\n               ")
    )
}

/// Appends the tally of a transition table to the changes: a row per
/// group (0005), or one row of arrays (`packed`, 0006).
fn pg_append(rows: &str, n: &str, packed: bool) -> String {
    let into = format!("INSERT INTO \"{CHANGES}\" (year, department_id, job_id, q1, q2, q3, q4)");
    let tally = pg_tally(rows, n);
    match packed {
        false => format!("{into}\n        {tally};"),
        true => format!(
            "{into}
        SELECT array_agg(y), array_agg(d), array_agg(j), array_agg(a), array_agg(b), array_agg(c), array_agg(e)
        FROM ({tally}) AS t(y, d, j, a, b, c, e) HAVING COUNT(*) > 0;"
        ),
    }
}

/// The trigger function (see [`pg_triggers`]), writing the changes as
/// [`pg_append`] does. Its `search_path` is the migration's, so that a
/// writer whose own path differs counts into this schema's tables.
fn pg_function(packed: bool) -> String {
    format!(
        "CREATE OR REPLACE FUNCTION \"hrmig_count_hires\"() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $count$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        -- A fold running now commits first: its counts are emptied too.
        PERFORM pg_advisory_xact_lock({FOLD_LOCK}, '\"{COUNTS}\"'::regclass::oid::int);
        DELETE FROM \"{UNCOUNTED}\";
        DELETE FROM \"{CHANGES}\";
        DELETE FROM \"{COUNTS}\";
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        IF current_setting('hrmig.counted', true) IS DISTINCT FROM 'on' THEN
            INSERT INTO \"{UNCOUNTED}\" VALUES (now());
        END IF;
        RETURN NULL;
    END IF;
    {out}
    IF TG_OP = 'UPDATE' THEN
        {into}
    END IF;
    RETURN NULL;
END
$count$;",
        out = pg_append("hrmig_old", "-", packed),
        into = pg_append("hrmig_new", "", packed),
    )
}

/// Migration 0006 on PostgreSQL (see [`packed_changes`]): run with the
/// others, in their transaction, at every start; it repacks the table only
/// while its columns are not arrays yet.
fn pg_packed_changes() -> String {
    let rows = format!("{CHANGES}_rows");
    format!(
        "-- hrmig hire count changes, postgres dialect: a tally as one row of arrays.

DO $packed$
BEGIN
    IF (SELECT data_type FROM information_schema.columns
        WHERE table_schema = current_schema() AND table_name = '{CHANGES}'
          AND column_name = 'year') = 'integer' THEN
        ALTER TABLE \"{CHANGES}\" RENAME TO \"{rows}\";
        {packed};
        INSERT INTO \"{CHANGES}\" (year, department_id, job_id, q1, q2, q3, q4)
        SELECT array_agg(year), array_agg(department_id), array_agg(job_id),
               array_agg(q1), array_agg(q2), array_agg(q3), array_agg(q4)
        FROM \"{rows}\" HAVING COUNT(*) > 0;
        DROP TABLE \"{rows}\";
    END IF;
END
$packed$;

{function}
",
        packed = counts_table(CHANGES, "[]", "").replace('\n', "\n        "),
        function = pg_function(true)
    )
}

/// The triggers, made once with the counts of the hires stored then (the
/// table locked against writes meanwhile). Updates and deletes are counted
/// from transition tables; inserts are not, because a table with a
/// transition table of inserts has every inserted row copied for it, even
/// while the trigger is disabled or skipped (measured: a `COPY` of 1 M
/// rows 2.1–2.4 s without it, 3.7–4.6 s with it, 2.5 s disabled). hrmig
/// counts the hires it inserts itself ([`COUNTED_OPTION`]); another
/// program's insert marks the counts for a recount. Like PostgreSQL's own
/// triggers they do not fire in a session whose `session_replication_role`
/// is `replica`: hrmig's, skipping the foreign-key triggers, inserts only.
fn pg_triggers() -> String {
    let hires = Table::HiredEmployees.name();
    let mut made = String::new();
    for (name, event, referencing) in [
        ("hrmig_count_inserts", "INSERT", "FOR EACH STATEMENT"),
        (
            "hrmig_count_updates",
            "UPDATE",
            "REFERENCING OLD TABLE AS \"hrmig_old\" NEW TABLE AS \"hrmig_new\" FOR EACH STATEMENT",
        ),
        (
            "hrmig_count_deletes",
            "DELETE",
            "REFERENCING OLD TABLE AS \"hrmig_old\" FOR EACH STATEMENT",
        ),
        ("hrmig_count_truncates", "TRUNCATE", "FOR EACH STATEMENT"),
    ] {
        made.push_str(&format!(
            "        CREATE TRIGGER \"{name}\" AFTER {event} ON \"{hires}\" {referencing}
            EXECUTE FUNCTION \"hrmig_count_hires\"();
"
        ));
    }
    format!(
        "DO $made$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger
                   WHERE tgrelid = '\"{hires}\"'::regclass AND tgname = 'hrmig_count_inserts') THEN
        LOCK TABLE \"{hires}\" IN SHARE ROW EXCLUSIVE MODE;
{made}        DELETE FROM \"{UNCOUNTED}\";
        DELETE FROM \"{CHANGES}\";
        DELETE FROM \"{COUNTS}\";
        INSERT INTO \"{COUNTS}\" (year, department_id, job_id, q1, q2, q3, q4)
        {};
    END IF;
END
$made$;",
        pg_tally(hires, "")
    )
}

/// The counts of one year per department and job (`department_id`,
/// `job_id`, `q1` to `q4`), as a subquery: on PostgreSQL with the changes
/// not folded yet, read from the same snapshot; SQLite folds them first.
fn counted(d: Dialect, year: &str) -> String {
    let columns = "department_id, job_id, q1, q2, q3, q4";
    let counts = format!("SELECT {columns} FROM \"{COUNTS}\" WHERE year = {year}");
    let int8 = int8(d);
    match d {
        Dialect::Postgres => format!(
            "SELECT department_id, job_id, SUM(q1){int8} AS q1, SUM(q2){int8} AS q2,
                    SUM(q3){int8} AS q3, SUM(q4){int8} AS q4
             FROM ({counts}
                   UNION ALL SELECT u.department_id, u.job_id, u.q1, u.q2, u.q3, u.q4
                   FROM \"{CHANGES}\" AS p, {PG_UNPACKED}
                   WHERE u.year = {year}) AS c
             GROUP BY department_id, job_id"
        ),
        // SQL Server reads the views, never this.
        Dialect::Sqlite | Dialect::Mssql => counts,
    }
}

/// The cast that keeps a `SUM` of integers an integer: PostgreSQL's is a
/// `numeric`.
fn int8(d: Dialect) -> &'static str {
    match d {
        Dialect::Postgres => "::int8",
        Dialect::Sqlite | Dialect::Mssql => "",
    }
}

/// Hires of one year per department and job, by quarter, ordered by code
/// point: from the counts, or on SQL Server the report view.
pub fn hires_by_quarter(d: Dialect, year: i32) -> Statement {
    let mut st = Statement::new(d);
    let year = st.int(i64::from(year));
    let from_counts = |names: [&str; 2], order: [&str; 2]| {
        format!(
            "SELECT {}, {}, c.q1, c.q2, c.q3, c.q4 FROM ({}) AS c
             JOIN departments d ON d.id = c.department_id
             JOIN jobs j ON j.id = c.job_id
             WHERE c.q1 + c.q2 + c.q3 + c.q4 > 0
             ORDER BY {}, {}, d.id, j.id",
            names[0],
            names[1],
            counted(d, &year),
            order[0],
            order[1]
        )
    };
    let sql = match d {
        // SQLite's default BINARY collation orders by code point.
        Dialect::Sqlite => from_counts(["d.department", "j.job"], ["d.department", "j.job"]),
        Dialect::Postgres => from_counts(
            ["d.department::text", "j.job::text"],
            ["d.department COLLATE \"C\"", "j.job COLLATE \"C\""],
        ),
        Dialect::Mssql => format!(
            "SELECT [department], [job], CAST([q1] AS BIGINT), CAST([q2] AS BIGINT),
                    CAST([q3] AS BIGINT), CAST([q4] AS BIGINT)
             FROM [gold_hires_by_quarter] WHERE [year] = {year}
             ORDER BY [department] COLLATE Latin1_General_100_BIN2,
                      [job] COLLATE Latin1_General_100_BIN2, [department_id], [job_id]"
        ),
    };
    st.sql(sql)
}

/// Reads a row of [`hires_by_quarter`].
pub fn quarter_row(r: &dyn SqlRow) -> Result<QuarterRow, StoreError> {
    Ok(QuarterRow {
        department: r.text(0)?,
        job: r.text(1)?,
        q1: r.int(2)?,
        q2: r.int(3)?,
        q3: r.int(4)?,
        q4: r.int(5)?,
    })
}

/// Departments whose hires in the year exceed the mean over all
/// departments (departments without hires count as zero), most first. The
/// mean is taken over floats: T-SQL's `AVG` of integers truncates.
pub fn departments_above_mean(d: Dialect, year: i32) -> Statement {
    let mut st = Statement::new(d);
    let year = st.int(i64::from(year));
    let hired = match d {
        Dialect::Sqlite | Dialect::Postgres => format!(
            "SELECT department_id AS id, SUM(q1 + q2 + q3 + q4){} AS hired FROM ({}) AS c
             GROUP BY department_id",
            int8(d),
            counted(d, &year)
        ),
        Dialect::Mssql => {
            format!("SELECT id, hired FROM gold_department_hires WHERE year = {year}")
        }
    };
    let (text, hired_out, mean) = match d {
        Dialect::Sqlite => ("department", "hired", "AVG(hired)"),
        Dialect::Postgres => ("department::text", "hired", "AVG(hired)"),
        Dialect::Mssql => (
            "department",
            "CAST(hired AS BIGINT)",
            "AVG(CAST(hired AS FLOAT))",
        ),
    };
    let sql = format!(
        "WITH hires AS (
             SELECT d.id, d.department, COALESCE(g.hired, 0) AS hired
             FROM departments d
             LEFT JOIN ({hired}) AS g ON g.id = d.id
         )
         SELECT id, {text}, {hired_out} FROM hires
         WHERE hired > (SELECT {mean} FROM hires)
         ORDER BY hired DESC, id"
    );
    st.sql(sql)
}

/// Reads a row of [`departments_above_mean`].
pub fn department_hires(r: &dyn SqlRow) -> Result<DepartmentHires, StoreError> {
    Ok(DepartmentHires {
        id: r.int(0)?,
        department: r.text(1)?,
        hired: r.int(2)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_datetime_counts_in_its_year_and_quarter() {
        let cases: [(&str, Option<(i32, usize)>); 7] = [
            ("2021-01-01T00:00:00Z", Some((2021, 0))),
            ("2021-03-31T23:59:59.999Z", Some((2021, 0))),
            ("2021-04-01T00:00:00Z", Some((2021, 1))),
            ("0001-09-30T00:00:00Z", Some((1, 2))),
            ("9999-12-31T23:59:59Z", Some((9999, 3))),
            ("2021-13-01T00:00:00Z", None),
            ("21-01-01", None),
        ];
        for (text, expected) in cases {
            assert_eq!(year_quarter(text.as_bytes()), expected, "{text}");
        }
    }

    #[test]
    fn a_tally_nets_changes_and_drops_the_groups_that_net_to_nothing() {
        let mut tally = Tally::default();
        tally.add(b"2021-05-01T00:00:00Z", 1, 2, 1);
        tally.add(b"2021-05-02T00:00:00Z", 1, 2, 1);
        tally.add(b"2021-11-01T00:00:00Z", 1, 2, -1);
        tally.add(b"2020-01-01T00:00:00Z", 3, 4, 1);
        tally.add(b"2020-01-09T00:00:00Z", 3, 4, -1);
        assert!(!tally.is_empty());
        let changed = tally.take().unwrap();
        assert_eq!(changed, vec![((2021, 1, 2), [0, 2, 0, -1])]);
        assert!(tally.is_empty());
    }

    #[test]
    fn a_row_counts_where_its_canonical_text_does() {
        let at = |text: &str| datetime::parse(text).unwrap();
        for text in [
            "2021-03-31T23:59:59.999Z",
            "2021-04-01T00:00:00Z",
            "1969-12-31T23:00:00Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
        ] {
            let row = Row(vec![
                Value::Int(1),
                Value::Text("Ann".into()),
                Value::DateTime(at(text)),
                Value::Int(2),
                Value::Int(3),
            ]);
            let (mut by_row, mut by_text) = (Tally::default(), Tally::default());
            by_row.add_row(&row, 1);
            by_text.add(datetime::format(at(text)).as_bytes(), 2, 3, 1);
            assert_eq!(by_row.take().unwrap(), by_text.take().unwrap(), "{text}");
        }
    }

    #[test]
    fn a_change_that_cannot_be_counted_fails_the_transaction() {
        let mut tally = Tally::default();
        tally.add(b"2021-05-01T00:00:00Z", 1, 2, 1);
        tally.add(b"May 2021", 1, 2, 1);
        let err = tally.take().unwrap_err().to_string();
        assert!(err.contains("May 2021"), "{err}");
        assert!(tally.is_empty());
    }

    #[test]
    fn reports_read_the_counts_except_on_sql_server() {
        for d in [Dialect::Sqlite, Dialect::Postgres] {
            let sql = hires_by_quarter(d, 2021).sql;
            assert!(sql.contains(COUNTS) && !sql.contains("gold_"), "{sql}");
            let sql = departments_above_mean(d, 2021).sql;
            assert!(sql.contains(COUNTS) && !sql.contains("gold_"), "{sql}");
        }
        assert!(
            hires_by_quarter(Dialect::Postgres, 2021)
                .sql
                .contains(CHANGES)
        );
        // SQLite folds the changes before a report reads the counts.
        assert!(
            !hires_by_quarter(Dialect::Sqlite, 2021)
                .sql
                .contains(CHANGES)
        );
        assert!(
            hires_by_quarter(Dialect::Mssql, 2021)
                .sql
                .contains("gold_hires_by_quarter")
        );
        assert!(migration(Dialect::Mssql).is_none());
    }

    #[test]
    fn reports_order_by_code_point_and_average_over_floats() {
        let sql = hires_by_quarter(Dialect::Mssql, 2021).sql;
        assert!(sql.contains("[department] COLLATE Latin1_General_100_BIN2"));
        assert!(sql.contains("[job] COLLATE Latin1_General_100_BIN2"));
        assert!(
            hires_by_quarter(Dialect::Postgres, 2021)
                .sql
                .contains("COLLATE \"C\"")
        );
        let sql = departments_above_mean(Dialect::Mssql, 2021).sql;
        assert!(sql.contains("AVG(CAST(hired AS FLOAT))"), "{sql}");
    }

    #[test]
    fn packed_tallies_add_up_per_group_and_quarter() {
        let first = sqlite_pack(&[
            ((2021, 1, 2), [0, 2, 0, -1]),
            ((2022, 3, 400), [1, 0, 0, 0]),
        ]);
        // A year takes two bytes, a job of 400 two, the rest one each.
        assert_eq!(first.len(), 8 + 9);
        let extremes = [i32::MIN, i32::MAX, -1, 0];
        let second = sqlite_pack(&[((2021, 1, 2), extremes), ((-5, i32::MAX, i32::MIN), [0; 4])]);
        let mut sums = Sums::default();
        sqlite_unpack(&first, &mut sums).unwrap();
        sqlite_unpack(&second, &mut sums).unwrap();
        sqlite_unpack(&second, &mut sums).unwrap();
        let mut sums: Vec<_> = sums.into_iter().collect();
        sums.sort_unstable();
        let (min, max) = (i64::from(i32::MIN), i64::from(i32::MAX));
        assert_eq!(
            sums,
            vec![
                ((-5, i32::MAX, i32::MIN), [0; 4]),
                ((2021, 1, 2), [2 * min, 2 + 2 * max, -2, -1]),
                ((2022, 3, 400), [1, 0, 0, 0]),
            ]
        );
    }

    #[test]
    fn a_packed_tally_cut_short_or_garbled_is_an_error() {
        let packed = sqlite_pack(&[((2021, 1, 2), [0, 2, 0, -1])]);
        let overlong = [0xff, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0, 0, 0];
        for bad in [
            &packed[..packed.len() - 1],
            &packed[..1],
            &[0x80][..],
            &overlong[..],
        ] {
            let mut sums = Sums::default();
            let err = sqlite_unpack(bad, &mut sums).unwrap_err();
            assert!(err.to_string().contains("cut short or garbled"), "{err}");
        }
    }
}
