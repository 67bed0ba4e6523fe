//! The HTTP API in this process, on a loopback port of its own, with a
//! method per kind of request (zero2prod's `spawn_app`).

use hrmig::http::{AppState, Keys};
use hrmig::storage::Storage;
use hrmig::store::Store;
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;

/// A router served on 127.0.0.1 until dropped.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    pub client: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl TestApp {
    /// The API's router over the database at `url` and the storage root
    /// `storage`.
    pub async fn spawn(url: &str, storage: &Path, keys: Keys) -> TestApp {
        TestApp::spawn_router(url, storage, keys, hrmig::http::router).await
    }

    /// The same with another router built from that state.
    pub async fn spawn_router(
        url: &str,
        storage: &Path,
        keys: Keys,
        router: fn(AppState) -> axum::Router,
    ) -> TestApp {
        let store = Store::open(url).await.unwrap();
        let storage = Storage::open(storage.to_str().unwrap()).unwrap();
        let state = AppState::new(Arc::new(store), storage, Arc::new(keys));
        let settings = state.limits.settings;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(hrmig::http::serve(
            listener,
            router(state),
            settings,
            async {
                let _ = stopped.await;
            },
        ));
        TestApp {
            base,
            client: reqwest::Client::new(),
            _stop: stop,
        }
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .unwrap()
    }
}
