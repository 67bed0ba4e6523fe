//! A stand-in server on loopback for the tests that fake an Azure endpoint
//! (an identity endpoint, a blob service): it records what reaches it.

use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Something listening on loopback that records what reaches it; stops
/// accepting when dropped.
pub struct Fake<T> {
    pub port: u16,
    pub seen: Arc<Mutex<Vec<T>>>,
    stop: Arc<AtomicBool>,
}

impl<T> Drop for Fake<T> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl<T: Send + 'static> Fake<T> {
    /// Listens on a free loopback port; `serve` answers each connection on
    /// a thread of its own. Accepting stops when dropped, or after two
    /// minutes at the latest.
    pub fn start(serve: impl Fn(TcpStream, Arc<Mutex<Vec<T>>>) + Send + Sync + 'static) -> Fake<T> {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let fake = Fake {
            port: listener.local_addr().unwrap().port(),
            seen: Arc::default(),
            stop: Arc::default(),
        };
        let (seen, stop) = (fake.seen.clone(), fake.stop.clone());
        let serve = Arc::new(serve);
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (seen, serve) = (seen.clone(), serve.clone());
                        std::thread::spawn(move || serve(conn, seen));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        fake
    }

    /// How many things it recorded.
    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}
