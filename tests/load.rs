//! Historic load against a real SQLite file: every bad-input case of the
//! data rules, and the transaction guarantees.

mod common {
    pub mod db;
    pub mod env;
    pub mod query;
    pub mod servers;
}

use common::env::TestEnv;
use hrmig::dictionary::ErrorCode::{self, *};
use hrmig::dictionary::Table;
use hrmig::ops::load::{self, LoadReport, LoadStatus};
use hrmig::store::{Chunk, Feed, FileLoad, InputRow, Rejection, RejectionFilter, Store};

/// A rejection as `(position, [(column, code)])`.
type Rejected = (i64, Vec<(Option<String>, ErrorCode)>);

const DEPARTMENTS: &str = "1,Sales\n2,Engineering\n3,Legal\n";
const JOBS: &str = "1,Engineer\n2,Analyst\n";

impl TestEnv {
    /// A database with the two parent tables loaded.
    async fn with_parents() -> TestEnv {
        let env = TestEnv::new().await;
        env.write(Table::Departments, DEPARTMENTS.as_bytes());
        env.write(Table::Jobs, JOBS.as_bytes());
        env.load(&[Table::Departments, Table::Jobs]).await;
        env
    }

    fn write(&self, table: Table, content: &[u8]) {
        let dir = self.landing_dir();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{}.csv", table.name())), content).unwrap();
    }

    /// Loads one employees file and checks the conservation rule.
    async fn load_employees(&self, content: &[u8]) -> LoadReport {
        self.write(Table::HiredEmployees, content);
        let report = self.load(&[Table::HiredEmployees]).await.remove(0);
        assert_eq!(
            report.rows_read,
            report.inserted + report.rejected,
            "{report:?}"
        );
        report
    }

    async fn rejections(&self) -> Vec<Rejection> {
        self.store
            .rejections(RejectionFilter {
                limit: 10_000,
                ..Default::default()
            })
            .await
            .unwrap()
    }

    /// `(position, [(column, code)])` of every rejection, in log order.
    async fn rejected(&self) -> Vec<Rejected> {
        self.rejections()
            .await
            .into_iter()
            .map(|r| {
                (
                    r.position,
                    r.errors.into_iter().map(|e| (e.column, e.code)).collect(),
                )
            })
            .collect()
    }

    /// Rows of a table as text (`1,Sales`), ordered by id.
    async fn rows(&self, table: Table) -> Vec<String> {
        table_rows(&self.store, table).await
    }

    async fn ids(&self, table: Table) -> Vec<i64> {
        self.store
            .rows(table, i64::MIN, u32::MAX)
            .await
            .unwrap()
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect()
    }
}

/// Rows of a table as text (`1,Sales`), ordered by id.
async fn table_rows(store: &Store, table: Table) -> Vec<String> {
    store
        .rows(table, i64::MIN, u32::MAX)
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let fields: Vec<String> = table
                .columns()
                .iter()
                .map(|c| match &r[c.name] {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            fields.join(",")
        })
        .collect()
}

fn col(name: &str) -> Option<String> {
    Some(name.to_owned())
}

/// On PostgreSQL, asserts that `hired_employees` has its two foreign keys
/// and three indexes (a bulk load sets them aside until its commit).
async fn assert_foreign_keys_declared(url: &str) {
    if common::db::postgres() {
        let n = common::query::query_i64(
            url,
            "SELECT COUNT(*) FROM pg_constraint
             WHERE conrelid = 'hired_employees'::regclass AND contype = 'f'",
        )
        .await;
        assert_eq!(n, 2, "hired_employees lost a foreign key");
        let n = common::query::query_i64(
            url,
            "SELECT COUNT(*) FROM pg_index WHERE indrelid = 'hired_employees'::regclass",
        )
        .await;
        assert_eq!(n, 3, "hired_employees lost an index");
    }
}

const OK: &str = "2021-07-27T16:02:08Z";

fn line(id: &str, name: &str, dt: &str, dept: &str, job: &str) -> String {
    format!("{id},{name},{dt},{dept},{job}\n")
}

