//! The test's database read directly, as another program (a BI tool)
//! would: rows as texts.

use super::servers::mssql_client;

/// The first column of every row of a query, as text, sorted: what another
/// program reads, in an order that does not depend on the collation.
pub async fn query_texts(url: &str, sql: &str) -> Vec<String> {
    let mut texts: Vec<String> = if let Some(path) = url.strip_prefix("sqlite://") {
        let conn = rusqlite::Connection::open(path).unwrap();
        let mut stmt = conn.prepare(sql).unwrap();
        let rows = stmt.query_map([], |r| r.get::<_, String>(0)).unwrap();
        rows.map(Result::unwrap).collect()
    } else if url.starts_with("mssql://") {
        let mut client = mssql_client(url).await;
        let rows = (client.simple_query(sql).await.unwrap())
            .into_first_result()
            .await
            .unwrap();
        (rows.iter())
            .map(|r| r.get::<&str, _>(0).unwrap_or_default().to_owned())
            .collect()
    } else {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        let rows = client.query(sql, &[]).await.unwrap();
        rows.iter().map(|r| r.get::<_, String>(0)).collect()
    };
    texts.sort();
    texts
}
