//! The accept loop and per-connection serving. Each connection runs its own hyper HTTP/1.1 server so
//! a handler can cut the connection under the client (reset, drop-after-accept), which a framework
//! router cannot.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use super::conn::ConnControl;
use super::{api, Shared};

/// How long a shutdown waits for in-flight requests before cutting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

pub(super) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    shared.update_stats(|stats| stats.connections += 1);
                    connections.spawn(serve_connection(stream, Arc::clone(&shared)));
                }
                Err(err) => {
                    // Usually fd exhaustion; back off instead of spinning on the error.
                    tracing::warn!(error = %err, "stand-in accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        connections.abort_all();
    }
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    // Small responses must not wait for Nagle.
    let _ = stream.set_nodelay(true);
    let control = Arc::new(ConnControl::default());
    let io = TokioIo::new(ConnIo {
        inner: stream,
        control: Arc::clone(&control),
    });
    let service = {
        let control = Arc::clone(&control);
        let shared = Arc::clone(&shared);
        service_fn(move |request| {
            let control = Arc::clone(&control);
            let shared = Arc::clone(&shared);
            async move { Ok::<_, Infallible>(api::handle(shared, control, request).await) }
        })
    };
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(io, service);
    tokio::pin!(connection);
    // Returning drops the connection and with it the socket: that is how aborts reach the client.
    tokio::select! {
        _ = connection.as_mut() => {}
        () = control.aborted() => {}
        () = shared.shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            tokio::select! {
                _ = connection.as_mut() => {}
                () = control.aborted() => {}
            }
        }
    }
}

/// The TCP stream, which on drop turns the close into a reset when its handler asked for one.
struct ConnIo {
    inner: TcpStream,
    control: Arc<ConnControl>,
}

impl Drop for ConnIo {
    fn drop(&mut self) {
        if self.control.wants_reset() {
            // SO_LINGER 0: close() discards queued data and sends RST, so the client sees a reset.
            if let Err(err) = self.inner.set_zero_linger() {
                tracing::warn!(error = %err, "stand-in could not arm a connection reset");
            }
        }
    }
}

impl AsyncRead for ConnIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
