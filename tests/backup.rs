//! Backup, verify and restore against a real SQLite file and real files:
//! round trips, every kind of damage, foreign keys, names.

mod common {
    pub mod db;
    pub mod env;
    pub mod port;
    pub mod serve;
    pub mod servers;
}

use common::env::TestEnv;
use hrmig::dictionary::Table;
use hrmig::ops::backup::{self, BackupError, BackupName, Codec, Manifest, Retention};
use hrmig::ops::sample::{self, GenOptions};
use hrmig::ops::{Progress, Quiet};
use hrmig::storage::Storage;
use hrmig::store::{Field, RowSink};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;

const CODECS: [Codec; 4] = [Codec::Null, Codec::Deflate, Codec::Snappy, Codec::Zstandard];

/// No progress shown: the operations report to no one.
fn quiet() -> Arc<dyn Progress> {
    Arc::new(Quiet)
}

/// Every row of `table` in id order, as JSON values.
async fn rows(store: &hrmig::store::Store, table: Table) -> Vec<serde_json::Value> {
    struct Collect(Vec<serde_json::Value>);
    impl RowSink for Collect {
        fn row(&mut self, fields: &[Field<'_>]) -> Result<(), hrmig::store::StoreError> {
            self.0.push(serde_json::Value::Array(
                fields
                    .iter()
                    .map(|f| match *f {
                        Field::Int(n) => serde_json::json!(n),
                        Field::Text(_) => serde_json::json!(f.text().unwrap()),
                        Field::DateTime(_) | Field::DateTimeText(_) => {
                            serde_json::json!(f.datetime().unwrap())
                        }
                    })
                    .collect(),
            ));
            Ok(())
        }
    }
    store.scan(table, Collect(Vec::new())).await.unwrap().0
}

/// Runs statements against the test's database directly, as another
/// program would.
async fn execute(url: &str, sql: &str) {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.execute_batch(sql).unwrap();
    } else if url.starts_with("mssql://") {
        let mut client = common::servers::mssql_client(url).await;
        client
            .simple_query(sql)
            .await
            .unwrap()
            .into_results()
            .await
            .unwrap();
    } else {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client.batch_execute(sql).await.unwrap();
    }
}

struct Env {
    env: TestEnv,
    storage: Storage,
}

impl Env {
    /// A database loaded with generated data (`employees` rows, all valid).
    async fn generated(employees: u64) -> Env {
        let env = TestEnv::new().await;
        let opts = GenOptions {
            employees,
            invalid_rate: 0.0,
            seed: 7,
        };
        sample::generate(&env.landing_dir(), &opts).unwrap();
        env.load(&[]).await;
        let storage = Storage::open(env.storage_dir().to_str().unwrap()).unwrap();
        Env { env, storage }
    }

    /// Row count and SHA-256 of every row of `table`, in id order.
    async fn digest(&self, table: Table) -> (u64, String) {
        let rows = rows(&self.env.store, table).await;
        let mut h = Sha256::new();
        for row in &rows {
            h.update(format!("{row:?}\n"));
        }
        (rows.len() as u64, hex::encode(h.finalize()))
    }

    async fn sql(&self, sql: &str) {
        execute(&self.env.url, sql).await;
    }

    async fn backup(&self, table: Table, codec: Codec) -> Manifest {
        backup::backup(&self.env.store, &self.storage, table, codec, quiet())
            .await
            .unwrap()
    }

    fn file(&self, m: &Manifest) -> PathBuf {
        self.folder(m.table).join(&m.file)
    }

    fn manifest_file(&self, m: &Manifest) -> PathBuf {
        self.folder(m.table)
            .join(format!("{}.manifest.json", m.backup))
    }

    fn folder(&self, table: Table) -> PathBuf {
        self.storage
            .local_dir()
            .unwrap()
            .join("backups")
            .join(table.name())
    }

