//! Shared helpers: a fresh SQLite file and storage folder per test.
#![allow(dead_code)]

use hrmig::dictionary::{ErrorCode, Table};
use hrmig::ops::load::{self, LoadReport, LoadRequest};
use hrmig::storage::Storage;
use hrmig::store::{Rejection, RejectionFilter, Store};
use std::path::PathBuf;

pub const DEPARTMENTS: &str = "1,Sales\n2,Engineering\n3,Legal\n";
pub const JOBS: &str = "1,Engineer\n2,Analyst\n";

pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub store: Store,
    pub landing: Storage,
}

impl TestEnv {
    pub async fn new() -> TestEnv {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!(
            "sqlite://{}",
            dir.path().join("hrmig.db").display()
        ))
        .await
        .unwrap();
        let landing = Storage::open(dir.path().join("storage").to_str().unwrap())
            .unwrap()
            .child("landing")
            .unwrap();
        TestEnv {
            dir,
            store,
            landing,
        }
    }

    /// A database with the two parent tables loaded.
    pub async fn with_parents() -> TestEnv {
        let env = TestEnv::new().await;
        env.write(Table::Departments, DEPARTMENTS.as_bytes());
        env.write(Table::Jobs, JOBS.as_bytes());
        env.load(&[Table::Departments, Table::Jobs]).await;
        env
    }

    pub fn landing_dir(&self) -> PathBuf {
        self.landing.local_dir().unwrap().to_owned()
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("hrmig.db")
    }

    pub fn write(&self, table: Table, content: &[u8]) {
        let dir = self.landing_dir();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{}.csv", table.name())), content).unwrap();
    }

    pub fn request(&self, tables: &[Table]) -> LoadRequest {
        LoadRequest {
            from: self.landing.clone(),
            tables: tables.to_vec(),
            force: false,
            max_rejects: None,
            progress: false,
        }
    }

    pub async fn load(&self, tables: &[Table]) -> Vec<LoadReport> {
        load::load(&self.store, &self.request(tables))
            .await
            .unwrap()
    }

    /// Loads one employees file and checks the conservation rule.
    pub async fn load_employees(&self, content: &[u8]) -> LoadReport {
        self.write(Table::HiredEmployees, content);
        let report = self.load(&[Table::HiredEmployees]).await.remove(0);
        assert_eq!(
            report.rows_read,
            report.inserted + report.rejected,
            "{report:?}"
        );
        report
    }

    pub async fn rejections(&self) -> Vec<Rejection> {
        self.store
            .rejections(RejectionFilter {
                limit: 10_000,
                ..Default::default()
            })
            .await
            .unwrap()
    }

    /// `(position, [(column, code)])` of every rejection, in log order.
    pub async fn rejected(&self) -> Vec<(i64, Vec<(Option<String>, ErrorCode)>)> {
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

    /// Rows of a table as text, ordered by id, read with a separate connection.
    pub fn rows(&self, table: Table) -> Vec<String> {
        let conn = rusqlite::Connection::open(self.db_path()).unwrap();
        let cols: Vec<String> = table
            .columns()
            .iter()
            .map(|c| format!("\"{}\"", c.name))
            .collect();
        let sql = format!(
            "SELECT {} FROM \"{}\" ORDER BY id",
            cols.join(" || ',' || "),
            table.name()
        );
        let mut stmt = conn.prepare(&sql).unwrap();
        stmt.query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    pub fn ids(&self, table: Table) -> Vec<i64> {
        let conn = rusqlite::Connection::open(self.db_path()).unwrap();
        let mut stmt = conn
            .prepare(&format!("SELECT id FROM \"{}\" ORDER BY id", table.name()))
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }
}

pub fn col(name: &str) -> Option<String> {
    Some(name.to_owned())
}
