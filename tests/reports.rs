//! The reports (part of the conformance suite: SQLite, and PostgreSQL or
//! SQL Server as `common::db` says) read counts kept beside the hires; the
//! gold views stay their definition. After every kind of write (loads,
//! dry runs, upserts, batches, undo, restores), alone or at once, what the
//! reports answer is what the views say, read by another program.

mod common {
    pub mod app;
    pub mod db;
    pub mod env;
    pub mod servers;
    pub mod texts;
}

use common::app::TestApp;
use common::env::TestEnv;
use common::texts::query_texts;
use hrmig::dictionary::Table;
use hrmig::http::Keys;
use hrmig::ops::backup::{self, Codec};
use hrmig::ops::sample::{self, GenOptions};
use hrmig::ops::{Progress, Quiet};
use hrmig::storage::Storage;
use hrmig::store::OnDuplicate;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;

/// Checks both reports of every year the views know, and of a year without
/// hires, against the views; the years checked.
async fn agree(env: &TestEnv, step: &str) -> usize {
    let url = &env.url;
    let years = query_texts(
        url,
        "SELECT DISTINCT CAST(year AS VARCHAR(10)) FROM gold_hires_by_quarter",
    )
    .await;
    for year in years
        .iter()
        .map(|y| y.parse::<i32>().unwrap())
        .chain([1900])
    {
        let expected = query_texts(
            url,
            &format!(
                "SELECT concat(department, '|', job, '|', q1, '|', q2, '|', q3, '|', q4)
                 FROM gold_hires_by_quarter WHERE year = {year}"
            ),
        )
        .await;
        let rows = env.store.hires_by_quarter(year).await.unwrap();
        let mut got: Vec<String> = (rows.iter())
            .map(|r| {
                format!(
                    "{}|{}|{}|{}|{}|{}",
                    r.department, r.job, r.q1, r.q2, r.q3, r.q4
                )
            })
            .collect();
        got.sort();
        assert_eq!(got, expected, "hires by quarter of {year}, after {step}");

        let expected = query_texts(
            url,
            &format!(
                "WITH hires AS (
                     SELECT d.id, d.department, COALESCE(g.hired, 0) AS hired
                     FROM departments d
                     LEFT JOIN gold_department_hires g ON g.id = d.id AND g.year = {year})
                 SELECT concat(id, '|', department, '|', hired) FROM hires
                 WHERE hired > (SELECT AVG(CAST(hired AS FLOAT)) FROM hires)"
            ),
        )
        .await;
        let rows = env.store.departments_above_mean(year).await.unwrap();
        let mut got: Vec<String> = (rows.iter())
            .map(|r| format!("{}|{}|{}", r.id, r.department, r.hired))
            .collect();
        got.sort();
        assert_eq!(
            got, expected,
            "departments above the mean of {year}, after {step}"
        );
    }
    years.len()
}

/// Writes a generated employees file (its parents too) into the landing
/// folder.
fn generate(env: &TestEnv, employees: u64, seed: u64) {
    let opts = GenOptions {
        employees,
        invalid_rate: 0.03,
        seed,
    };
    sample::generate(&env.landing_dir(), &opts).unwrap();
}

async fn load_employees(env: &TestEnv, on_duplicate: OnDuplicate, dry_run: bool) -> u64 {
    let mut req = env.request(&[Table::HiredEmployees]);
    req.on_duplicate = on_duplicate;
    req.dry_run = dry_run;
    req.force = true;
    let report = hrmig::ops::load::load(&env.store, &req)
        .await
        .unwrap()
        .remove(0);
    report.inserted + report.updated
}

/// Hires `ids` in quarter `quarter` of 2021, department `department`.
fn hires(ids: std::ops::Range<i64>, quarter: u32, department: i64) -> Value {
    let month = 3 * quarter - 1;
    let rows: Vec<Value> = ids
        .map(|id| {
            json!({"id": id, "name": format!("Hire {id}"),
                   "datetime": format!("2021-{month:02}-0{}T10:00:00Z", 1 + id % 9),
                   "department_id": department, "job_id": 1 + id % 7})
        })
        .collect();
    Value::Array(rows)
}

