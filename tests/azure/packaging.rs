//! The Functions app on disk: the checkout's layout, `host.json` and the
//! settings, and `scripts/package` laying out a folder or a zip.

use crate::common::files::files_under;
use crate::functions::{functions, functions_dir, repo_root};
use std::path::{Path, PathBuf};
use std::process::Command;

#[test]
fn host_json_and_settings_are_what_the_host_needs() {
    let host: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo_root().join("host.json")).unwrap())
            .unwrap();
    assert_eq!(host["version"], "2.0");
    let handler = &host["customHandler"];
    assert_eq!(handler["description"]["defaultExecutablePath"], "hrmig");
    assert_eq!(
        handler["description"]["arguments"],
        serde_json::json!(["serve"])
    );
    assert_eq!(handler["enableForwardingHttpRequest"], true);
    assert_eq!(host["extensions"]["http"]["routePrefix"], "api");
    // The queue and Event Grid bindings come in the extension bundle.
    assert_eq!(
        host["extensionBundle"]["id"],
        "Microsoft.Azure.Functions.ExtensionBundle"
    );
    assert!(
        host["extensionBundle"]["version"]
            .as_str()
            .unwrap()
            .starts_with("[4."),
        "{host}"
    );

    let settings: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("local.settings.json")).unwrap(),
    )
    .unwrap();
    let values = settings["Values"].as_object().unwrap();
    assert_eq!(values["FUNCTIONS_WORKER_RUNTIME"], "custom");
    assert_eq!(values["AzureWebJobsStorage"], "UseDevelopmentStorage=true");
    // The timer's schedule is an app setting: a 6-field NCRONTAB expression.
    let timer = functions()
        .into_iter()
        .find(|f| f.name == "NightlyBackup")
        .unwrap();
    let trigger = timer.trigger();
    assert_eq!(trigger["type"], "timerTrigger");
    let setting = trigger["schedule"].as_str().unwrap();
    let key = setting.trim_matches('%');
    assert_eq!(
        setting,
        format!("%{key}%"),
        "schedule comes from an app setting"
    );
    let schedule = values[key].as_str().unwrap();
    assert_eq!(schedule.split_whitespace().count(), 6, "{schedule}");
    // No secrets: nothing that looks like an account key or password.
    for (k, v) in values {
        let v = v.as_str().unwrap_or_default();
        assert!(
            !v.contains("AccountKey=") && !v.contains("Password="),
            "{k}"
        );
    }
}

/// Unzips `zip` into `dir` with the file modes it records (Python's
/// zipfile, which the packaging command also uses).
fn unzip(zip: &Path, dir: &Path) {
    let script = "import os,sys,zipfile\n\
        z=zipfile.ZipFile(sys.argv[1])\n\
        for i in z.infolist():\n\
        \x20   p=z.extract(i, sys.argv[2])\n\
        \x20   m=(i.external_attr>>16)&0o777\n\
        \x20   os.chmod(p, m) if m else None\n";
    let o = Command::new("python3")
        .args(["-c", script, zip.to_str().unwrap(), dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn the_checkout_has_the_design_cards_layout() {
    let root = repo_root();
    for top in [
        "Cargo.toml",
        "host.json",
        "local.settings.json",
        "functions",
        "src",
        "migrations",
        "tests",
        "README.md",
    ] {
        assert!(root.join(top).exists(), "{top} missing at the root");
    }
    // functions/ holds one folder per function and nothing else.
    let mut expected: Vec<String> = functions()
        .iter()
        .map(|f| format!("{}/function.json", f.name))
        .collect();
    expected.sort();
    assert_eq!(files_under(&functions_dir()), expected);
    assert!(expected.len() > 10, "{expected:?}");
}

#[test]
fn a_function_app_folder_is_laid_out_for_core_tools() {
    let work = tempfile::tempdir().unwrap();
    let app = work.path().join("app");
    let package = |dir: &Path| {
        Command::new(repo_root().join("scripts/package"))
            .args(["--binary", env!("CARGO_BIN_EXE_hrmig"), "--dir"])
            .arg(dir)
            .output()
            .unwrap()
    };
    let o = package(&app);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut expected = vec![
        ".hrmig-app".to_owned(),
        "host.json".to_owned(),
        "hrmig".to_owned(),
        "local.settings.json".to_owned(),
    ];
    expected.extend(
        functions()
            .iter()
            .map(|f| format!("{}/function.json", f.name)),
    );
    expected.sort();
    assert_eq!(files_under(&app), expected);
    for name in ["host.json", "local.settings.json"] {
        assert_eq!(
            std::fs::read(app.join(name)).unwrap(),
            std::fs::read(repo_root().join(name)).unwrap(),
            "{name}"
        );
    }
    let version = Command::new(app.join("hrmig"))
        .arg("--version")
        .current_dir(&app)
        .output()
        .unwrap();
    assert!(version.status.success());

    // Laid out again over its own folder: replaced; over any other: refused.
    std::fs::write(app.join("stale.txt"), "x").unwrap();
    assert!(package(&app).status.success());
    assert!(!app.join("stale.txt").exists());
    let other = work.path().join("mine");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("keep.txt"), "x").unwrap();
    let o = package(&other);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("was not laid out by scripts/package"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(other.join("keep.txt").exists());
}

/// `scripts/package --out` run on the binary under test and the zip
/// unpacked into `work/app`: the app folder as the host gets it.
pub fn packaged_app(work: &Path) -> PathBuf {
    let zip = work.join("app.zip");
    let o = Command::new(repo_root().join("scripts/package"))
        .args([
            "--binary",
            env!("CARGO_BIN_EXE_hrmig"),
            "--out",
            zip.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let app = work.join("app");
    unzip(&zip, &app);
    app
}

#[test]
fn the_zip_holds_an_executable_handler_and_every_function_and_no_local_settings() {
    let work = tempfile::tempdir().unwrap();
    let app = packaged_app(work.path());
    let mut expected = vec!["hrmig".to_owned(), "host.json".to_owned()];
    expected.extend(
        functions()
            .iter()
            .map(|f| format!("{}/function.json", f.name)),
    );
    for name in &expected {
        assert!(app.join(name).is_file(), "{name} missing from the zip");
    }
    assert!(
        !app.join("local.settings.json").exists(),
        "local settings are not deployed"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(app.join("hrmig"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o111,
        0o111,
        "the handler is not executable: {mode:o}"
    );
}
