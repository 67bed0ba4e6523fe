//! Azurite, the Azure Storage emulator, for the tests that need a blob
//! service: started on a free loopback port, in memory, with the Python
//! Azure SDK (`tests/blob_client.py`) as the independent client.
//!
//! Needs Azurite (`HRMIG_AZURITE`, or `.tools/node_modules/.bin/azurite-blob`)
//! and a Python with `azure-storage-blob` and `fastavro` (`HRMIG_PYTHON`);
//! `scripts/test` installs both. Without them the tests say so and are
//! skipped, except under `CI=true`, where they fail.

use super::port::free_port;
use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Azurite's documented development account and key.
pub const ACCOUNT: &str = "devstoreaccount1";
pub const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

pub fn connection_string(port: u16) -> String {
    format!(
        "DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};\
         BlobEndpoint=http://127.0.0.1:{port}/{ACCOUNT};"
    )
}

/// What the tests need besides cargo's crates, or `None` (skipped; a
/// failure under CI).
pub fn tools() -> Option<(PathBuf, String)> {
    let azurite = std::env::var("HRMIG_AZURITE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/node_modules/.bin/azurite-blob")
        });
    let python = std::env::var("HRMIG_PYTHON").unwrap_or_else(|_| "python3".into());
    let sdk = Command::new(&python)
        .args(["-c", "import azure.storage.blob, fastavro"])
        .output()
        .is_ok_and(|o| o.status.success());
    if azurite.is_file() && sdk {
        return Some((azurite, python));
    }
    let why = format!(
        "Azurite at {} {}, azure-storage-blob + fastavro for {python} {} \
         (scripts/test installs both)",
        azurite.display(),
        if azurite.is_file() {
            "found"
        } else {
            "missing"
        },
        if sdk { "found" } else { "missing" },
    );
    assert!(std::env::var("CI").is_err(), "required in CI: {why}");
    eprintln!("\n*** SKIPPED: the Azure Blob tests need {why}\n");
    None
}

/// An Azurite blob service on a free loopback port, in memory, stopped when
/// dropped.
pub struct Azurite {
    pub child: Child,
    pub port: u16,
    pub python: String,
}

impl Azurite {
    /// Started, with `container` created in it.
    pub fn with_container(container: &str) -> Option<Azurite> {
        let azurite = Azurite::start()?;
        azurite.client(&["create", container]);
        Some(azurite)
    }

    pub fn start() -> Option<Azurite> {
        let (azurite, python) = tools()?;
        let port = free_port();
        let child = Command::new(azurite)
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .args(["--inMemoryPersistence", "--disableTelemetry", "--silent"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "Azurite did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Azurite {
            child,
            port,
            python,
        })
    }

    /// Runs the independent client against this Azurite; panics on failure.
    pub fn client(&self, args: &[&str]) -> String {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/blob_client.py");
        let out = Command::new(&self.python)
            .arg(script)
            .args(args)
            .env(
                "AZURE_STORAGE_CONNECTION_STRING",
                connection_string(self.port),
            )
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "blob_client {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Committed blobs of a container: name → size.
    pub fn blobs(&self, container: &str) -> Vec<(String, u64)> {
        self.client(&["list", container])
            .lines()
            .map(|l| {
                let (name, size) = l.split_once('\t').unwrap();
                (name.to_owned(), size.parse().unwrap())
            })
            .collect()
    }

    /// Uploads `<landing>/<table>.csv` to `landing/<table>.csv` under
    /// `root` (`CONTAINER[/PREFIX]`).
    pub fn upload_landing(&self, root: &str, landing: &Path, tables: &[&str]) {
        let (container, prefix) = root.split_once('/').unwrap_or((root, ""));
        for t in tables {
            let file = landing.join(format!("{t}.csv"));
            let blob = format!("{prefix}/landing/{t}.csv");
            let blob = blob.trim_start_matches('/');
            self.client(&["upload", container, blob, file.to_str().unwrap()]);
        }
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sample CSVs in `dir/landing` (no bad rows when `clean`).
pub fn generate(dir: &Path, employees: u32, clean: bool) -> PathBuf {
    let landing = dir.join("landing");
    let mut args = vec![
        "gen".to_owned(),
        "--out".into(),
        landing.display().to_string(),
    ];
    args.extend(["--employees".into(), employees.to_string()]);
    if clean {
        args.extend(["--invalid-rate".into(), "0".into()]);
    }
    let o = Command::new(env!("CARGO_BIN_EXE_hrmig"))
        .args(&args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    landing
}

/// Waits (bounded) until `ready`, failing if `child` ends first.
pub fn wait_for(child: &mut Child, what: &str, ready: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(180);
    while !ready() {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("{what}: ended first ({status}): {err}");
        }
        assert!(Instant::now() < deadline, "{what}: never got there");
        std::thread::sleep(Duration::from_millis(10));
    }
}