async fn post(app: &TestApp, path: &str, body: &Value) -> Value {
    let r = app.post_json(path, body).await;
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn quiet() -> Arc<dyn Progress> {
    Arc::new(Quiet)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_agree_with_the_views_after_every_kind_of_write() {
    let env = TestEnv::new().await;
    assert_eq!(agree(&env, "nothing").await, 0);
    generate(&env, 3000, 1);
    let loaded = env.load(&Table::ALL).await;
    assert!(loaded[2].inserted > 2500, "{loaded:?}");
    let years = agree(&env, "a load").await;
    assert!(years >= 2, "the generated hires span years: {years}");

    // The same ids with other dates, departments and jobs.
    generate(&env, 3000, 2);
    assert!(load_employees(&env, OnDuplicate::Update, true).await > 2500);
    agree(&env, "a dry run").await;
    assert!(load_employees(&env, OnDuplicate::Update, false).await > 2500);
    agree(&env, "a load that updates rows").await;
    for seed in 10..14 {
        generate(&env, 3000, seed);
        load_employees(&env, OnDuplicate::Update, false).await;
    }
    agree(&env, "more loads that update rows").await;

    // Another process's writes, through the API: its store counts them.
    let storage = env.storage_dir();
    let app = TestApp::spawn(&env.url, &storage, Keys::default()).await;
    let rows = "/api/tables/hired_employees/rows";
    let batch = post(&app, rows, &hires(10_000..10_400, 1, 1)).await;
    agree(&env, "a batch").await;
    let upsert = format!("{rows}?on_duplicate=update");
    post(&app, &upsert, &hires(10_200..10_600, 4, 2)).await;
    agree(&env, "a batch that updates rows").await;
    // Enough transactions for a report on SQLite to fold their changes
    // into the counts first (at 64).
    for id in 50_000..50_070 {
        post(
            &app,
            rows,
            &hires(id..id + 1, 1 + (id % 4) as u32, 1 + id % 5),
        )
        .await;
    }
    agree(&env, "batches whose changes were folded").await;
    if env.url.starts_with("sqlite://") {
        let left = query_texts(
            &env.url,
            "SELECT CAST(COUNT(*) AS TEXT) FROM hrmig_hire_count_changes",
        )
        .await;
        assert_eq!(left, ["0"], "the changes were folded");
    }
    post(
        &app,
        &format!("{rows}?dry_run=true"),
        &hires(20_000..20_100, 2, 3),
    )
    .await;
    agree(&env, "a dry-run batch").await;
    let undone = post(
        &app,
        "/api/batches",
        &json!({"hired_employees": hires(30_000..30_050, 3, 4)}),
    )
    .await;
    let undo = format!(
        "/api/loads/{}/undo",
        undone["tables"]["hired_employees"]["load_id"]
    );
    post(&app, &undo, &json!({})).await;
    agree(&env, "an undo").await;
    assert!(batch["load_id"].is_i64());
    // The API answers what the store does.
    let r = app.get("/api/reports/hires-by-quarter?year=2021").await;
    assert_eq!(r.status(), StatusCode::OK);
    let answered: Value = r.json().await.unwrap();
    let expected = env.store.hires_by_quarter(2021).await.unwrap();
    assert_eq!(answered, serde_json::to_value(&expected).unwrap());

    let stored = Storage::open(storage.to_str().unwrap()).unwrap();
    let table = Table::HiredEmployees;
    backup::backup(&env.store, &stored, table, Codec::DEFAULT, quiet())
        .await
        .unwrap();
    post(&app, rows, &hires(40_000..40_300, 2, 5)).await;
    backup::restore(&env.store, &stored, table, None, quiet())
        .await
        .unwrap();
    agree(&env, "a restore").await;
    // A restore of a parent empties it and fills it again: the names the
    // reports join are the restored ones.
    backup::backup(
        &env.store,
        &stored,
        Table::Departments,
        Codec::DEFAULT,
        quiet(),
    )
    .await
    .unwrap();
    backup::restore(&env.store, &stored, Table::Departments, None, quiet())
        .await
        .unwrap();
    agree(&env, "a restore of the departments").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_stay_true_while_batches_undo_and_restores_run_at_once() {
    let env = TestEnv::new().await;
    generate(&env, 2000, 3);
    env.load(&Table::ALL).await;
    let storage = env.storage_dir();
    let stored = Storage::open(storage.to_str().unwrap()).unwrap();
    let table = Table::HiredEmployees;
    backup::backup(&env.store, &stored, table, Codec::DEFAULT, quiet())
        .await
        .unwrap();
    let app = Arc::new(TestApp::spawn(&env.url, &storage, Keys::default()).await);
    let rows = "/api/tables/hired_employees/rows";

    // Three writers: new hires, and updates over the same ids.
    let writers: Vec<_> = (0..3i64)
        .map(|w| {
            let app = app.clone();
            tokio::spawn(async move {
                let mut ops = Vec::new();
                for b in 0..12i64 {
                    let first = 100_000 + w * 10_000 + b * 100;
                    let path = match b % 3 {
                        2 => format!("{rows}?on_duplicate=update"),
                        _ => rows.to_owned(),
                    };
                    let from = if b % 3 == 2 { first - 150 } else { first };
                    let quarter = 1 + ((w + b) % 4) as u32;
                    let body = hires(from..first + 100, quarter, 1 + (b % 5));
                    ops.push(post(&app, &path, &body).await["load_id"].as_i64().unwrap());
                }
                ops
            })
        })
        .collect();
    // Reports meanwhile: each answers.
    let reports = {
        let url = env.url.clone();
        tokio::spawn(async move {
            let store = hrmig::store::Store::open(&url).await.unwrap();
            for _ in 0..20 {
                store.hires_by_quarter(2021).await.unwrap();
                store.departments_above_mean(2021).await.unwrap();
            }
        })
    };
    // A restore and undos, amid the batches.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    backup::restore(&env.store, &stored, table, None, quiet())
        .await
        .unwrap();
    let mut ops = Vec::new();
    for w in writers {
        ops.extend(w.await.unwrap());
    }
    reports.await.unwrap();
    // Undo what can be (an operation whose rows a later one rewrote is
    // refused); two at once.
    let (a, b) = (ops[0], ops[ops.len() / 2]);
    let undo = |id: i64| {
        let app = app.clone();
        async move {
            app.post_json(&format!("/api/loads/{id}/undo"), &json!({}))
                .await
                .status()
        }
    };
    let (sa, sb) = tokio::join!(undo(a), undo(b));
    for status in [sa, sb] {
        assert!(
            status == StatusCode::OK || status == StatusCode::CONFLICT,
            "{status}"
        );
    }
    agree(&env, "batches, a restore and undos at once").await;
}

/// A SQLite database made while the changes were JSON rows (migrations
/// 0001 to 0005), with hires counted before and after 0005: opening it
/// folds the JSON rows into the counts before the changes are packed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_changes_of_a_database_made_with_json_tallies_are_folded_when_it_opens() {
    use hrmig::store::{Dialect, Store, ddl};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("json-tallies.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        let before = "INSERT INTO departments VALUES (1, 'Sales'), (2, 'Legal');
                      INSERT INTO jobs VALUES (1, 'Clerk');
                      INSERT INTO hired_employees VALUES (1, 'Ann', '2021-05-01T10:00:00Z', 1, 1);";
        let migrations = ddl::migrations(Dialect::Sqlite);
        for (i, (name, sql)) in migrations.iter().enumerate().take(5) {
            if name.starts_with("0005") {
                conn.execute_batch(before).unwrap();
            }
            conn.execute_batch(sql).unwrap();
            conn.pragma_update(None, "user_version", i as i64 + 1)
                .unwrap();
        }
        conn.execute_batch(
            r#"INSERT INTO hired_employees VALUES
                   (2, 'Bo', '2021-06-01T10:00:00Z', 1, 1), (3, 'Cy', '2021-11-01T10:00:00Z', 2, 1);
               INSERT INTO hrmig_hire_count_changes VALUES ('[[2021,1,1,0,1,0,0]]'), ('[[2021,2,1,0,0,0,1]]');"#,
        )
        .unwrap();
    }
    let store = Store::open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let rows = store.hires_by_quarter(2021).await.unwrap();
    let got: Vec<_> = (rows.iter())
        .map(|r| (r.department.as_str(), r.q1, r.q2, r.q3, r.q4))
        .collect();
    assert_eq!(got, [("Legal", 0, 0, 0, 1), ("Sales", 0, 2, 0, 0)]);
    let above: Vec<_> = (store.departments_above_mean(2021).await.unwrap())
        .into_iter()
        .map(|d| (d.department, d.hired))
        .collect();
    assert_eq!(above, [("Sales".to_string(), 2)]);
    store.close().await.unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let (changes, declared): (i64, String) = conn
        .query_row(
            "SELECT (SELECT COUNT(*) FROM hrmig_hire_count_changes),
                    (SELECT type FROM pragma_table_info('hrmig_hire_count_changes'))",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((changes, declared.as_str()), (0, "BLOB"));
}
