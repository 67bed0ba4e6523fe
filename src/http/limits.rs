//! Limits that keep slow and greedy clients from blocking the server.
//!
//! Each limit is a well-kept middleware, configured here once:
//!
//! - the **header timeout** is hyper's `header_read_timeout`: it runs from the
//!   moment a connection waits for a request head (on accept, and again
//!   after every response on a keep-alive connection) until the head is in,
//!   so it also closes idle keep-alive connections;
//! - the **body timeout** is tower-http's `RequestBodyTimeoutLayer`, a
//!   per-frame timer: a body that makes no progress for that long fails, and
//!   the handler reading it answers 408 and closes the connection;
//! - the **concurrency cap** is tower's global concurrency limit behind
//!   `load_shed`, so a request past the cap is answered 503 at once instead of
//!   waiting in a queue;
//! - the optional **rate limit** is a keyed GCRA limiter from `governor`.

use super::auth::Keys;
use super::error::ApiError;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Semaphore;

/// The limits' settings, from the environment ([`LimitSettings::from_env`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitSettings {
    /// From waiting for a request head to having it; also the longest a
    /// keep-alive connection may sit idle between requests.
    pub header_timeout: Duration,
    /// The longest a request body may make no progress.
    pub body_timeout: Duration,
    /// Requests served at once; more are answered 503.
    pub max_concurrent: usize,
    /// Requests per minute per key (or client address); `None` is no limit.
    pub rate_per_minute: Option<NonZeroU32>,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_concurrent: 256,
            rate_per_minute: None,
        }
    }
}

/// A limit setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var} must be a whole number from {min} to {max}, not {value:?}")]
pub struct BadSetting {
    /// The environment variable.
    pub var: &'static str,
    /// What it held.
    pub value: String,
    /// The smallest value accepted.
    pub min: u64,
    /// The largest value accepted.
    pub max: u64,
}

impl LimitSettings {
    /// The settings from `HRMIG_HEADER_TIMEOUT_SECS` (10, at most 60: it is
    /// also the keep-alive idle timeout), `HRMIG_BODY_TIMEOUT_SECS` (30),
    /// `HRMIG_MAX_CONCURRENT_REQUESTS` (256) and `HRMIG_RATE_LIMIT_PER_MINUTE`
    /// (unset or empty: no rate limit). Errors on a value out of range or not
    /// a number, so a typo stops the start-up instead of disabling a limit.
    pub fn from_env() -> Result<LimitSettings, BadSetting> {
        Self::from_lookup(|var| std::env::var(var).ok())
    }

    /// As [`from_env`](Self::from_env), reading variables through `lookup`.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<LimitSettings, BadSetting> {
        let d = LimitSettings::default();
        let number = |var: &'static str, min: u64, max: u64| -> Result<Option<u64>, BadSetting> {
            match lookup(var) {
                None => Ok(None),
                Some(v) if v.trim().is_empty() => Ok(None),
                Some(v) => match v.trim().parse::<u64>() {
                    Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
                    _ => Err(BadSetting {
                        var,
                        value: v,
                        min,
                        max,
                    }),
                },
            }
        };
        let secs = |n: Option<u64>, default: Duration| n.map_or(default, Duration::from_secs);
        Ok(LimitSettings {
            header_timeout: secs(
                number("HRMIG_HEADER_TIMEOUT_SECS", 1, 60)?,
                d.header_timeout,
            ),
            body_timeout: secs(number("HRMIG_BODY_TIMEOUT_SECS", 1, 600)?, d.body_timeout),
            max_concurrent: number("HRMIG_MAX_CONCURRENT_REQUESTS", 1, 100_000)?
                .map_or(d.max_concurrent, |n| n as usize),
            rate_per_minute: number("HRMIG_RATE_LIMIT_PER_MINUTE", 1, 1_000_000)?
                .and_then(|n| NonZeroU32::new(n as u32)),
        })
    }
}

/// The limits' shared state: every router built from one [`super::AppState`]
/// counts against the same cap and the same rate buckets.
pub struct Limits {
    /// The settings in force.
    pub settings: LimitSettings,
    /// The permits of the concurrency cap.
    pub(super) permits: Arc<Semaphore>,
    rate: Option<RateLimit>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits::new(LimitSettings::default())
    }
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Every this many checks, buckets that are full again are dropped, so
/// one-off client addresses do not pile up.
const RETAIN_EVERY: u64 = 4096;

// `governor` rather than `tower_governor`: the key must be chosen after
// authentication (a valid key, else the client address) and the answer must
// be the API's error body with `Retry-After`, which a small middleware over
// the keyed limiter gives directly.
struct RateLimit {
    limiter: DefaultKeyedRateLimiter<RateKey>,
    checks: AtomicU64,
}

