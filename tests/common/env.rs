//! A fresh database and storage folder per test, with the operations called
//! in this process (the conformance suite's tests/load.rs and
//! tests/backup.rs).

use super::db::database_url;
use hrmig::dictionary::Table;
use hrmig::ops::load::{self, LoadReport, LoadRequest};
use hrmig::storage::Storage;
use hrmig::store::Store;
use std::path::PathBuf;

pub struct TestEnv {
    dir: tempfile::TempDir,
    /// The database's URL.
    pub url: String,
    pub store: Store,
    pub landing: Storage,
}

impl TestEnv {
    pub async fn new() -> TestEnv {
        let dir = tempfile::tempdir().unwrap();
        let url = database_url(dir.path()).await;
        let store = Store::open(&url).await.unwrap();
        let landing = Storage::open(dir.path().join("storage").to_str().unwrap())
            .unwrap()
            .child("landing")
            .unwrap();
        TestEnv {
            dir,
            url,
            store,
            landing,
        }
    }

    /// The root of the test's storage.
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// Where a load finds its files by default.
    pub fn landing_dir(&self) -> PathBuf {
        self.storage_dir().join("landing")
    }

    pub fn request(&self, tables: &[Table]) -> LoadRequest {
        LoadRequest::new(self.landing.clone(), tables.to_vec())
    }

    pub async fn load(&self, tables: &[Table]) -> Vec<LoadReport> {
        load::load(&self.store, &self.request(tables))
            .await
            .unwrap()
    }
}
