//! A loopback TCP proxy in front of a stand-in that forwards everything except a request for the
//! file list: on a connection that asks `GET .../files`, it stops forwarding and never answers
//! (the connection stays open, silent), like a provider whose list endpoint hangs.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A running proxy; dropping it stops accepting (connections already open stay as they are until
/// their peers close them).
pub struct SilentListProxy {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl SilentListProxy {
    /// Listen on an ephemeral loopback port and forward to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(relay(client, upstream));
            }
        });
        Self { addr, task }
    }

    /// `base_url` of the stand-in with its host and port replaced by the proxy's.
    pub fn base_url(&self, base_url: &str) -> String {
        let rest = base_url
            .strip_prefix("http://")
            .and_then(|r| r.find('/').map(|i| &r[i..]))
            .unwrap_or("");
        format!("http://{}{rest}", self.addr)
    }
}

impl Drop for SilentListProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn asks_for_list(chunk: &[u8]) -> bool {
    let text = String::from_utf8_lossy(chunk);
    text.split("\r\n")
        .any(|line| line.starts_with("GET ") && line.contains("/files"))
}

async fn relay(client: TcpStream, upstream: SocketAddr) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upward = async move {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let read = match client_read.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(read) => read,
            };
            if asks_for_list(&buffer[..read]) {
                // Hold the connection open without a word until the client gives up on it.
                let mut sink = vec![0u8; 1024];
                while let Ok(n) = client_read.read(&mut sink).await {
                    if n == 0 {
                        return;
                    }
                }
                return;
            }
            if server_write.write_all(&buffer[..read]).await.is_err() {
                return;
            }
        }
    };
    let downward = async move {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
    };
    tokio::join!(upward, downward);
}
