//! The app's functions, as `functions/*/function.json` declares them.

use std::path::PathBuf;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn functions_dir() -> PathBuf {
    repo_root().join("functions")
}

/// One function: its folder name and bindings.
pub struct Function {
    pub name: String,
    pub bindings: Vec<serde_json::Value>,
}

impl Function {
    pub fn trigger(&self) -> &serde_json::Value {
        self.bindings
            .iter()
            .find(|b| b["direction"] == "in")
            .unwrap_or_else(|| panic!("{}: no input binding", self.name))
    }

    /// (method, route) pairs of an HTTP function.
    pub fn routes(&self) -> Vec<(String, String)> {
        let t = self.trigger();
        let route = t["route"].as_str().unwrap().to_owned();
        t["methods"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m.as_str().unwrap().to_uppercase(), route.clone()))
            .collect()
    }
}

/// Every `functions/*/function.json`, checked for the shape the host needs.
pub fn functions() -> Vec<Function> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(functions_dir()).unwrap() {
        let path = entry.unwrap().path();
        let file = path.join("function.json");
        if !file.is_file() {
            continue;
        }
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bindings = doc["bindings"].as_array().cloned().unwrap_or_default();
        out.push(Function { name, bindings });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

pub fn http_functions() -> Vec<Function> {
    let all = functions();
    let (http, other): (Vec<_>, Vec<_>) = all
        .into_iter()
        .partition(|f| f.trigger()["type"] == "httpTrigger");
    // The host forwards a request as it came only for functions with one
    // httpTrigger in and one http out (enableForwardingHttpRequest); the
    // ones with a queue output too come as invocations, and hrmig must
    // know them by name.
    for f in &http {
        let queued = hrmig::http::functions::QUEUED_HTTP.contains(&f.name.as_str());
        assert_eq!(f.bindings.len(), if queued { 3 } else { 2 }, "{}", f.name);
        assert_eq!(f.bindings[1]["type"], "http", "{}", f.name);
        assert_eq!(f.bindings[1]["direction"], "out", "{}", f.name);
        if queued {
            assert_eq!(f.bindings[2]["type"], "queue", "{}", f.name);
            assert_eq!(f.bindings[2]["direction"], "out", "{}", f.name);
            assert_eq!(f.bindings[2]["name"], "job", "{}", f.name);
            assert_eq!(f.bindings[2]["queueName"], LOAD_QUEUE, "{}", f.name);
        }
        assert_eq!(f.trigger()["authLevel"], "function", "{}", f.name);
        assert!(!f.trigger()["route"].as_str().unwrap().starts_with('/'));
    }
    assert_eq!(
        other.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
        ["LoadLandedBlob", "NightlyBackup", "RunLoadJob"]
    );
    let queue = &other
        .iter()
        .find(|f| f.name == "RunLoadJob")
        .unwrap()
        .bindings;
    assert_eq!(queue.len(), 1);
    assert_eq!(queue[0]["type"], "queueTrigger");
    assert_eq!(queue[0]["queueName"], LOAD_QUEUE);
    let grid = &other
        .iter()
        .find(|f| f.name == "LoadLandedBlob")
        .unwrap()
        .bindings;
    assert_eq!(grid.len(), 1);
    assert_eq!(grid[0]["type"], "eventGridTrigger");
    http
}

/// The queue between `StartLoad`/`RerunLoad` and `RunLoadJob`.
pub const LOAD_QUEUE: &str = "hrmig-loads";

/// A job id no job has.
pub const NO_JOB: &str = "0123456789abcdef0123456789abcdef";

/// `api/` + a function route with its parameters filled in.
pub fn concrete(route: &str, table: &str) -> String {
    let path = route
        .replace("{table}", table)
        .replace("{id}", NO_JOB)
        .replace("{load_id}", NO_JOB)
        .replace("{row_id}", NO_JOB)
        .replace("{*path}", "");
    assert!(!path.contains('{'), "unfilled parameter in {route}");
    format!("/api/{path}")
}
