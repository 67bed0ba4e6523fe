//! A PostgreSQL server of the test's own, in a temporary directory
//! (initdb + pg_ctl, as the `postgres` user when run as root), so that tests
//! may restart it, stop it or give it TLS without disturbing a shared one.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A certificate and key for the server, PEM.
pub struct ServerTls<'a> {
    pub cert_pem: &'a str,
    pub key_pem: &'a str,
}

/// A running private server, stopped when dropped.
pub struct PrivateServer {
    bin: PathBuf,
    data: tempfile::TempDir,
    port: u16,
}

impl PrivateServer {
    /// Initialises and starts a server, or says why it cannot (no server
    /// binaries, or root without a `postgres` user to run them as).
    pub fn start() -> Result<PrivateServer, String> {
        PrivateServer::start_with(None)
    }

    /// A server with `ssl=on` and this certificate, whose `pg_hba.conf`
    /// refuses every TCP connection that is not TLS (Unix sockets stay open,
    /// for the test's own checks).
    pub fn start_tls(tls: ServerTls<'_>) -> Result<PrivateServer, String> {
        PrivateServer::start_with(Some(tls))
    }

    fn start_with(tls: Option<ServerTls<'_>>) -> Result<PrivateServer, String> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .map_err(|e| format!("no /usr/lib/postgresql: {e}"))?
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|p| p.join("initdb").exists())
            .max()
            .ok_or("no initdb under /usr/lib/postgresql")?;
        let data = tempfile::tempdir().map_err(|e| e.to_string())?;
        if is_root() {
            chown(data.path(), true)?;
        }
        let server = PrivateServer {
            bin,
            data,
            port: free_port(),
        };
        server.run(
            "initdb",
            &["-D", &server.pgdata(), "-A", "trust", "-U", "postgres"],
        )?;
        if let Some(tls) = tls {
            server.configure_tls(&tls)?;
        }
        server.pg_ctl("start")?;
        Ok(server)
    }

    fn configure_tls(&self, tls: &ServerTls<'_>) -> Result<(), String> {
        let dir = PathBuf::from(self.pgdata());
        let write = |name: &str, content: &str| {
            std::fs::write(dir.join(name), content).map_err(|e| format!("{name}: {e}"))
        };
        write("server.crt", tls.cert_pem)?;
        write("server.key", tls.key_pem)?;
        // PostgreSQL refuses a key that others may read.
        std::fs::set_permissions(
            dir.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .map_err(|e| format!("server.key: {e}"))?;
        let conf = dir.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).map_err(|e| e.to_string())?;
        text.push_str("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        std::fs::write(&conf, text).map_err(|e| e.to_string())?;
        write(
            "pg_hba.conf",
            "local all all trust\n\
             hostssl all all 127.0.0.1/32 trust\n\
             hostssl all all ::1/128 trust\n\
             hostnossl all all 0.0.0.0/0 reject\n\
             hostnossl all all ::/0 reject\n",
        )?;
        if is_root() {
            for name in ["server.crt", "server.key", "postgresql.conf", "pg_hba.conf"] {
                chown(&dir.join(name), false)?;
            }
        }
        Ok(())
    }

    fn pgdata(&self) -> String {
        self.data.path().join("db").display().to_string()
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL for TCP on 127.0.0.1.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A client over the Unix socket, without TLS (which `pg_hba.conf`
    /// allows there), for the test's own checks.
    pub async fn admin(&self, dbname: &str) -> tokio_postgres::Client {
        let conninfo = format!(
            "host={} port={} user=postgres dbname={dbname}",
            self.data.path().display(),
            self.port
        );
        let (client, conn) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let exe = self.bin.join(program);
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd
            .args(args)
            .current_dir(self.data.path())
            .output()
            .map_err(|e| format!("{program}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{program} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// `pg_ctl start|stop|restart`, waiting until it is done.
    pub fn pg_ctl(&self, action: &str) -> Result<(), String> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.data.path().display()
        );
        let log = self.data.path().join("log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.pgdata(),
                "-o",
                &options,
                "-l",
                &log,
                "-m",
                "fast",
                "-w",
                action,
            ],
        )
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let _ = self.pg_ctl("stop");
    }
}

fn chown(path: &Path, recursive: bool) -> Result<(), String> {
    let mut cmd = Command::new("chown");
    if recursive {
        cmd.arg("-R");
    }
    let status = cmd
        .arg("postgres:postgres")
        .arg(path)
        .status()
        .map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "cannot hand {} to the postgres user",
            path.display()
        ))
    }
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private server, or `None` (said loudly) when this machine cannot run
/// one; under CI that is a failure.
pub fn private_server() -> Option<PrivateServer> {
    or_skip(PrivateServer::start())
}

/// The server, or `None` (said loudly) when it could not start; under CI
/// that is a failure.
pub fn or_skip(started: Result<PrivateServer, String>) -> Option<PrivateServer> {
    match started {
        Ok(s) => Some(s),
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true and a private PostgreSQL server cannot start: {e}")
        }
        Err(e) => {
            eprintln!("\n*** SKIPPED: cannot start a private PostgreSQL server: {e}\n");
            None
        }
    }
}
