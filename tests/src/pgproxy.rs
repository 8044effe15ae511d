//! A TCP proxy in front of PostgreSQL that a test can cut: while down it
//! resets every open connection and refuses new ones, which is what a worker
//! sees when the database goes away. The shared server itself is never
//! stopped, so tests running in parallel are unaffected.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
};

pub struct PgProxy {
    pub port: u16,
    down: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
}

impl PgProxy {
    /// Proxies to `upstream` (`host:port`).
    pub async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let down = Arc::new(AtomicBool::new(false));
        let (cut, _) = watch::channel(0u64);
        let (down2, cut2) = (down.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if down2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let upstream = upstream.clone();
                let mut cut_rx = cut2.subscribe();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (mut c, mut s) = (client, server);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut c, &mut s) => {}
                        _ = cut_rx.changed() => {}
                    }
                });
            }
        });
        Self { port, down, cut }
    }

    /// Rewrites a database URL to go through the proxy.
    pub fn url_for(&self, url: &str) -> String {
        let scheme_end = url.find("://").map_or(0, |i| i + 3);
        let rest = &url[scheme_end..];
        let host_end = rest.find('/').unwrap_or(rest.len());
        let hostport = &rest[..host_end];
        let userinfo = hostport.rfind('@').map_or("", |i| &hostport[..=i]);
        format!(
            "{}{userinfo}127.0.0.1:{}{}",
            &url[..scheme_end],
            self.port,
            &rest[host_end..]
        )
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
        if down {
            self.cut.send_modify(|n| *n += 1);
        }
    }
}

/// `host:port` of a `postgres://` URL (default port 5432).
pub fn upstream_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let hostport = rest.split('/').next().unwrap_or(rest);
    let hostport = hostport.rsplit('@').next().unwrap_or(hostport);
    if hostport.contains(':') {
        hostport.to_owned()
    } else {
        format!("{hostport}:5432")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn upstream_and_rewrite() {
        assert_eq!(
            super::upstream_of("postgres://postgres@127.0.0.1:5432/x"),
            "127.0.0.1:5432"
        );
        assert_eq!(super::upstream_of("postgres://h/x"), "h:5432");
    }
}
