//! Safe webhook targets: https only, and never an address inside the operator's network.
//!
//! A URL is checked when an endpoint is created and again at every delivery, on the
//! addresses the connection will actually use: a name that resolved to a public address
//! yesterday may resolve to 127.0.0.1 today (DNS rebinding). So deliveries resolve through
//! [`GuardedResolver`], which drops forbidden addresses before the client connects, and an
//! IP-literal host (which a client does not resolve) is checked by [`check_url`].
//! `allow_private` (development and tests) lifts both the https and the address rule.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::Url;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("the URL is not valid: {0}")]
    Invalid(String),
    #[error("the URL must use https")]
    NotHttps,
    #[error("the URL must not carry a user name or password")]
    Credentials,
    #[error("{0} is a loopback, private, link-local or otherwise internal address")]
    Forbidden(IpAddr),
    #[error("{host} resolves only to internal addresses")]
    OnlyInternal { host: String },
    #[error("resolving {host}: {reason}")]
    Resolve { host: String, reason: String },
}

/// What a deployment allows as a webhook target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TargetPolicy {
    /// Plain http and internal addresses (`TASKFLOW_WEBHOOK_ALLOW_PRIVATE`; for development
    /// and tests only).
    pub allow_private: bool,
}

/// Parses and checks a webhook URL as far as it can be without resolving it.
pub fn check_url(raw: &str, policy: TargetPolicy) -> Result<Url, TargetError> {
    let url = Url::parse(raw).map_err(|e| TargetError::Invalid(e.to_string()))?;
    match url.scheme() {
        "https" => {}
        "http" if policy.allow_private => {}
        "http" => return Err(TargetError::NotHttps),
        other => return Err(TargetError::Invalid(format!("scheme {other}"))),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(TargetError::Credentials);
    }
    match url.host() {
        None => return Err(TargetError::Invalid("no host".to_owned())),
        Some(url::Host::Ipv4(ip)) => allowed(IpAddr::V4(ip), policy)?,
        Some(url::Host::Ipv6(ip)) => allowed(IpAddr::V6(ip), policy)?,
        Some(url::Host::Domain(_)) => {}
    }
    Ok(url)
}

fn allowed(ip: IpAddr, policy: TargetPolicy) -> Result<(), TargetError> {
    if !policy.allow_private && forbidden(ip) {
        return Err(TargetError::Forbidden(ip));
    }
    Ok(())
}

/// Addresses a webhook must never reach: loopback, private, shared (CGNAT), link-local
/// (which holds the cloud metadata services, 169.254.169.254 and fd00:ec2::254 being
/// unique-local), unspecified, broadcast, multicast, documentation, benchmarking and
/// reserved ranges, and IPv6 forms that embed such an IPv4 address.
pub fn forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space, RFC 6598
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240 // reserved
}

fn forbidden_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return forbidden_v4(v4);
    }
    let s = ip.segments();
    // NAT64 (64:ff9b::/96) reaches the embedded IPv4 address.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        let [x, y] = [s[6].to_be_bytes(), s[7].to_be_bytes()];
        return forbidden_v4(Ipv4Addr::new(x[0], x[1], y[0], y[1]));
    }
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || s[..6] == [0, 0, 0, 0, 0, 0] // IPv4-compatible (deprecated) and the rest of ::/96
}

/// At registration: refuses a name that resolves only to internal addresses. A name that
/// does not resolve now (or not within two seconds) is accepted: every delivery checks again.
pub async fn check_resolves_publicly(raw: &str, policy: TargetPolicy) -> Result<(), TargetError> {
    if policy.allow_private {
        return Ok(());
    }
    let url = check_url(raw, policy)?;
    let Some(url::Host::Domain(host)) = url.host() else {
        return Ok(());
    };
    let port = url.port_or_known_default().unwrap_or(443);
    let lookup = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        tokio::net::lookup_host((host, port)),
    )
    .await;
    let Ok(Ok(addrs)) = lookup else {
        return Ok(());
    };
    let addrs: Vec<SocketAddr> = addrs.collect();
    if !addrs.is_empty() && filter(&addrs, policy).is_empty() {
        return Err(TargetError::OnlyInternal {
            host: host.to_owned(),
        });
    }
    Ok(())
}

/// A resolver for the delivery client that never hands it a forbidden address.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    pub policy: TargetPolicy,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| TargetError::Resolve {
                    host: host.clone(),
                    reason: e.to_string(),
                })?
                .collect();
            let usable = filter(&addrs, policy);
            if usable.is_empty() {
                return Err(Box::new(TargetError::OnlyInternal { host }) as _);
            }
            Ok(Box::new(usable.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The addresses a delivery may connect to.
pub fn filter(addrs: &[SocketAddr], policy: TargetPolicy) -> Vec<SocketAddr> {
    addrs
        .iter()
        .filter(|a| policy.allow_private || !forbidden(a.ip()))
        .copied()
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const STRICT: TargetPolicy = TargetPolicy {
        allow_private: false,
    };
    const DEV: TargetPolicy = TargetPolicy {
        allow_private: true,
    };

    #[test]
    fn internal_addresses_are_forbidden() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "fc00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "::127.0.0.1",
            "2001:db8::1",
            "ff02::1",
        ] {
            assert!(forbidden(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "93.184.215.14",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(!forbidden(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn urls() {
        assert!(check_url("https://hooks.example.com/taskflow", STRICT).is_ok());
        assert_eq!(
            check_url("http://hooks.example.com/", STRICT),
            Err(TargetError::NotHttps)
        );
        assert!(matches!(
            check_url("https://127.0.0.1:8443/", STRICT),
            Err(TargetError::Forbidden(_))
        ));
        assert!(matches!(
            check_url("https://[::1]/", STRICT),
            Err(TargetError::Forbidden(_))
        ));
        assert!(matches!(
            check_url("https://[::ffff:169.254.169.254]/", STRICT),
            Err(TargetError::Forbidden(_))
        ));
        assert_eq!(
            check_url("https://user:pw@hooks.example.com/", STRICT),
            Err(TargetError::Credentials)
        );
        assert!(matches!(
            check_url("ftp://hooks.example.com/", DEV),
            Err(TargetError::Invalid(_))
        ));
        assert!(matches!(
            check_url("not a url", DEV),
            Err(TargetError::Invalid(_))
        ));
        assert!(check_url("http://127.0.0.1:9000/hook", DEV).is_ok());
    }

    #[test]
    fn resolved_addresses_are_filtered() {
        let addrs: Vec<SocketAddr> = vec![
            "127.0.0.1:443".parse().unwrap(),
            "93.184.215.14:443".parse().unwrap(),
        ];
        assert_eq!(filter(&addrs, STRICT), vec![addrs[1]]);
        assert_eq!(filter(&addrs, DEV), addrs);
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused_at_registration() {
        assert!(matches!(
            check_resolves_publicly("https://localhost/hook", STRICT).await,
            Err(TargetError::OnlyInternal { .. })
        ));
        assert!(check_resolves_publicly("https://localhost/hook", DEV)
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused_at_connect_time() {
        let client = reqwest::Client::builder()
            .dns_resolver(std::sync::Arc::new(GuardedResolver { policy: STRICT }))
            .build()
            .unwrap();
        // `localhost` passes the URL check (it is a name) but resolves only to loopback.
        let url = check_url("https://localhost:1/", STRICT).unwrap();
        let err = client.get(url).send().await.unwrap_err();
        let mut text = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(s) = source {
            text.push_str(&format!(": {s}"));
            source = s.source();
        }
        assert!(
            text.contains("localhost resolves only to internal addresses"),
            "{text}"
        );
    }
}
