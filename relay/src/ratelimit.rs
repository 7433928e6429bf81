//! Per-client-IP token bucket. Over the limit a request gets 429 with
//! `Retry-After` and the usual JSON error, before any body is read.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::config::RateLimit;
use crate::error::ApiError;

/// Buckets beyond this many are swept of idle (full) entries.
const SWEEP_AT: usize = 10_000;

/// The limiter shared by every connection.
#[derive(Clone)]
pub struct Limiter {
    rate: f64,
    burst: f64,
    buckets: Arc<Mutex<HashMap<IpAddr, (f64, Instant)>>>,
}

impl Limiter {
    /// A limiter from the config; `per_second = 0` means no limit.
    pub fn new(cfg: &RateLimit) -> Self {
        Limiter {
            rate: cfg.per_second,
            burst: f64::from(cfg.burst.max(1)),
            buckets: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Whether requests are limited at all (`per_second > 0`).
    pub(crate) fn enabled(&self) -> bool {
        self.rate > 0.0
    }

    /// Takes one token for `ip`; `Err(seconds)` when it must wait.
    pub(crate) fn take(&self, ip: IpAddr, now: Instant) -> Result<(), u64> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        if buckets.len() > SWEEP_AT {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        let (tokens, at) = buckets.entry(ip).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.rate).ceil().max(1.0) as u64)
        }
    }
}

/// The answer to a request over its client's limit: 429 with `Retry-After`.
pub(crate) fn refused(ip: IpAddr, wait: u64) -> Response {
    tracing::info!(client = %ip, "rate limited");
    let mut e = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("too many requests from this address: retry after {wait} s"),
    );
    e.retry_after = Some(wait);
    e.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_refill() {
        let l = Limiter::new(&RateLimit {
            per_second: 2.0,
            burst: 3,
        });
        let ip: IpAddr = [127, 0, 0, 1].into();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.take(ip, t0).is_ok());
        }
        assert_eq!(l.take(ip, t0), Err(1));
        assert!(l.take(ip, t0 + Duration::from_millis(600)).is_ok());
        let other: IpAddr = [127, 0, 0, 2].into();
        assert!(l.take(other, t0).is_ok());
    }
}