fn good(id: u32) -> String {
    line(&id.to_string(), "Ann Lee", OK, "1", "2")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_value_in_each_column_is_missing() {
    let env = TestEnv::with_parents().await;
    let mut csv = good(1);
    csv += &line("", "A", OK, "1", "1");
    csv += &line("3", " ", OK, "1", "1");
    csv += &line("4", "A", "", "1", "1");
    csv += &line("5", "A", OK, "", "1");
    csv += &line("6", "A", OK, "1", "  ");
    let r = env.load_employees(csv.as_bytes()).await;
    assert_eq!((r.rows_read, r.inserted, r.rejected), (6, 1, 5));
    assert_eq!(
        env.rejected().await,
        vec![
            (2, vec![(col("id"), Missing)]),
            (3, vec![(col("name"), Missing)]),
            (4, vec![(col("datetime"), Missing)]),
            (5, vec![(col("department_id"), Missing)]),
            (6, vec![(col("job_id"), Missing)]),
        ]
    );
    assert_eq!(env.ids(Table::HiredEmployees).await, vec![1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integers_of_wrong_type_or_range() {
    let env = TestEnv::with_parents().await;
    let mut csv = String::new();
    csv += &line("abc", "A", OK, "1", "1");
    csv += &line("2", "A", OK, "x1", "1");
    csv += &line("3", "A", OK, "1", "2147483648");
    csv += &line("-2147483649", "A", OK, "1", "1");
    csv += &line("2147483647", "A", OK, "1", "1");
    let r = env.load_employees(csv.as_bytes()).await;
    assert_eq!((r.inserted, r.rejected), (1, 4));
    assert_eq!(
        env.rejected().await,
        vec![
            (1, vec![(col("id"), Type)]),
            (2, vec![(col("department_id"), Type)]),
            (3, vec![(col("job_id"), Range)]),
            (4, vec![(col("id"), Range)]),
        ]
    );
    assert_eq!(env.ids(Table::HiredEmployees).await, vec![2147483647]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datetimes_are_checked_and_normalised_to_utc() {
    let env = TestEnv::with_parents().await;
    let mut csv = String::new();
    csv += &line("1", "A", "2021-02-30T10:00:00Z", "1", "1");
    csv += &line("2", "A", "2021-13-01T00:00:00Z", "1", "1");
    csv += &line("3", "A", "yesterday", "1", "1");
    csv += &line("4", "A", "2021-07-27 16:02:08", "1", "1");
    csv += &line("5", "A", "2021-07-27T16:02:08+02:00", "1", "1");
    let r = env.load_employees(csv.as_bytes()).await;
    assert_eq!((r.inserted, r.rejected), (2, 3));
    assert_eq!(
        env.rejected().await,
        vec![
            (1, vec![(col("datetime"), Format)]),
            (2, vec![(col("datetime"), Format)]),
            (3, vec![(col("datetime"), Format)]),
        ]
    );
    assert_eq!(
        env.rows(Table::HiredEmployees).await,
        vec![
            "4,A,2021-07-27T16:02:08Z,1,1",
            "5,A,2021-07-27T14:02:08Z,1,1"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_count_encoding_nul_and_length() {
    let env = TestEnv::with_parents().await;
    let mut csv: Vec<u8> = Vec::new();
    csv.extend(b"1,A,2021-07-27T16:02:08Z,1\n");
    csv.extend(b"2,A,2021-07-27T16:02:08Z,1,1,9\n");
    csv.extend(b"3,Caf\xe9,2021-07-27T16:02:08Z,1,1\n");
    csv.extend(b"4,A\x00B,2021-07-27T16:02:08Z,1,1\n");
    csv.extend(line("5", &"n".repeat(256), OK, "1", "1").as_bytes());
    csv.extend(line("6", &"n".repeat(255), OK, "1", "1").as_bytes());
    let r = env.load_employees(&csv).await;
    assert_eq!((r.inserted, r.rejected), (1, 5));
    assert_eq!(
        env.rejected().await,
        vec![
            (1, vec![(None, Columns)]),
            (2, vec![(None, Columns)]),
            (3, vec![(col("name"), Encoding)]),
            (4, vec![(col("name"), Encoding)]),
            (5, vec![(col("name"), TooLong)]),
        ]
    );
    let rejections = env.rejections().await;
    // The raw line is kept, invalid bytes decoded lossily.
    assert_eq!(rejections[2].raw, "3,Caf\u{fffd},2021-07-27T16:02:08Z,1,1");
    assert_eq!(rejections[0].raw, "1,A,2021-07-27T16:02:08Z,1");
    assert!(
        rejections[0].source.starts_with("file:")
            && rejections[0].source.ends_with("hired_employees.csv")
    );
    assert_eq!(env.ids(Table::HiredEmployees).await, vec![6]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotes_a_reader_would_repair_are_format_errors() {
    let env = TestEnv::with_parents().await;
    let cases: &[(&str, Option<&str>)] = &[
        ("1,ab\"c", Some("name")),
        ("2,\"pedro\"holanda", Some("name")),
        ("3,\"ok, quoted\"", None),
        ("4,\"say \"\"hi\"\"\"", None),
        ("5,\"a\" ", Some("name")),
        ("6\"x,a", Some("id")),
        ("7,\"\"", None),
    ];
    let csv: String = cases
        .iter()
        .map(|(name, _)| format!("{name},{OK},1,2\n"))
        .collect();
    let r = env.load_employees(csv.as_bytes()).await;
    let rejected: Vec<_> = cases
        .iter()
        .enumerate()
        .filter_map(|(i, (_, column))| column.map(|c| ((i + 1) as i64, vec![(col(c), Format)])))
        .collect();
    // "7,\"\"" is an empty name: missing, not a quoting error.
    let mut want = rejected.clone();
    want.push((7, vec![(col("name"), Missing)]));
    assert_eq!(env.rejected().await, want);
    assert_eq!((r.inserted, r.rejected), (2, want.len() as u64));
    // The raw line is kept as it was, nothing altered.
    let raws: Vec<String> = env.rejections().await.into_iter().map(|r| r.raw).collect();
    assert_eq!(raws[0], format!("1,ab\"c,{OK},1,2"));
    assert_eq!(raws[1], format!("2,\"pedro\"holanda,{OK},1,2"));
    assert_eq!(
        env.rows(Table::HiredEmployees).await,
        vec![
            format!("3,ok, quoted,{OK},1,2"),
            format!("4,say \"hi\",{OK},1,2")
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cr_only_line_ends_give_true_positions() {
    let env = TestEnv::with_parents().await;
    let csv =
        format!("1,A,{OK},1,1\r2,,{OK},1,1\r\r3,A,bad,1,1\r4,\"x\ry\",{OK},9,1\r5,B,{OK},1,1\r");
    let r = env.load_employees(csv.as_bytes()).await;
    assert_eq!((r.rows_read, r.inserted, r.rejected, r.blank), (5, 2, 3, 1));
    assert_eq!(
        env.rejected().await,
        vec![
            (2, vec![(col("name"), Missing)]),
            (4, vec![(col("datetime"), Format)]),
            (5, vec![(col("department_id"), ForeignKey)]),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_first_occurrence_wins() {
    let env = TestEnv::with_parents().await;
    let r = env
        .load_employees(format!("{}{}", good(1), good(2)).as_bytes())
        .await;
    assert_eq!(r.inserted, 2);
    // Next file: id 2 is already in the table, id 3 repeats within the file.
    let csv = format!(
        "{}{}{}",
        line("2", "Other", OK, "1", "1"),
        line("3", "First", OK, "1", "1"),
        line("3", "Second", OK, "2", "2")
    );
    let r = env.load_employees(csv.as_bytes()).await;
    assert_eq!((r.inserted, r.rejected), (1, 2));
    assert_eq!(
        env.rejected().await,
        vec![
            (1, vec![(col("id"), Duplicate)]),
            (3, vec![(col("id"), Duplicate)])
        ]
    );
    assert_eq!(
        env.rows(Table::HiredEmployees).await,
        vec![
            format!("1,Ann Lee,{OK},1,2"),
            format!("2,Ann Lee,{OK},1,2"),
            format!("3,First,{OK},1,1")
        ]
    );
}

/// Ids in any order, in runs longer than the writers' groups of rows:
/// each id inserted once with the values of its first valid occurrence,
/// later ones rejected as duplicates, whether an id is above every id seen
/// so far or below, taken by a row just before it or long before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_in_any_order_are_inserted_once_each() {
    let env = TestEnv::with_parents().await;
    env.load_employees(good(500).as_bytes()).await;
    let mut ids: Vec<u32> = (1..=150).collect(); // below the table's 500
    ids.extend([600, 550, 600, 149, 700]); // below a new high, and taken
    ids.extend(701..=900); // above, a long run
    ids.extend([500, 800, 650, 901]);
    let mut csv = String::new();
    for (n, id) in ids.iter().enumerate() {
        // Every 37th line names a missing department: not a taken id.
        let dept = if n % 37 == 5 { "9" } else { "1" };
        csv += &line(&id.to_string(), &format!("N{n}"), OK, dept, "1");
    }
    let r = env.load_employees(csv.as_bytes()).await;
    let mut first = std::collections::BTreeMap::new();
    let mut expected_rejected = Vec::new();
    for (n, id) in ids.iter().enumerate() {
        let position = n as i64 + 1;
        let mut errors = Vec::new();
        if *id == 500 || first.contains_key(id) {
            errors.push((col("id"), Duplicate));
        }
        if n % 37 == 5 {
            errors.push((col("department_id"), ForeignKey));
        }
        if errors.is_empty() {
            first.insert(*id, n);
        } else {
            expected_rejected.push((position, errors));
        }
    }
    assert_eq!(r.inserted, first.len() as u64);
    assert_eq!(env.rejected().await, expected_rejected);
    let mut expected: Vec<String> = (first.iter())
        .map(|(id, n)| format!("{id},N{n},{OK},1,1"))
        .collect();
    expected.push(format!("500,Ann Lee,{OK},1,2"));
    expected.sort_by_key(|r| r.split(',').next().unwrap().parse::<u32>().unwrap());
    assert_eq!(env.rows(Table::HiredEmployees).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_parents_are_foreign_key_errors() {
    let env = TestEnv::with_parents().await;
    let csv = format!(
        "{}{}{}{}",
        line("1", "A", OK, "9", "1"),
        line("2", "A", OK, "1", "7"),
        line("3", "A", OK, "9", "7"),
        line("4", "", OK, "9", "1"),
    );
    let r = env.load_employees(csv.as_bytes()).await;
    assert_eq!((r.inserted, r.rejected), (0, 4));
    assert_eq!(
        env.rejected().await,
        vec![
            (1, vec![(col("department_id"), ForeignKey)]),
            (2, vec![(col("job_id"), ForeignKey)]),
            (
                3,
                vec![
                    (col("department_id"), ForeignKey),
                    (col("job_id"), ForeignKey)
                ]
            ),
            // Every error of a row is reported, including those the database finds.
            (
                4,
                vec![(col("name"), Missing), (col("department_id"), ForeignKey)]
            ),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_files_check_parents_the_same_way() {
    // A big file (2.7 MB): on SQLite parents are checked from the cached id
    // sets, row after row; on PostgreSQL the table's foreign keys are set
    // aside during the COPY and validated again before the commit.
    let env = TestEnv::with_parents().await;
    let mut csv = String::new();
    for id in 1..=60_000u32 {
        let (dept, job) = match id % 1000 {
            7 => ("9", "1"),
            8 => ("1", "5"),
            _ => ("1", "2"),
        };
        csv += &line(&id.to_string(), "A", OK, dept, job);
    }
    csv += &line("60000", "Dup", OK, "1", "1");
    let r = env.load_employees(csv.as_bytes()).await;
    assert_eq!((r.rows_read, r.inserted, r.rejected), (60_001, 59_880, 121));
    let rejected = env.rejected().await;
    assert_eq!(rejected[0], (7, vec![(col("department_id"), ForeignKey)]));
    assert_eq!(rejected[1], (8, vec![(col("job_id"), ForeignKey)]));
    assert_eq!(rejected[120], (60_001, vec![(col("id"), Duplicate)]));
    // No row breaks a foreign key after the load.
    let violations = common::query::query_i64(
        &env.url,
        "SELECT COUNT(*) FROM hired_employees h
         WHERE NOT EXISTS (SELECT 1 FROM departments d WHERE d.id = h.department_id)
            OR NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = h.job_id)",
    )
    .await;
    assert_eq!(violations, 0);
    assert_foreign_keys_declared(&env.url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_quirks_header_bom_crlf_blank_lines_and_quotes() {
    let env = TestEnv::with_parents().await;
    let csv = "\u{feff}id,name,datetime,department_id,job_id\r\n\
               1,\"Smith, Ann\",2021-07-27T16:02:08Z,1,2\r\n\
               \r\n   \r\n\
               2,\"Multi\nLine\",2021-07-27T16:02:08Z,1,2\r\n\
               3,,2021-07-27T16:02:08Z,1,2\r\n";
    let r = env.load_employees(csv.as_bytes()).await;
    assert_eq!((r.rows_read, r.inserted, r.rejected, r.blank), (3, 2, 1, 2));
    // Line numbers are physical lines: the quoted newline counts.
    assert_eq!(
        env.rejected().await,
        vec![(7, vec![(col("name"), Missing)])]
    );
    assert_eq!(
        env.rows(Table::HiredEmployees).await,
        vec![
            format!("1,Smith, Ann,{OK},1,2"),
            format!("2,Multi\nLine,{OK},1,2")
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unterminated_quote_at_end_of_file() {
    let env = TestEnv::with_parents().await;
    let csv = format!("{}{}3,\"Open,{OK},1,2\n4,B,{OK},1,2\n", good(1), good(2));
    let r = env.load_employees(csv.as_bytes()).await;
    assert_eq!((r.rows_read, r.inserted, r.rejected), (3, 2, 1));
    let rejections = env.rejections().await;
    assert_eq!(rejections.len(), 1);
    assert_eq!(
        (rejections[0].position, rejections[0].errors[0].code),
        (3, Format)
    );
    assert!(
        rejections[0].raw.contains("4,B"),
        "the rest of the file is the record"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_over_one_mebibyte_are_too_long() {
    let env = TestEnv::with_parents().await;
    let csv = format!(
        "{}5,{},{OK},1,2\n{}",
        good(1),
        "x".repeat(1_100_000),
        good(2)
    );
    let r = env.load_employees(csv.as_bytes()).await;
    assert_eq!((r.rows_read, r.inserted, r.rejected), (3, 2, 1));
    let rejections = env.rejections().await;
    assert_eq!(
        (rejections[0].position, rejections[0].errors[0].code),
        (2, TooLong)
    );
    assert_eq!(rejections[0].raw.len(), 4096);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_and_header_only_files_load_nothing() {
    let env = TestEnv::with_parents().await;
    for content in [
        &b""[..],
        b"id,name,datetime,department_id,job_id\n",
        b"\n\n",
    ] {
        let r = env.load_employees(content).await;
        assert_eq!(
            (r.status, r.rows_read, r.inserted, r.rejected),
            (LoadStatus::Loaded, 0, 0, 0)
        );
    }
    assert!(env.ids(Table::HiredEmployees).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_content_loads_once_unless_forced() {
    let env = TestEnv::with_parents().await;
    let csv = format!("{}{}", good(1), line("2", "", OK, "1", "1"));
    let first = env.load_employees(csv.as_bytes()).await;
    assert_eq!((first.inserted, first.rejected), (1, 1));
    let again = env.load(&[Table::HiredEmployees]).await.remove(0);
    assert_eq!(
        (again.status, again.inserted, again.rejected),
        (LoadStatus::AlreadyLoaded, 0, 0)
    );
    assert_eq!(env.rejections().await.len(), 1);
    let mut req = env.request(&[Table::HiredEmployees]);
    req.force = true;
    let forced = load::load(&env.store, &req).await.unwrap().remove(0);
    // Forced: id 1 is now a duplicate, and the bad row is logged again.
    assert_eq!(
        (forced.status, forced.inserted, forced.rejected),
        (LoadStatus::Loaded, 0, 2)
    );
    let loads = env.store.loads(None, 10).await.unwrap();
    assert_eq!(
        loads
            .iter()
            .filter(|l| l.table == "hired_employees")
            .count(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_file_changes_nothing() {
    let env = TestEnv::new().await;
    env.write(Table::Departments, DEPARTMENTS.as_bytes());
    let err = load::load(&env.store, &env.request(&[])).await.unwrap_err();
    assert!(err.to_string().contains("jobs.csv"), "{err}");
    assert!(
        env.ids(Table::Departments).await.is_empty(),
        "departments were loaded before the check"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_rejects_aborts_the_file() {
    let env = TestEnv::with_parents().await;
    // Every row has a bad datetime (a wrong delimiter is refused whole, below).
    let mut csv = String::new();
    for id in 1..=50 {
        csv += &format!("{id},A,27/07/2021,1,2\n");
    }
    env.write(Table::HiredEmployees, csv.as_bytes());
    let mut req = env.request(&[Table::HiredEmployees]);
    req.max_rejects = Some(10);
    let r = load::load(&env.store, &req).await.unwrap().remove(0);
    assert_eq!((r.status, r.inserted), (LoadStatus::Aborted, 0));
    assert!(
        r.message
            .as_deref()
            .unwrap_or_default()
            .contains("more than 10")
    );
    assert!(
        env.rejections().await.is_empty(),
        "rejections of an aborted file were committed"
    );
    let loads = env.store.loads(None, 1).await.unwrap();
    assert_eq!(loads[0].status.as_str(), "aborted");
    // Under the limit, the same kind of file loads.
    req.max_rejects = Some(50);
    let r = load::load(&env.store, &req).await.unwrap().remove(0);
    assert_eq!((r.status, r.rejected), (LoadStatus::Loaded, 50));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_that_stops_midway_rolls_back() {
    let env = TestEnv::with_parents().await;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let raw = good(1).into_bytes();
    let row = hrmig::dictionary::check::check_csv(
        Table::HiredEmployees,
        std::str::from_utf8(&raw)
            .unwrap()
            .trim_end()
            .split(',')
            .map(str::as_bytes)
            .collect::<Vec<_>>()
            .into_iter(),
    )
    .into_row();
    tx.send(Feed::Rows(Chunk {
        rows: vec![InputRow {
            position: 1,
            raw: 0..raw.len() - 1,
            check: row,
        }],
        raw,
    }))
    .await
    .unwrap();
    drop(tx); // the producer dies before the end of the file
    let load = FileLoad {
        table: Table::HiredEmployees,
        source: "file:test".into(),
        force: false,
        max_rejects: None,
        started_at: "2021-01-01T00:00:00Z".into(),
        // Big: on PostgreSQL the bulk path, whose foreign keys are set
        // aside until the commit, is the one rolled back.
        bytes: Some(u64::MAX),
        dry_run: None,
        on_duplicate: hrmig::store::OnDuplicate::Reject,
    };
    let err = env.store.load_file(load, rx).await.unwrap_err();
    assert!(err.to_string().contains("interrupted"), "{err}");
    assert!(env.ids(Table::HiredEmployees).await.is_empty());
    assert_foreign_keys_declared(&env.url).await;
    // The store still works afterwards.
    let r = env.load_employees(good(1).as_bytes()).await;
    assert_eq!(r.inserted, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_data_conserves_every_row() {
    let env = TestEnv::new().await;
    let opts = hrmig::ops::sample::GenOptions {
        employees: 20_000,
        invalid_rate: 0.05,
        seed: 7,
    };
    let invalid = hrmig::ops::sample::generate(&env.landing_dir(), &opts).unwrap();
    let reports = env.load(&[]).await;
    let emp = &reports[2];
    assert_eq!((reports[0].inserted, reports[1].inserted), (12, 183));
    assert_eq!(emp.rows_read, 20_000);
    assert_eq!(emp.rows_read, emp.inserted + emp.rejected);
    // A "duplicate" row may repeat an id whose first copy was itself invalid.
    assert!(
        emp.rejected <= invalid && emp.rejected + 100 > invalid,
        "{emp:?} vs {invalid}"
    );
    let logged = env.rejections().await;
    let codes: std::collections::HashSet<ErrorCode> = (logged.iter())
        .flat_map(|r| r.errors.iter().map(|e| e.code))
        .collect();
    // The report counts per code what the log holds: a row once per code.
    for code in ErrorCode::ALL {
        let rows = (logged.iter().filter(|r| r.table == "hired_employees"))
            .filter(|r| r.errors.iter().any(|e| e.code == code))
            .count() as u64;
        assert_eq!(emp.rejected_by_code.get(code), rows, "{code}");
    }
    for code in [
        Missing, Type, Range, Format, TooLong, Encoding, Columns, Duplicate, ForeignKey,
    ] {
        assert!(
            codes.contains(&code),
            "no {code} rejection in generated data"
        );
    }
}

/// The reference files, when present (CI has them beside the project).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_files_load_as_documented() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/globant");
    if !dir.join("hired_employees.csv").is_file() {
        eprintln!("SKIPPED: reference data not found at {}", dir.display());
        return;
    }
    let env = TestEnv::new().await;
    let mut req = env.request(&[]);
    req.from = hrmig::storage::Storage::open(dir.to_str().unwrap()).unwrap();
    let r = load::load(&env.store, &req).await.unwrap();
    let counts: Vec<_> = r
        .iter()
        .map(|r| (r.status, r.inserted, r.rejected))
        .collect();
    assert_eq!(
        counts,
        vec![
            (LoadStatus::Loaded, 12, 0),
            (LoadStatus::Loaded, 183, 0),
            (LoadStatus::Loaded, 1929, 70)
        ]
    );
    let rejections = env.rejections().await;
    assert!(
        rejections
            .iter()
            .all(|r| r.errors.len() == 1 && r.errors[0].code == Missing)
    );
    // Line 2 is "2,Ty Hofer,2021-05-30T05:43:46Z,8," (no job).
    assert_eq!(rejections[0].position, 2);
    assert_eq!(rejections[0].errors[0].column.as_deref(), Some("job_id"));
    let by_column = |c: &str| {
        rejections
            .iter()
            .filter(|r| r.errors[0].column.as_deref() == Some(c))
            .count()
    };
    assert_eq!(
        (
            by_column("name"),
            by_column("datetime"),
            by_column("department_id"),
            by_column("job_id")
        ),
        (19, 14, 21, 16)
    );
    let again = load::load(&env.store, &req).await.unwrap();
    assert!(again.iter().all(|r| r.status == LoadStatus::AlreadyLoaded));
    // Valid 2021 rows per quarter, as counted independently of hrmig.
    let q = env.store.hires_by_quarter(2021).await.unwrap();
    let sum = |f: fn(&hrmig::store::QuarterRow) -> i64| q.iter().map(f).sum::<i64>();
    assert_eq!(
        (sum(|r| r.q1), sum(|r| r.q2), sum(|r| r.q3), sum(|r| r.q4)),
        (249, 454, 453, 487)
    );
}

/// Loads `content` as the employees file, expecting it refused whole: the
/// report and the history say `aborted` with `reason`, nothing from it is
/// committed, and loading it again is refused again (not `already_loaded`).
async fn assert_refused(env: &TestEnv, content: &[u8], reason: &str) -> load::LoadReport {
    env.write(Table::HiredEmployees, content);
    let before = env.store.loads(None, 100).await.unwrap().len();
    for attempt in 0..2 {
        let r = env.load(&[Table::HiredEmployees]).await.remove(0);
        assert_eq!(r.status, LoadStatus::Aborted, "attempt {attempt}: {r:?}");
        assert_eq!((r.inserted, r.rejected), (0, 0), "{r:?}");
        let message = r.message.clone().unwrap_or_default();
        assert!(
            message.starts_with("not a CSV of hired_employees") && message.contains(reason),
            "{message:?} does not say {reason:?}"
        );
        assert!(env.ids(Table::HiredEmployees).await.is_empty());
        assert!(env.rejections().await.is_empty(), "rejections committed");
        let loads = env.store.loads(None, 100).await.unwrap();
        assert_eq!(loads.len(), before + attempt + 1);
        assert_eq!(loads[0].status.as_str(), "aborted");
        assert_eq!(loads[0].message.as_deref(), Some(message.as_str()));
        if attempt == 1 {
            return r;
        }
    }
    unreachable!()
}

const EXPECTED: &str = "expected id,name,datetime,department_id,job_id";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_that_are_not_this_tables_csv_are_refused_whole() {
    let env = TestEnv::with_parents().await;
    let rows = format!("{}{}", good(1), good(2));
    let semicolons = rows.replace(',', ";");
    let headed = |header: &str| format!("{header}\n{rows}").into_bytes();
    let with_nul = format!("1,Ann\0Lee,{OK},1,2\n{}", good(2)).into_bytes();
    let mut gzip = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03".to_vec();
    gzip.extend(b"\x33\xd4\x71\xcc\xcb\x53\xf0\x49\x4d\xe5\x02\x00");
    let cases: Vec<(&str, Vec<u8>, String)> = vec![
        (
            "semicolons",
            semicolons.into_bytes(),
            "none of its first 2 records has the 5 fields".into(),
        ),
        (
            "tabs, with a header",
            format!(
                "id\tname\tdatetime\tdepartment_id\tjob_id\n{}",
                rows.replace(',', "\t")
            )
            .into_bytes(),
            "none of its first 3 records".into(),
        ),
        ("gzip", gzip, "it starts like a gzip file".into()),
        (
            "zip",
            b"PK\x03\x04\x14\x00\x00\x00\x08\x00".to_vec(),
            "a zip file".into(),
        ),
        ("NUL in the first line", with_nul, "NUL byte".into()),
        (
            "UTF-16",
            "id,name\n1,A\n"
                .encode_utf16()
                .flat_map(u16::to_le_bytes)
                .collect(),
            "NUL byte".into(),
        ),
        (
            "unknown columns",
            headed("id,name,date,department,job"),
            format!("its header names id,name,date,department,job; {EXPECTED}"),
        ),
        (
            "a missing column",
            headed("id,name,datetime,department_id"),
            format!("its header names id,name,datetime,department_id; {EXPECTED}"),
        ),
        (
            "an extra column",
            headed("id,name,datetime,department_id,job_id,salary"),
            format!("its header names id,name,datetime,department_id,job_id,salary; {EXPECTED}"),
        ),
        (
            "a repeated column",
            headed("id,name,name,department_id,job_id"),
            format!("its header names id,name,name,department_id,job_id; {EXPECTED}"),
        ),
        (
            "reordered columns",
            headed("id,name,datetime,job_id,department_id"),
            format!("its header names id,name,datetime,job_id,department_id; {EXPECTED}"),
        ),
        (
            "another table's header",
            format!("id,department\n{}", DEPARTMENTS).into_bytes(),
            format!("its header names id,department; {EXPECTED}"),
        ),
        (
            "every row with the wrong field count",
            "1,A,2021-07-27T16:02:08Z,1\n2,B,2021-07-27T16:02:08Z,1,2,3\n".into(),
            "none of its first 2 records has the 5 fields".into(),
        ),
    ];
    for (what, content, reason) in cases {
        println!("{what}");
        assert_refused(&env, &content, &reason).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_field_count_check_reads_the_first_1000_records() {
    let env = TestEnv::with_parents().await;
    let wrong = |n: u32| -> String { (1..=n).map(|id| format!("{id};A;{OK};1;2\n")).collect() };
    // 1000 wrong records and good ones after: refused at the 1000th.
    let r = assert_refused(
        &env,
        format!("{}{}", wrong(1000), good(5000)).as_bytes(),
        "none of its first 1000 records",
    )
    .await;
    assert_eq!(r.rows_read, 1000);
    // 999 wrong records and a good one: a CSV of the table with bad rows.
    let r = env
        .load_employees(format!("{}{}", wrong(999), good(5000)).as_bytes())
        .await;
    assert_eq!(
        (r.status, r.inserted, r.rejected),
        (LoadStatus::Loaded, 1, 999)
    );
    assert_eq!(env.ids(Table::HiredEmployees).await, vec![5000]);
    let rejected = env.rejected().await;
    assert!(rejected.iter().all(|(_, e)| e == &vec![(None, Columns)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_after_rows_reached_the_database_rolls_them_back() {
    // Records of 5 KB: the first chunks (4 MiB) are written before the
    // 1000th record shows the file is not a CSV of the table.
    let env = TestEnv::with_parents().await;
    let name = "n".repeat(5000);
    let csv: String = (1..=1200)
        .map(|id| format!("{id};{name};{OK};1;2\n"))
        .collect();
    let started = std::time::Instant::now();
    let r = assert_refused(&env, csv.as_bytes(), "none of its first 1000 records").await;
    assert_eq!(r.rows_read, 1000);
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_few_rows_with_the_wrong_field_count_do_not_refuse_the_file() {
    let env = TestEnv::with_parents().await;
    let csv = format!(
        "id,name,datetime,department_id,job_id\n1;A;{OK};1;2\n{}2,A,{OK},1\n{}",
        good(3),
        good(4)
    );
    let r = env.load_employees(csv.as_bytes()).await;
    assert_eq!(
        (r.status, r.inserted, r.rejected),
        (LoadStatus::Loaded, 2, 2)
    );
    assert_eq!(
        env.rejected().await,
        vec![(2, vec![(None, Columns)]), (4, vec![(None, Columns)])]
    );
    // A first data row whose id is a word reads as a header only when
    // every field is a word; with a datetime in it, it is a row.
    let csv = format!("abc,A,{OK},1,2\n{}", good(7));
    let r = env.load_employees(csv.as_bytes()).await;
    assert_eq!((r.inserted, r.rejected), (1, 1));
}

/// What the database holds that a dry run must leave alone: every table's
/// rows, the rejection log and the load history.
async fn everything(env: &TestEnv) -> (Vec<Vec<String>>, usize, usize) {
    let mut rows = Vec::new();
    for table in Table::ALL {
        rows.push(env.rows(table).await);
    }
    let loads = env.store.loads(None, 1000).await.unwrap().len();
    (rows, env.rejections().await.len(), loads)
}

fn dry_run(env: &TestEnv, tables: &[Table]) -> hrmig::ops::load::LoadRequest {
    let mut req = env.request(tables);
    req.dry_run = true;
    req
}

/// `(line, [(column, code)])` of a dry run's rejections, as `rejected` gives
/// the log's.
fn would_reject(r: &LoadReport) -> Vec<Rejected> {
    r.rejections
        .iter()
        .map(|w| {
            let errors = w
                .errors
                .iter()
                .map(|e| (e.column.clone(), e.code))
                .collect();
            (w.line as i64, errors)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_checks_every_row_as_a_load_does_and_writes_nothing() {
    let env = TestEnv::with_parents().await;
    env.load_employees(good(7).as_bytes()).await;
    // Every kind of check: a good row, one already in the table, one
    // repeated in the file, a broken rule, an unknown parent.
    let csv = [
        good(1),
        good(7),
        good(1),
        line("2", "", OK, "1", "2"),
        line("3", "Bo", OK, "9", "2"),
        good(4),
    ]
    .concat();
    env.write(Table::HiredEmployees, csv.as_bytes());
    let before = everything(&env).await;
    let req = dry_run(&env, &[Table::HiredEmployees]);
    let dry = load::load(&env.store, &req).await.unwrap().remove(0);
    assert!(dry.dry_run);
    assert_eq!(
        (dry.status, dry.rows_read, dry.inserted, dry.rejected),
        (LoadStatus::Loaded, 6, 2, 4)
    );
    assert_eq!(everything(&env).await, before, "a dry run wrote something");
    assert_eq!(dry.rejections[0].raw, good(7).trim_end());
    // The real run does what the dry run said.
    let real = env.load(&[Table::HiredEmployees]).await.remove(0);
    assert!(!real.dry_run && real.rejections.is_empty());
    assert_eq!(
        (real.status, real.inserted, real.rejected),
        (dry.status, dry.inserted, dry.rejected)
    );
    assert_eq!(real.rejected_by_code, dry.rejected_by_code);
    let counted: Vec<(ErrorCode, u64)> = dry.rejected_by_code.iter().collect();
    assert_eq!(counted, [(Missing, 1), (Duplicate, 2), (ForeignKey, 1)]);
    assert_eq!(would_reject(&dry), env.rejected().await);
    assert_eq!(
        env.ids(Table::HiredEmployees).await,
        vec![1, 4, 7],
        "the real run after a dry run"
    );
    // Now loaded: a dry run says so too, and with force it counts every
    // row again as a forced load would.
    let again = load::load(&env.store, &req).await.unwrap().remove(0);
    assert_eq!(
        (again.status, again.dry_run),
        (LoadStatus::AlreadyLoaded, true)
    );
    let mut forced = dry_run(&env, &[Table::HiredEmployees]);
    forced.force = true;
    let before = everything(&env).await;
    let f = load::load(&env.store, &forced).await.unwrap().remove(0);
    assert_eq!(
        (f.status, f.inserted, f.rejected),
        (LoadStatus::Loaded, 0, 6)
    );
    assert_eq!(everything(&env).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_of_several_files_checks_children_against_the_parents_it_would_load() {
    let env = TestEnv::new().await;
    env.write(Table::Departments, DEPARTMENTS.as_bytes());
    env.write(Table::Jobs, JOBS.as_bytes());
    // Parents 1..3 and 1..2 come with the run; department 9 does not.
    let employees = [
        good(1),
        line("2", "Bo", OK, "3", "1"),
        line("3", "Cy", OK, "9", "1"),
    ];
    env.write(Table::HiredEmployees, employees.concat().as_bytes());
    let before = everything(&env).await;
    let dry = load::load(&env.store, &dry_run(&env, &[])).await.unwrap();
    assert_eq!(everything(&env).await, before, "a dry run wrote something");
    let counts: Vec<(u64, u64)> = dry.iter().map(|r| (r.inserted, r.rejected)).collect();
    assert_eq!(counts, [(3, 0), (2, 0), (2, 1)]);
    assert_eq!(
        would_reject(&dry[2]),
        vec![(3, vec![(col("department_id"), ForeignKey)])]
    );
    let real = env.load(&[]).await;
    let real_counts: Vec<(u64, u64)> = real.iter().map(|r| (r.inserted, r.rejected)).collect();
    assert_eq!(real_counts, counts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_over_max_rejects_aborts_and_records_nothing() {
    let env = TestEnv::with_parents().await;
    let csv: String = (1..=20)
        .map(|id| line(&id.to_string(), "A", "x", "1", "2"))
        .collect();
    env.write(Table::HiredEmployees, csv.as_bytes());
    let before = everything(&env).await;
    let mut req = dry_run(&env, &[Table::HiredEmployees]);
    req.max_rejects = Some(5);
    let r = load::load(&env.store, &req).await.unwrap().remove(0);
    assert_eq!((r.status, r.dry_run), (LoadStatus::Aborted, true));
    // A real run records its abort in the history; a dry run does not.
    assert_eq!(everything(&env).await, before);
    // A file that is not a CSV of the table: refused, and not recorded.
    env.write(Table::HiredEmployees, b"1;Ann;2021-01-01T00:00:00Z;1;2\n");
    let r = load::load(&env.store, &req).await.unwrap().remove(0);
    assert_eq!(r.status, LoadStatus::Aborted, "{r:?}");
    assert_eq!(everything(&env).await, before);
}