/// Whom a request counts against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum RateKey {
    /// The digest of a valid API key.
    Key([u8; 32]),
    /// The client's address, when it presented no key.
    Peer(IpAddr),
    /// Neither is known (a request rebuilt from a Functions invocation
    /// without a key): all such requests share one bucket.
    Unknown,
}

impl Limits {
    /// The shared state for `settings`.
    pub fn new(settings: LimitSettings) -> Limits {
        Limits {
            settings,
            permits: Arc::new(Semaphore::new(settings.max_concurrent)),
            rate: settings.rate_per_minute.map(|n| RateLimit {
                limiter: governor::RateLimiter::keyed(Quota::per_minute(n)),
                checks: AtomicU64::new(0),
            }),
        }
    }

    /// `Err` with the time to wait when `key` is over its rate.
    fn check(&self, key: &RateKey) -> Result<(), Duration> {
        let Some(rate) = &self.rate else {
            return Ok(());
        };
        if rate.checks.fetch_add(1, Ordering::Relaxed) % RETAIN_EVERY == RETAIN_EVERY - 1 {
            rate.limiter.retain_recent();
        }
        rate.limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

/// Rejects a request over its key's rate with 429 and `Retry-After`. Runs
/// after authentication, so the key is a valid one: when API keys are
/// configured a request counts against the key it presented, otherwise (or
/// without a key) against its client's IP address.
pub(super) async fn rate_limit(
    State((keys, limits)): State<(Arc<Keys>, Arc<Limits>)>,
    req: Request,
    next: Next,
) -> Response {
    let key = match super::auth::presented(&req) {
        Some(digest) if keys.configured() => RateKey::Key(digest),
        _ => match req.extensions().get::<ConnectInfo<SocketAddr>>() {
            Some(ConnectInfo(addr)) => RateKey::Peer(addr.ip()),
            None => RateKey::Unknown,
        },
    };
    match limits.check(&key) {
        Ok(()) => next.run(req).await,
        Err(wait) => ApiError::RateLimited {
            retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
        }
        .into_response(),
    }
}

/// The answer to a request shed past the concurrency cap.
pub(super) async fn overloaded(error: tower::BoxError) -> Response {
    if error.is::<tower::load_shed::error::Overloaded>() {
        ApiError::Overloaded.into_response()
    } else {
        ApiError::Internal(error.to_string()).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<LimitSettings, BadSetting> {
        LimitSettings::from_lookup(|v| {
            vars.iter()
                .find(|(k, _)| *k == v)
                .map(|(_, x)| (*x).to_owned())
        })
    }

    #[test]
    fn unset_or_empty_settings_are_the_defaults() {
        assert_eq!(settings(&[]), Ok(LimitSettings::default()));
        assert_eq!(
            settings(&[("HRMIG_RATE_LIMIT_PER_MINUTE", " ")]),
            Ok(LimitSettings::default())
        );
    }

    #[test]
    fn settings_are_read_and_bad_ones_are_named() {
        let s = settings(&[
            ("HRMIG_HEADER_TIMEOUT_SECS", "5"),
            ("HRMIG_BODY_TIMEOUT_SECS", "2"),
            ("HRMIG_MAX_CONCURRENT_REQUESTS", "4"),
            ("HRMIG_RATE_LIMIT_PER_MINUTE", "60"),
        ])
        .unwrap();
        assert_eq!(s.header_timeout, Duration::from_secs(5));
        assert_eq!(s.body_timeout, Duration::from_secs(2));
        assert_eq!(s.max_concurrent, 4);
        assert_eq!(s.rate_per_minute, NonZeroU32::new(60));
        for (var, bad) in [
            ("HRMIG_HEADER_TIMEOUT_SECS", "61"),
            ("HRMIG_HEADER_TIMEOUT_SECS", "0"),
            ("HRMIG_BODY_TIMEOUT_SECS", "ten"),
            ("HRMIG_MAX_CONCURRENT_REQUESTS", "-1"),
            ("HRMIG_RATE_LIMIT_PER_MINUTE", "0"),
        ] {
            let e = settings(&[(var, bad)]).unwrap_err();
            assert_eq!(e.var, var);
            assert!(e.to_string().contains(var), "{e}");
        }
    }

    #[test]
    fn a_key_over_its_rate_waits_and_another_key_does_not() {
        let limits = Limits::new(LimitSettings {
            rate_per_minute: NonZeroU32::new(2),
            ..LimitSettings::default()
        });
        let a = RateKey::Key([1; 32]);
        assert!(limits.check(&a).is_ok());
        assert!(limits.check(&a).is_ok());
        let wait = limits.check(&a).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        assert!(limits.check(&RateKey::Peer([127, 0, 0, 1].into())).is_ok());
    }

    #[test]
    fn no_rate_limit_when_unset() {
        let limits = Limits::default();
        for _ in 0..1000 {
            assert!(limits.check(&RateKey::Unknown).is_ok());
        }
    }
}
