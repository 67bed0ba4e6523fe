//! A private server's own client, for the test's checks and changes.

use super::pg_server::PrivateServer;

impl PrivateServer {
    /// A client over the Unix socket, without TLS (which `pg_hba.conf`
    /// allows there even when TCP needs it).
    pub async fn admin(&self, dbname: &str) -> tokio_postgres::Client {
        let conninfo = format!(
            "host={} port={} user=postgres dbname={dbname}",
            self.socket_dir().display(),
            self.port
        );
        let (client, conn) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
    }
}
