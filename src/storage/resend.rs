//! The HTTP client under `object_store`, with one fault mended: a request
//! that never left.
//!
//! When a server (or a balancer in front of it) accepts a connection and
//! closes it at once, hyper may see the close before it writes the request
//! and cancels it ("connection was not ready"). `object_store` classes that
//! error as unknown and gives up, though nothing was sent. Resending it is
//! safe for any method, so it is done here, below `object_store`'s own
//! retries, for every request of every operation.

use async_trait::async_trait;
use object_store::ClientOptions;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse, HttpService, ReqwestConnector,
};
use std::time::Duration;

/// Resends of one request that was never sent, each after a short pause.
const RESENDS: u32 = 3;

/// Builds `object_store`'s own reqwest client, wrapped in [`Resend`].
#[derive(Debug, Default)]
pub struct Connector;

impl HttpConnector for Connector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        Ok(HttpClient::new(Resend(
            ReqwestConnector::default().connect(options)?,
        )))
    }
}

/// A client that resends requests the connection cancelled before sending.
#[derive(Debug)]
pub struct Resend(pub HttpClient);

#[async_trait]
impl HttpService for Resend {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let mut resends = 0;
        loop {
            // Bodies are shared buffers: the clone copies no payload.
            match self.0.execute(req.clone()).await {
                Err(e) if resends < RESENDS && never_sent(&e) => {
                    resends += 1;
                    tracing::debug!(resends, "request cancelled before it was sent: {e}");
                    tokio::time::sleep(Duration::from_millis(50 * u64::from(resends))).await;
                }
                done => return done,
            }
        }
    }
}

/// Whether `e` says the request was cancelled before any of it was written.
pub fn never_sent(e: &HttpError) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cause {
        if err
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_canceled)
        {
            return true;
        }
        cause = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::client::HttpErrorKind;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Arc, Mutex};

    /// A real "connection was not ready" from hyper: a request on a
    /// connection the peer has already closed.
    async fn cancelled() -> HttpError {
        let (client, server) = tokio::io::duplex(64);
        drop(server);
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(client))
                .await
                .unwrap();
        // It ends at once: the peer is gone.
        let _ = conn.await;
        let e = sender
            .send_request(hyper::Request::new(String::new()))
            .await
            .unwrap_err();
        HttpError::new(HttpErrorKind::Unknown, e)
    }

    /// Fails with the errors it holds, last first, then answers 200.
    #[derive(Debug)]
    struct Script(Mutex<Vec<HttpError>>, Arc<AtomicU32>);

    #[async_trait]
    impl HttpService for Script {
        async fn call(&self, _: HttpRequest) -> Result<HttpResponse, HttpError> {
            self.1.fetch_add(1, Ordering::Relaxed);
            match self.0.lock().unwrap().pop() {
                Some(e) => Err(e),
                None => Ok(HttpResponse::new(String::new().into())),
            }
        }
    }

    /// The outcome through [`Resend`], and how many requests reached the wire.
    async fn run(errors: Vec<HttpError>) -> (Result<HttpResponse, HttpError>, u32) {
        let calls = Arc::new(AtomicU32::new(0));
        let client = Resend(HttpClient::new(Script(Mutex::new(errors), calls.clone())));
        let out = client.call(HttpRequest::new("x".to_owned().into())).await;
        (out, calls.load(Ordering::Relaxed))
    }

    #[tokio::test]
    async fn cancelled_requests_are_resent_a_bounded_number_of_times() {
        assert!(never_sent(&cancelled().await));

        let (out, calls) = run(vec![cancelled().await, cancelled().await]).await;
        assert!(out.is_ok(), "{out:?}");
        assert_eq!(calls, 3);

        let mut always = Vec::new();
        for _ in 0..=RESENDS {
            always.push(cancelled().await);
        }
        let (out, calls) = run(always).await;
        assert!(never_sent(&out.unwrap_err()));
        assert_eq!(calls, RESENDS + 1);
    }

    #[tokio::test]
    async fn other_failures_are_left_to_object_store() {
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let e = HttpError::new(HttpErrorKind::Interrupted, reset);
        assert!(!never_sent(&e));
        let (out, calls) = run(vec![e]).await;
        assert_eq!(out.unwrap_err().kind(), HttpErrorKind::Interrupted);
        assert_eq!(calls, 1);
    }
}
