//! Settings from `TASKFLOW_MCP_*` environment variables (and
//! `TASKFLOW_ADMIN_ADDR`), each with a documented default except the stdio
//! token, which has none and comes from the environment only.

use std::{net::SocketAddr, str::FromStr, sync::Arc, time::Duration};

use taskflow_infra::config::{env_opt, env_or, ConfigError};

/// How the MCP client reaches this server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// The client starts this process and talks over stdin/stdout; the
    /// process acts as the user of `TASKFLOW_MCP_TOKEN`.
    Stdio,
    /// Streamable HTTP at `/mcp`; every request carries its user's token.
    Http,
}

impl FromStr for Transport {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "stdio" => Ok(Transport::Stdio),
            "http" => Ok(Transport::Http),
            other => Err(format!("{other:?} is not stdio or http")),
        }
    }
}

#[derive(Clone)]
pub struct Settings {
    pub transport: Transport,
    /// `TASKFLOW_MCP_API_URL`: the Taskflow HTTP API every tool calls.
    pub api_url: String,
    /// `TASKFLOW_MCP_API_TIMEOUT_MS`: the longest wait for one API call.
    pub api_timeout: Duration,
    /// `TASKFLOW_MCP_TOKEN`: stdio only, the token the process acts with
    /// (a personal access token, or a login token).
    pub token: Option<Arc<str>>,
    /// `TASKFLOW_MCP_HTTP_ADDR`: HTTP only (port 0 picks a free port).
    pub http_addr: SocketAddr,
    /// `TASKFLOW_MCP_ALLOWED_HOSTS`: HTTP only; `Host` header values
    /// accepted (DNS-rebinding protection), comma-separated.
    pub allowed_hosts: Vec<String>,
    /// `TASKFLOW_ADMIN_ADDR`: HTTP only; `/metrics`, `/healthz`, `/readyz`.
    pub admin_addr: SocketAddr,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("transport", &self.transport)
            .field("api_url", &self.api_url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("http_addr", &self.http_addr)
            .field("allowed_hosts", &self.allowed_hosts)
            .finish_non_exhaustive()
    }
}

const DEFAULT_ALLOWED_HOSTS: &str = "localhost,127.0.0.1,::1";

impl Settings {
    pub fn from_env() -> Result<Self, ConfigError> {
        let transport = env_or("TASKFLOW_MCP_TRANSPORT", Transport::Stdio)?;
        let token: Option<String> = env_opt("TASKFLOW_MCP_TOKEN")?;
        if transport == Transport::Stdio && token.is_none() {
            return Err(ConfigError::Missing {
                name: "TASKFLOW_MCP_TOKEN".to_owned(),
                because: "TASKFLOW_MCP_TRANSPORT is stdio".to_owned(),
            });
        }
        let allowed: String = env_or(
            "TASKFLOW_MCP_ALLOWED_HOSTS",
            DEFAULT_ALLOWED_HOSTS.to_owned(),
        )?;
        Ok(Self {
            transport,
            api_url: env_or("TASKFLOW_MCP_API_URL", "http://127.0.0.1:8080".to_owned())?,
            api_timeout: Duration::from_millis(env_or("TASKFLOW_MCP_API_TIMEOUT_MS", 30_000u64)?),
            token: token.map(Arc::from),
            http_addr: env_or(
                "TASKFLOW_MCP_HTTP_ADDR",
                SocketAddr::from(([0, 0, 0, 0], 8090)),
            )?,
            allowed_hosts: allowed
                .split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .map(str::to_owned)
                .collect(),
            admin_addr: env_or(
                "TASKFLOW_ADMIN_ADDR",
                SocketAddr::from(([0, 0, 0, 0], 9093)),
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn transports_parse() {
        assert_eq!("stdio".parse::<Transport>(), Ok(Transport::Stdio));
        assert_eq!("HTTP".parse::<Transport>(), Ok(Transport::Http));
        assert!("sse".parse::<Transport>().is_err());
    }
}
