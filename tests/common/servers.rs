//! The database servers of the conformance suite: the shared PostgreSQL
//! server (a schema per test) and, when configured, SQL Server.

/// The PostgreSQL server tests use.
pub fn postgres_base_url() -> String {
    std::env::var("HRMIG_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Creates an empty schema and returns a URL whose connections use it.
pub async fn fresh_postgres_schema() -> String {
    let base = postgres_base_url();
    let (client, conn) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {base} is not reachable: {e}"));
    tokio::spawn(conn);
    let schema = format!("hrmig_test_{}", uuid::Uuid::new_v4().simple());
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-c%20search_path%3D{schema}")
}

/// A connection to the SQL Server of `url` (`mssql://…`).
pub async fn mssql_client(
    url: &str,
) -> tiberius::Client<tokio_util::compat::Compat<tokio::net::TcpStream>> {
    use tokio_util::compat::TokioAsyncWriteCompatExt;
    let u = url::Url::parse(url)
        .expect("HRMIG_TEST_MSSQL_URL must be mssql://USER:PASSWORD@HOST[:PORT]/DB");
    let mut config = tiberius::Config::new();
    config.host(u.host_str().unwrap());
    config.port(u.port().unwrap_or(1433));
    config.database(u.path().trim_start_matches('/'));
    config.authentication(tiberius::AuthMethod::sql_server(
        u.username(),
        u.password().unwrap_or(""),
    ));
    if u.query_pairs()
        .any(|(k, v)| k == "trust_server_certificate" && v == "true")
    {
        config.trust_cert();
    }
    let tcp = tokio::net::TcpStream::connect(config.get_addr())
        .await
        .unwrap();
    tiberius::Client::connect(config, tcp.compat_write())
        .await
        .unwrap()
}
