//! A PostgreSQL server of the test's own, in a temporary directory
//! (initdb + pg_ctl, as the `postgres` user when run as root), so that tests
//! may restart it, stop it or give it TLS without disturbing a shared one.

use super::port::free_port;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A running private server, stopped when dropped.
pub struct PrivateServer {
    bin: PathBuf,
    data: tempfile::TempDir,
    /// The port on 127.0.0.1.
    pub port: u16,
}

impl PrivateServer {
    /// Initialises and starts a server, or says why it cannot (no server
    /// binaries, or root without a `postgres` user to run them as).
    pub fn start() -> Result<PrivateServer, String> {
        PrivateServer::start_with(|_| Ok(()))
    }

    /// The same, with `configure` run on the data directory between initdb
    /// and the start (what it writes there is handed to the `postgres` user).
    pub fn start_with(
        configure: impl FnOnce(&Path) -> Result<(), String>,
    ) -> Result<PrivateServer, String> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .map_err(|e| format!("no /usr/lib/postgresql: {e}"))?
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|p| p.join("initdb").exists())
            .max()
            .ok_or("no initdb under /usr/lib/postgresql")?;
        let data = tempfile::tempdir().map_err(|e| e.to_string())?;
        if is_root() {
            chown(data.path())?;
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
        configure(Path::new(&server.pgdata()))?;
        if is_root() {
            chown(Path::new(&server.pgdata()))?;
        }
        server.pg_ctl("start")?;
        Ok(server)
    }

    fn pgdata(&self) -> String {
        self.data.path().join("db").display().to_string()
    }

    /// A URL for TCP on 127.0.0.1.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The folder of its Unix socket.
    pub fn socket_dir(&self) -> &Path {
        self.data.path()
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
            self.socket_dir().display()
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

fn chown(path: &Path) -> Result<(), String> {
    let status = Command::new("chown")
        .arg("-R")
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
