//! Rate limits of signup and login, per client address and per account
//! (governor's keyed GCRA limiters), and the client address they key on.
//!
//! Both limits apply to every signup and login request, successful or not: a
//! password-guessing client is slowed whether it spreads its guesses over
//! accounts (the address limit) or over addresses (the account limit).

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    num::NonZeroU32,
    sync::Arc,
};

use axum::{
    extract::{ConnectInfo, FromRequestParts},
    http::{request::Parts, HeaderMap},
};
use governor::{
    clock::{Clock, DefaultClock},
    DefaultKeyedRateLimiter, Quota, RateLimiter,
};

use crate::{app::AppState, problem::ApiError};

/// Keys kept before forgetting the ones whose bucket is full again; bounds
/// memory under a flood of distinct addresses or emails.
const RETAIN_ABOVE_KEYS: usize = 10_000;

#[derive(Debug)]
pub struct AuthRateLimiter {
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    per_account: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

pub type SharedAuthRateLimiter = Arc<AuthRateLimiter>;

impl AuthRateLimiter {
    /// `per_ip` and `per_account` requests per minute, each also the burst.
    pub fn new(per_ip: NonZeroU32, per_account: NonZeroU32) -> Self {
        Self {
            per_ip: RateLimiter::keyed(Quota::per_minute(per_ip)),
            per_account: RateLimiter::keyed(Quota::per_minute(per_account)),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one request from the client address's budget.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), ApiError> {
        let res = self.per_ip.check_key(&ip);
        if self.per_ip.len() > RETAIN_ABOVE_KEYS {
            self.per_ip.retain_recent();
        }
        res.map_err(|not_until| self.too_many(not_until.wait_time_from(self.clock.now())))
    }

    /// Takes one request from the account's budget. Emails are compared
    /// case-insensitively, as logins are.
    pub fn check_account(&self, email: &str) -> Result<(), ApiError> {
        let res = self.per_account.check_key(&email.to_lowercase());
        if self.per_account.len() > RETAIN_ABOVE_KEYS {
            self.per_account.retain_recent();
        }
        res.map_err(|not_until| self.too_many(not_until.wait_time_from(self.clock.now())))
    }

    fn too_many(&self, wait: std::time::Duration) -> ApiError {
        // Rounded up: retrying after the advertised seconds must succeed.
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        ApiError::TooManyRequests {
            retry_after_secs: secs.max(1),
        }
    }
}

/// The client's address: the TCP peer, or with `trusted_hops` > 0 proxies in
/// front, the address the outermost trusted proxy saw (the `trusted_hops`-th
/// `X-Forwarded-For` entry from the right; entries further left are
/// client-supplied and could be forged).
pub fn client_ip(peer: Option<IpAddr>, headers: &HeaderMap, trusted_hops: usize) -> IpAddr {
    let peer = peer.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    if trusted_hops == 0 {
        return peer;
    }
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    entries
        .len()
        .checked_sub(trusted_hops)
        .and_then(|i| entries.get(i))
        .and_then(|e| e.parse::<IpAddr>().ok())
        .unwrap_or(peer)
}

/// The client address of a request (see [`client_ip`]).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        // Absent only when the router is served without connect info (an
        // embedding); all such clients then share one budget.
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ci| ci.0.ip());
        Ok(ClientIp(client_ip(
            peer,
            &parts.headers,
            state.trusted_proxy_hops,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    #[test]
    fn address_budget_then_429_with_retry_after() {
        let l = AuthRateLimiter::new(nz(2), nz(100));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(l.check_ip(ip).is_ok());
        assert!(l.check_ip(ip).is_ok());
        match l.check_ip(ip) {
            Err(ApiError::TooManyRequests { retry_after_secs }) => {
                assert!((1..=30).contains(&retry_after_secs), "{retry_after_secs}")
            }
            other => panic!("expected 429, got {other:?}"),
        }
        // another address has its own budget
        assert!(l.check_ip("10.0.0.2".parse().unwrap()).is_ok());
    }

    #[test]
    fn account_budget_ignores_case() {
        let l = AuthRateLimiter::new(nz(100), nz(1));
        assert!(l.check_account("Ada@Example.com").is_ok());
        assert!(l.check_account("ada@example.com").is_err());
        assert!(l.check_account("bob@example.com").is_ok());
    }

    #[test]
    fn forwarded_for_only_with_trusted_hops() {
        let peer: IpAddr = "10.0.0.9".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "1.1.1.1, 2.2.2.2".parse().unwrap());
        assert_eq!(client_ip(Some(peer), &h, 0), peer);
        assert_eq!(
            client_ip(Some(peer), &h, 1),
            "2.2.2.2".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip(Some(peer), &h, 2),
            "1.1.1.1".parse::<IpAddr>().unwrap()
        );
        // fewer entries than hops, or garbage: the peer
        assert_eq!(client_ip(Some(peer), &h, 3), peer);
        h.insert("x-forwarded-for", "not-an-ip".parse().unwrap());
        assert_eq!(client_ip(Some(peer), &h, 1), peer);
    }
}