    async fn restore(&self, table: Table, name: &str) -> Result<u64, BackupError> {
        backup::restore(&self.env.store, &self.storage, table, Some(name), quiet())
            .await
            .map(|r| r.rows)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_table_round_trips_with_every_codec() {
    let env = Env::generated(3000).await;
    for codec in CODECS {
        for table in Table::ALL {
            let before = env.digest(table).await;
            let m = env.backup(table, codec).await;
            assert_eq!(m.rows, before.0, "{table} {codec:?}");
            assert_eq!(m.codec, codec);
            // Change the table, then restore it.
            match table {
                Table::HiredEmployees => env.sql("DELETE FROM hired_employees WHERE id % 3 = 0; UPDATE hired_employees SET name = 'x' WHERE id = 1").await,
                Table::Departments => env.sql("UPDATE departments SET department = 'Renamed'").await,
                Table::Jobs => env.sql("UPDATE jobs SET job = CONCAT(job, '!') WHERE id < 50").await,
            }
            assert_ne!(env.digest(table).await, before);
            let v = backup::verify(&env.storage, table, Some(&m.backup), quiet())
                .await
                .unwrap();
            assert!(v.ok, "{:?}", v.problems);
            assert_eq!(v.rows, before.0);
            assert_eq!(env.restore(table, &m.backup).await.unwrap(), before.0);
            assert_eq!(env.digest(table).await, before, "{table} {codec:?}");
        }
    }
    // Newest first by default; listing in creation order.
    let listed = backup::list(&env.storage, Table::Jobs).await.unwrap();
    assert_eq!(listed.len(), CODECS.len());
    assert!(listed.windows(2).all(|w| w[0].backup < w[1].backup));
    let r = backup::restore(&env.env.store, &env.storage, Table::Jobs, None, quiet())
        .await
        .unwrap();
    assert_eq!(r.backup, listed.last().unwrap().backup);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_table_backs_up_and_restores_empty() {
    let env = Env::generated(50).await;
    env.sql("DELETE FROM hired_employees").await;
    let m = env.backup(Table::HiredEmployees, Codec::DEFAULT).await;
    assert_eq!(m.rows, 0);
    env.env.load(&[Table::HiredEmployees]).await;
    env.sql("INSERT INTO hired_employees VALUES (999999, 'A', '2021-01-01T00:00:00Z', 1, 1)")
        .await;
    assert!(env.digest(Table::HiredEmployees).await.0 > 0);
    assert_eq!(
        env.restore(Table::HiredEmployees, &m.backup).await.unwrap(),
        0
    );
    assert_eq!(env.digest(Table::HiredEmployees).await.0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_rows_round_trip() {
    let env = Env::generated(1_000_000).await;
    let before = env.digest(Table::HiredEmployees).await;
    assert_eq!(before.0, 1_000_000);
    let m = env.backup(Table::HiredEmployees, Codec::DEFAULT).await;
    assert_eq!(m.rows, 1_000_000);
    env.sql("DELETE FROM hired_employees WHERE id > 500000")
        .await;
    env.restore(Table::HiredEmployees, &m.backup).await.unwrap();
    assert_eq!(env.digest(Table::HiredEmployees).await, before);
}

/// Damages a copy of a good backup in one way, then checks that verify
/// names a problem and that restore refuses with the table unchanged.
async fn refused(env: &Env, m: &Manifest, what: &str, expect: &str) {
    let table = m.table;
    let before = env.digest(table).await;
    let v = backup::verify(&env.storage, table, Some(&m.backup), quiet())
        .await
        .unwrap();
    assert!(!v.ok, "{what}: verify passed");
    assert!(
        v.problems.iter().any(|p| p.contains(expect)),
        "{what}: {:?} does not mention {expect:?}",
        v.problems
    );
    match env.restore(table, &m.backup).await {
        Err(BackupError::Damaged { problems, .. }) => {
            assert!(
                problems.iter().any(|p| p.contains(expect)),
                "{what}: {problems:?}"
            )
        }
        other => panic!("{what}: restore gave {other:?}"),
    }
    assert_eq!(env.digest(table).await, before, "{what}: table changed");
}

/// Offsets just after each sync marker in an Avro file (block boundaries).
fn block_ends(bytes: &[u8]) -> Vec<usize> {
    let marker = &bytes[bytes.len() - 16..];
    (16..=bytes.len())
        .filter(|&end| &bytes[end - 16..end] == marker)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_backups_are_refused_and_the_table_is_unchanged() {
    let env = Env::generated(30_000).await;
    for codec in [Codec::Null, Codec::DEFAULT] {
        let m = env.backup(Table::HiredEmployees, codec).await;
        let path = env.file(&m);
        let good = std::fs::read(&path).unwrap();
        let manifest = std::fs::read(env.manifest_file(&m)).unwrap();
        let ends = block_ends(&good);
        assert!(
            ends.len() >= 4,
            "{codec:?}: want several blocks, got {}",
            ends.len()
        );
        // Change the table a little, so that a wrong restore would show.
        env.sql("UPDATE hired_employees SET name = 'changed' WHERE id = 2")
            .await;

        let damage: Vec<(&str, Vec<u8>, &str)> = vec![
            (
                "cut at a block boundary",
                good[..ends[ends.len() - 2]].to_vec(),
                "rows in the file",
            ),
            ("cut mid-block", good[..good.len() - 100].to_vec(), "row"),
            (
                "a data byte flipped",
                {
                    let mut b = good.clone();
                    let at = (ends[1] + ends[2]) / 2;
                    b[at] ^= 0x5a;
                    b
                },
                "",
            ),
            (
                "the last sync marker flipped",
                {
                    let mut b = good.clone();
                    let at = b.len() - 3;
                    b[at] ^= 0xff;
                    b
                },
                "",
            ),
            (
                "bytes appended",
                [good.as_slice(), b"extra"].concat(),
                "unreadable",
            ),
            (
                "an empty file",
                Vec::new(),
                "not an Avro object container file",
            ),
        ];
        for (what, bytes, expect) in damage {
            std::fs::write(&path, &bytes).unwrap();
            refused(&env, &m, what, expect).await;
        }
        std::fs::write(&path, &good).unwrap();

        // The manifest: edited, missing.
        let edited = String::from_utf8(manifest.clone()).unwrap().replace(
            &format!("\"rows\": {}", m.rows),
            &format!("\"rows\": {}", m.rows + 1),
        );
        std::fs::write(env.manifest_file(&m), edited).unwrap();
        refused(&env, &m, "manifest edited", "in the manifest").await;
        std::fs::remove_file(env.manifest_file(&m)).unwrap();
        refused(&env, &m, "manifest missing", "manifest").await;
        std::fs::write(env.manifest_file(&m), &manifest).unwrap();

        // Another table's file under this name.
        let jobs = env.backup(Table::Jobs, codec).await;
        std::fs::copy(env.file(&jobs), &path).unwrap();
        refused(&env, &m, "another table's file", "schema").await;
        std::fs::write(&path, &good).unwrap();
        let v = backup::verify(
            &env.storage,
            Table::HiredEmployees,
            Some(&m.backup),
            quiet(),
        )
        .await
        .unwrap();
        assert!(v.ok, "restored file: {:?}", v.problems);
    }
}

/// Writes an Avro file with `schema` and `rows`, and a manifest that
/// matches it byte for byte (so that only the content is wrong).
fn forge(env: &Env, schema: &str, rows: Vec<apache_avro::types::Value>, table: Table) -> Manifest {
    let schema = apache_avro::Schema::parse_str(schema).unwrap();
    let mut meta = std::collections::HashMap::new();
    meta.insert(
        "hrmig.table".to_owned(),
        apache_avro::types::Value::Bytes(table.name().as_bytes().to_vec()),
    );
    let mut w = apache_avro::Writer::builder()
        .schema(&schema)
        .writer(Vec::new())
        .user_metadata(meta)
        .build()
        .unwrap();
    let n = rows.len() as u64;
    for r in rows {
        w.append_value(r).unwrap();
    }
    let bytes = w.into_inner().unwrap();
    let good = env.backup_of(table);
    let m = Manifest {
        rows: n,
        bytes: bytes.len() as u64,
        sha256: hex::encode(Sha256::digest(&bytes)),
        ..good
    };
    std::fs::write(env.file(&m), &bytes).unwrap();
    std::fs::write(env.manifest_file(&m), serde_json::to_vec(&m).unwrap()).unwrap();
    m
}

impl Env {
    /// The newest manifest of `table`.
    fn backup_of(&self, table: Table) -> Manifest {
        let dir = self.folder(table);
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".manifest.json"))
            .collect();
        names.sort();
        serde_json::from_slice(&std::fs::read(dir.join(names.last().unwrap())).unwrap()).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_files_with_a_wrong_schema_or_row_are_refused() {
    use apache_avro::types::Value as A;
    let env = Env::generated(10).await;
    env.backup(Table::Jobs, Codec::DEFAULT).await;
    let job = |id: i32, name: &str| {
        A::Record(vec![
            ("id".into(), A::Int(id)),
            ("job".into(), A::String(name.into())),
        ])
    };
    let renamed = r#"{"type":"record","name":"jobs","namespace":"hrmig","fields":[{"name":"id","type":"int"},{"name":"title","type":"string"}]}"#;
    let m = forge(
        &env,
        renamed,
        vec![A::Record(vec![
            ("id".into(), A::Int(1)),
            ("title".into(), A::String("x".into())),
        ])],
        Table::Jobs,
    );
    refused(&env, &m, "renamed column", "schema").await;
    let retyped = r#"{"type":"record","name":"jobs","namespace":"hrmig","fields":[{"name":"id","type":"long"},{"name":"job","type":"string"}]}"#;
    let m = forge(
        &env,
        retyped,
        vec![A::Record(vec![
            ("id".into(), A::Long(1)),
            ("job".into(), A::String("x".into())),
        ])],
        Table::Jobs,
    );
    refused(&env, &m, "retyped column", "schema").await;
    let ours = Table::Jobs.avro_schema();
    let m = forge(&env, &ours, vec![job(1, "ok"), job(2, "   ")], Table::Jobs);
    refused(&env, &m, "a row breaking a rule", "row 2: job").await;
    let m = forge(
        &env,
        &ours,
        vec![job(1, "a"), job(3, "b"), job(3, "c")],
        Table::Jobs,
    );
    refused(&env, &m, "a repeated id", "row 3: id 3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restores_that_would_break_a_foreign_key_are_refused() {
    let env = Env::generated(500).await;
    // Departments from before department 13 existed, while an employee needs it.
    let departments = env.backup(Table::Departments, Codec::DEFAULT).await;
    env.sql("INSERT INTO departments VALUES (13, 'New'); INSERT INTO hired_employees VALUES (900000, 'A', '2021-01-01T00:00:00Z', 13, 1)").await;
    let before = env.digest(Table::Departments).await;
    match env.restore(Table::Departments, &departments.backup).await {
        Err(BackupError::Refused { reason, .. }) => {
            assert!(
                reason.contains("rows of hired_employees") && reason.contains("13"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(env.digest(Table::Departments).await, before);
    // Employees that name a department no longer there.
    let employees = env.backup(Table::HiredEmployees, Codec::DEFAULT).await;
    env.sql("DELETE FROM hired_employees WHERE department_id = 12; DELETE FROM departments WHERE id = 12").await;
    let before = env.digest(Table::HiredEmployees).await;
    match env.restore(Table::HiredEmployees, &employees.backup).await {
        Err(BackupError::Refused { reason, .. }) => {
            assert!(reason.contains("department_id 12"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(env.digest(Table::HiredEmployees).await, before);
}

/// Values another program stored that no backup may carry: the backup
/// fails naming the row, and leaves no file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_with_a_bad_stored_value_is_not_backed_up() {
    let env = Env::generated(20_000).await;
    let sqlite_cases = [
        (
            "UPDATE hired_employees SET name = CAST(x'ff41' AS TEXT) WHERE id = 15000",
            "row id 15000: name: not UTF-8",
        ),
        (
            "UPDATE hired_employees SET datetime = 'yesterday' WHERE id = 7",
            "row id 7: datetime",
        ),
        (
            "UPDATE hired_employees SET job_id = 'x' WHERE id = 9",
            "row id 9: job_id",
        ),
    ];
    // PostgreSQL's types refuse text that is not UTF-8 or a job_id that is
    // not a number, but keep years the dictionary does not.
    let postgres_cases = [
        (
            "UPDATE hired_employees SET datetime = '10000-01-01T00:00:00Z' WHERE id = 7",
            "row id 7: datetime",
        ),
        (
            "UPDATE hired_employees SET datetime = 'infinity' WHERE id = 9",
            "row id 9: datetime",
        ),
    ];
    if common::db::mssql() {
        // DATETIME2 holds exactly years 1 to 9999 and NVARCHAR any text:
        // SQL Server refuses every value the dictionary does.
        return;
    }
    let cases: &[(&str, &str)] = if common::db::postgres() {
        &postgres_cases
    } else {
        &sqlite_cases
    };
    for (sql, expect) in cases {
        let off = if common::db::postgres() {
            ""
        } else {
            "PRAGMA foreign_keys = OFF;"
        };
        env.sql(&format!("{off} {sql}")).await;
        let err = backup::backup(
            &env.env.store,
            &env.storage,
            Table::HiredEmployees,
            Codec::DEFAULT,
            quiet(),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains(*expect), "{err}");
        if common::db::postgres() {
            // Reading the rows through the API refuses them the same way.
            let err = env
                .env
                .store
                .rows(Table::HiredEmployees, 0, 100_000)
                .await
                .unwrap_err()
                .to_string();
            assert!(err.contains(*expect), "{err}");
        }
        let left: Vec<_> = std::fs::read_dir(env.folder(Table::HiredEmployees))
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{left:?}");
        env.sql(
            "UPDATE hired_employees SET name = 'ok', datetime = '2021-01-01T00:00:00Z', job_id = 1 WHERE id IN (15000, 7, 9)",
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_names_from_users_are_strict() {
    let env = Env::generated(10).await;
    let m = env.backup(Table::Jobs, Codec::DEFAULT).await;
    for bad in [
        "../x",
        "%2e%2e/x",
        "/etc/passwd",
        "jobs-20240101T000000000Z/../../x",
        "jobs-20240101T000000000Z\0",
        "departments-2024",
        "jobs-2024",
        "",
    ] {
        assert!(
            matches!(
                BackupName::parse(Table::Jobs, bad),
                Err(BackupError::BadName(_))
            ),
            "{bad:?}"
        );
        assert!(
            matches!(
                env.restore(Table::Jobs, bad).await,
                Err(BackupError::BadName(_))
            ),
            "{bad:?}"
        );
    }
    assert_eq!(
        BackupName::parse(Table::Jobs, &m.backup).unwrap().as_str(),
        m.backup
    );
    assert_eq!(
        BackupName::parse(Table::Jobs, &format!("{}.avro", m.backup))
            .unwrap()
            .as_str(),
        m.backup
    );
    assert!(matches!(
        env.restore(Table::Jobs, "jobs-20000101T000000000Z").await,
        Err(BackupError::NotFound(_))
    ));
    // Well formed, but another table's: not there, rather than malformed.
    match BackupName::parse(Table::Jobs, "departments-20240101T000000000Z") {
        Err(BackupError::NotFound(m)) => assert!(m.contains("of departments, not of jobs"), "{m}"),
        other => panic!("{other:?}"),
    }
}

/// Names of the complete backups of `table`, oldest first.
async fn listed(env: &Env, table: Table) -> Vec<String> {
    let all = backup::list(&env.storage, table).await.unwrap();
    all.into_iter().map(|m| m.backup).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_keeps_the_newest_and_removes_the_rest_manifest_and_file() {
    let env = Env::generated(10).await;
    let mut made = Vec::new();
    for _ in 0..4 {
        made.push(env.backup(Table::Jobs, Codec::DEFAULT).await);
    }
    let other = env.backup(Table::Departments, Codec::DEFAULT).await;
    let keep_two = Retention::new(2, None).unwrap();
    let pruned = backup::prune(&env.storage, Table::Jobs, keep_two)
        .await
        .unwrap();
    let removed: Vec<&str> = made[..2].iter().map(|m| m.backup.as_str()).collect();
    assert_eq!(pruned.removed, removed);
    assert_eq!(pruned.kept, 2);
    for m in &made[..2] {
        assert!(!env.file(m).exists(), "{}", m.backup);
        assert!(!env.manifest_file(m).exists(), "{}", m.backup);
    }
    for m in &made[2..] {
        assert!(env.file(m).exists() && env.manifest_file(m).exists());
    }
    let kept: Vec<String> = made[2..].iter().map(|m| m.backup.clone()).collect();
    assert_eq!(listed(&env, Table::Jobs).await, kept);
    // Another table's backups are its own.
    assert_eq!(listed(&env, Table::Departments).await, vec![other.backup]);
    // Again: nothing more to remove.
    let again = backup::prune(&env.storage, Table::Jobs, keep_two)
        .await
        .unwrap();
    assert!(again.removed.is_empty());
    assert_eq!(again.kept, 2);
    // keep 1 leaves the newest, which still restores.
    let keep_one = Retention::new(1, None).unwrap();
    backup::prune(&env.storage, Table::Jobs, keep_one)
        .await
        .unwrap();
    assert_eq!(
        listed(&env, Table::Jobs).await,
        vec![made[3].backup.clone()]
    );
    assert_eq!(
        env.restore(Table::Jobs, &made[3].backup).await.unwrap(),
        made[3].rows
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_with_an_age_removes_only_backups_older_than_it() {
    let env = Env::generated(10).await;
    for _ in 0..3 {
        env.backup(Table::Jobs, Codec::DEFAULT).await;
    }
    let all = listed(&env, Table::Jobs).await;
    let thirty_days = Retention::new(1, Some(30)).unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    let today = backup::prune(&env.storage, Table::Jobs, thirty_days)
        .await
        .unwrap();
    assert!(today.removed.is_empty(), "{:?}", today.removed);
    assert_eq!(listed(&env, Table::Jobs).await, all);
    // Thirty-one days on, the two older ones are past the age; the newest
    // stays whatever its age.
    let later = now + 31 * 86_400_000;
    let then = backup::prune(&env.storage, Table::Jobs, thirty_days.as_of(later))
        .await
        .unwrap();
    assert_eq!(then.removed, all[..2]);
    assert_eq!(listed(&env, Table::Jobs).await, all[2..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_refuses_keep_0_and_passes_over_a_half_removed_backup() {
    for (keep, days) in [(0, None), (0, Some(30)), (1, Some(36_501))] {
        assert!(
            matches!(
                Retention::new(keep, days),
                Err(BackupError::BadRetention(_))
            ),
            "{keep} {days:?}"
        );
    }
    assert!(Retention::new(1, Some(36_500)).is_ok());
    let env = Env::generated(10).await;
    let first = env.backup(Table::Jobs, Codec::DEFAULT).await;
    let second = env.backup(Table::Jobs, Codec::DEFAULT).await;
    let third = env.backup(Table::Jobs, Codec::DEFAULT).await;
    // A prune cut short after the manifest went: the file alone is not a
    // backup, is not listed, and is not counted among those kept.
    std::fs::remove_file(env.manifest_file(&first)).unwrap();
    // A backup whose file is gone is removed all the same.
    std::fs::remove_file(env.file(&second)).unwrap();
    let keep_one = Retention::new(1, None).unwrap();
    let pruned = backup::prune(&env.storage, Table::Jobs, keep_one)
        .await
        .unwrap();
    assert_eq!(pruned.removed, vec![second.backup.clone()]);
    assert!(!env.manifest_file(&second).exists());
    assert_eq!(listed(&env, Table::Jobs).await, vec![third.backup]);
}

/// Python's fastavro, an independent Avro reader, reads every row and the
/// schema's logical types. Runs when `HRMIG_PYTHON` (set by scripts/test to
/// a venv with fastavro) is available; in CI it must be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fastavro_reads_our_files() {
    let python = std::env::var("HRMIG_PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = std::process::Command::new(&python)
        .args(["-c", "import fastavro"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        assert!(
            std::env::var("CI").is_err(),
            "fastavro is required in CI (scripts/test installs it)"
        );
        eprintln!("SKIPPED: fastavro not available to {python} (scripts/test installs it)");
        return;
    }
    let env = Env::generated(2000).await;
    let script = r#"
import sys, json, fastavro, datetime
with open(sys.argv[1], 'rb') as f:
    r = fastavro.reader(f)
    schema = r.writer_schema
    rows = []
    for rec in r:
        out = []
        for field in schema['fields']:
            v = rec[field['name']]
            if isinstance(v, datetime.datetime):
                v = int(v.timestamp() * 1000)
            out.append(v)
        rows.append(out)
print(json.dumps({'codec': r.codec, 'schema': schema, 'rows': rows}))
"#;
    for codec in CODECS {
        for table in Table::ALL {
            let m = env.backup(table, codec).await;
            let out = std::process::Command::new(&python)
                .args(["-c", script])
                .arg(env.file(&m))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(got["codec"], codec.name());
            let fields = got["schema"]["fields"].as_array().unwrap();
            for (f, c) in fields.iter().zip(table.columns()) {
                assert_eq!(f["name"], c.name);
                if c.name == "datetime" {
                    assert_eq!(f["type"]["logicalType"], "timestamp-millis", "{f}");
                    assert_eq!(f["type"]["type"], "long");
                }
            }
            // Every row equals what the store holds.
            let ours = rows(&env.env.store, table).await;
            assert_eq!(got["rows"].as_array().unwrap(), &ours, "{table} {codec:?}");
        }
    }
}

// Crafted files: whatever a file claims, reading it stays within bounds
// derived from what hrmig writes, and it is refused naming where it is
// wrong.

/// Appends `n` as Avro encodes an `int` or a `long` (zig-zag varint).
fn long(out: &mut Vec<u8>, n: i64) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

const SYNC: [u8; 16] = *b"crafted-sync-16b";

/// The header hrmig writes for `table` with `codec`, with [`SYNC`].
fn crafted_header(table: Table, codec: apache_avro::Codec) -> Vec<u8> {
    let schema = apache_avro::Schema::parse_str(&table.avro_schema()).unwrap();
    let meta = [
        ("hrmig.table", table.name().to_owned()),
        ("hrmig.format_version", backup::FORMAT_VERSION.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| {
        (
            k.to_owned(),
            apache_avro::types::Value::Bytes(v.into_bytes()),
        )
    })
    .collect();
    apache_avro::Writer::builder()
        .schema(&schema)
        .writer(Vec::new())
        .codec(codec)
        .marker(SYNC)
        .user_metadata(meta)
        .build()
        .unwrap()
        .into_inner()
        .unwrap()
}

/// A block: row count, byte size, data, sync marker.
fn crafted_block(count: i64, size: i64, data: &[u8], sync: &[u8; 16]) -> Vec<u8> {
    let mut out = Vec::new();
    long(&mut out, count);
    long(&mut out, size);
    out.extend_from_slice(data);
    out.extend_from_slice(sync);
    out
}

/// Encoded `jobs` datums.
fn job_datums(rows: &[(i64, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (id, job) in rows {
        long(&mut out, *id);
        long(&mut out, job.len() as i64);
        out.extend_from_slice(job.as_bytes());
    }
    out
}

/// A jobs file of one block, compressed with `codec`, which claims `count`
/// rows.
fn one_block(codec: apache_avro::Codec, count: i64, compressed: &[u8]) -> Vec<u8> {
    [
        crafted_header(Table::Jobs, codec),
        crafted_block(count, compressed.len() as i64, compressed, &SYNC),
    ]
    .concat()
}

/// Zeros compressed, far more than a block may hold once decompressed.
const BOMB_ZEROS: usize = 128 << 20;

/// A few hundred bytes whose block claims 400 MB.
fn block_claiming_400_mb() -> Vec<u8> {
    let data = job_datums(&[(1, "Engineer")]);
    [
        crafted_header(Table::Jobs, apache_avro::Codec::Null),
        crafted_block(1, 400_000_000, &data, &SYNC),
    ]
    .concat()
}

/// A deflate block of [`BOMB_ZEROS`] zeros (made once per test run).
fn deflate_bomb() -> Vec<u8> {
    static BOMB: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BOMB.get_or_init(|| {
        let zeros = vec![0u8; BOMB_ZEROS];
        let compressed = miniz_oxide::deflate::compress_to_vec(&zeros, 9);
        one_block(
            apache_avro::Codec::Deflate(Default::default()),
            1,
            &compressed,
        )
    })
    .clone()
}

/// A zstandard block of [`BOMB_ZEROS`] zeros, streamed (its frame does not
/// say how large it is, as apache-avro's do not).
fn zstandard_bomb() -> Vec<u8> {
    use std::io::Write;
    static BOMB: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BOMB.get_or_init(|| {
        let zeros = vec![0u8; 1 << 20];
        let mut encoder = zstd::stream::Encoder::new(Vec::new(), 1).unwrap();
        for _ in 0..BOMB_ZEROS >> 20 {
            encoder.write_all(&zeros).unwrap();
        }
        let compressed = encoder.finish().unwrap();
        one_block(
            apache_avro::Codec::Zstandard(Default::default()),
            1,
            &compressed,
        )
    })
    .clone()
}

/// A row whose string claims 300 MB, in a block of a few bytes.
fn string_claiming_300_mb() -> Vec<u8> {
    let mut data = Vec::new();
    long(&mut data, 1);
    long(&mut data, 300_000_000);
    data.extend_from_slice(b"Engineer");
    one_block(apache_avro::Codec::Null, 1, &data)
}

/// A block that claims 2^61 rows.
fn count_of_2_pow_61() -> Vec<u8> {
    one_block(
        apache_avro::Codec::Null,
        1 << 61,
        &job_datums(&[(1, "Engineer")]),
    )
}

/// A good block followed by the wrong sync marker.
fn wrong_sync_marker() -> Vec<u8> {
    let data = job_datums(&[(1, "Engineer"), (2, "Analyst")]);
    [
        crafted_header(Table::Jobs, apache_avro::Codec::Null),
        crafted_block(2, data.len() as i64, &data, b"not-the-sync-16b"),
    ]
    .concat()
}

/// A snappy block whose CRC-32 does not match its data.
fn snappy_with_a_bad_crc() -> Vec<u8> {
    let mut compressed = job_datums(&[(1, "Engineer"), (2, "Analyst")]);
    apache_avro::Codec::Snappy
        .compress(&mut compressed)
        .unwrap();
    *compressed.last_mut().unwrap() ^= 0x01;
    one_block(apache_avro::Codec::Snappy, 2, &compressed)
}

impl Env {
    /// Stores `bytes` as a new backup of jobs with a manifest that matches
    /// them byte for byte, so that only the content is wrong.
    fn plant(&self, bytes: &[u8]) -> Manifest {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let backup = format!("jobs-20000101T{n:09}Z");
        let m = Manifest {
            file: format!("{backup}.avro"),
            backup,
            rows: 1,
            bytes: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(bytes)),
            codec: Codec::Null,
            ..self.backup_of(Table::Jobs)
        };
        std::fs::write(self.file(&m), bytes).unwrap();
        std::fs::write(self.manifest_file(&m), serde_json::to_vec(&m).unwrap()).unwrap();
        m
    }

    /// A database with a backup of jobs, to plant crafted ones beside.
    async fn with_jobs_backup() -> Env {
        let env = Env::generated(10).await;
        env.backup(Table::Jobs, Codec::DEFAULT).await;
        env
    }
}

/// [`refused`], and the problem says where in the file it is (`at`, the
/// start of the message) as well as what (`expect`).
async fn refused_at(env: &Env, bytes: &[u8], what: &str, at: &str, expect: &str) {
    let m = env.plant(bytes);
    refused(env, &m, what, expect).await;
    let v = backup::verify(&env.storage, Table::Jobs, Some(&m.backup), quiet())
        .await
        .unwrap();
    assert!(
        v.problems
            .iter()
            .any(|p| p.starts_with(at) && p.contains(expect)),
        "{what}: {:?} does not start with {at:?}",
        v.problems
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_claiming_400_mb_is_refused() {
    let env = Env::with_jobs_backup().await;
    let bytes = block_claiming_400_mb();
    assert!(bytes.len() < 1000, "{} bytes", bytes.len());
    let expect = "(from row 1): unreadable: it claims 400000000 bytes; a block holds at most";
    refused_at(&env, &bytes, "400 MB block", "block 1 at byte ", expect).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deflate_block_inflating_past_the_limit_is_refused() {
    let env = Env::with_jobs_backup().await;
    let bytes = deflate_bomb();
    assert!(bytes.len() < BOMB_ZEROS / 500, "{} bytes", bytes.len());
    let expect = "unreadable: it decompresses to more than 4194304 bytes";
    refused_at(&env, &bytes, "deflate bomb", "block 1 at byte ", expect).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zstandard_block_decompressing_past_the_limit_is_refused() {
    let env = Env::with_jobs_backup().await;
    let bytes = zstandard_bomb();
    assert!(bytes.len() < BOMB_ZEROS / 500, "{} bytes", bytes.len());
    let expect =
        "unreadable: its zstandard data is damaged or decompresses to more than 4194304 bytes";
    refused_at(&env, &bytes, "zstandard bomb", "block 1 at byte ", expect).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_string_claiming_300_mb_is_refused() {
    let env = Env::with_jobs_backup().await;
    let expect = "unreadable: job: a string of 300000000 bytes where 8 are left in the block";
    let bytes = string_claiming_300_mb();
    refused_at(&env, &bytes, "300 MB string", "block 1, row 1: ", expect).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_count_of_2_pow_61_is_refused() {
    let env = Env::with_jobs_backup().await;
    let expect = "(from row 1): unreadable: it claims 2305843009213693952 rows";
    let bytes = count_of_2_pow_61();
    refused_at(&env, &bytes, "2^61 rows", "block 1 at byte ", expect).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_sync_marker_is_refused() {
    let env = Env::with_jobs_backup().await;
    let expect = "unreadable: its sync marker differs from the header's";
    let bytes = wrong_sync_marker();
    refused_at(&env, &bytes, "wrong sync", "block 1 at byte ", expect).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snappy_block_with_a_bad_crc_is_refused() {
    let env = Env::with_jobs_backup().await;
    let expect = "unreadable: the CRC-32 of its data is";
    let bytes = snappy_with_a_bad_crc();
    refused_at(&env, &bytes, "snappy CRC", "block 1 at byte ", expect).await;
}

/// Peak resident memory of a process (`VmHWM`), in bytes.
fn peak_memory(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in {status}"));
    kb * 1024
}

/// Six crafted files verified at once through the API: each is refused,
/// and the server's peak memory grows by less than 64 MB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crafted_files_verified_at_once_stay_within_64_mb() {
    let env = Env::with_jobs_backup().await;
    let good = env.backup_of(Table::Jobs).backup;
    let crafted: Vec<String> = [
        block_claiming_400_mb(),
        deflate_bomb(),
        zstandard_bomb(),
        string_claiming_300_mb(),
        count_of_2_pow_61(),
        snappy_with_a_bad_crc(),
    ]
    .iter()
    .map(|bytes| env.plant(bytes).backup)
    .collect();
    let server = common::serve::Serve::start(&env.env.url, &env.env.storage_dir(), &[]).await;
    let client = reqwest::Client::new();
    let url = format!("{}/api/tables/jobs/verify", server.base);
    let verify = |backup: String| {
        let request = client
            .post(&url)
            .json(&serde_json::json!({ "backup": backup }));
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            response.json::<serde_json::Value>().await.unwrap()
        }
    };
    let all = async {
        let warm = verify(good).await;
        assert_eq!(warm["ok"], true, "{warm}");
        let before = peak_memory(server.child.id());
        let verdicts = futures::future::join_all(crafted.into_iter().map(verify)).await;
        let after = peak_memory(server.child.id());
        for v in &verdicts {
            assert_eq!(v["ok"], false, "{v}");
            let problems = v["problems"].as_array().unwrap();
            assert!(
                problems
                    .iter()
                    .any(|p| p.as_str().unwrap().starts_with("block 1")),
                "{v}"
            );
        }
        (before, after)
    };
    let (before, after) = tokio::time::timeout(std::time::Duration::from_secs(60), all)
        .await
        .expect("six verifies took over 60 s");
    let growth = after.saturating_sub(before);
    eprintln!("peak memory {before} -> {after} bytes (+{growth})");
    assert!(growth < 64 << 20, "peak memory grew by {growth} bytes");
}
