//! The test's database read directly, as another program would.

use super::servers::mssql_client;

/// One number from a query, run against the test's database directly.
pub async fn query_i64(url: &str, sql: &str) -> i64 {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    } else if url.starts_with("mssql://") {
        let mut client = mssql_client(url).await;
        let row = client
            .simple_query(sql)
            .await
            .unwrap()
            .into_row()
            .await
            .unwrap()
            .unwrap();
        // COUNT(*) is an INT on SQL Server; `get` of the wrong type panics,
        // `try_get` says so.
        match row.try_get::<i64, _>(0) {
            Ok(Some(n)) => n,
            _ => i64::from(row.try_get::<i32, _>(0).unwrap().unwrap()),
        }
    } else {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client.query_one(sql, &[]).await.unwrap().get(0)
    }
}
