//! `hrmig serve` as a child process, for tests that kill it or run two.

use super::port::free_port;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An `hrmig serve` process, killed when dropped.
pub struct Serve {
    pub child: Child,
    pub base: String,
}

impl Serve {
    /// Serves `database` and `storage` on a free port, with these environment
    /// variables besides.
    pub async fn start(database: &str, storage: &Path, env: &[(&str, &str)]) -> Serve {
        let port = free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_hrmig"));
        command
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env("HRMIG_DATABASE_URL", database)
            .env("HRMIG_STORAGE_URL", storage)
            .env("HRMIG_LOG", "warn")
            .env_remove("HRMIG_API_KEY")
            .env_remove("HRMIG_ADMIN_KEY")
            .env_remove("FUNCTIONS_CUSTOMHANDLER_PORT")
            .env_remove("FUNCTIONS_HTTPWORKER_PORT")
            .stdout(Stdio::null());
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command.spawn().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while reqwest::get(format!("{base}/api/health")).await.is_err() {
            assert!(Instant::now() < deadline, "hrmig serve did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Serve { child, base }
    }

    /// Kills the process at once (SIGKILL): nothing it had in flight ends.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill();
    }
}
