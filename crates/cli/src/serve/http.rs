//! The accept loop, per-connection HTTP/1.1 serving with header limits, and the router.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{header, HeaderValue, Method, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::errors::ApiError;
use super::metrics::Live;
use super::response::{text_response, Body};
use super::{files, upload, Gateway};

/// The request head (request line and headers) may take at most this many bytes.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// At most this many header fields.
const MAX_HEADERS: usize = 64;
/// A client gets this long to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Accept connections until `shutdown` turns true; then stop accepting and return the
/// connections still open, each told to finish its request in progress and close.
pub async fn accept_loop(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    mut shutdown: watch::Receiver<bool>,
) -> JoinSet<()> {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(serve_connection(stream, peer, Arc::clone(&gateway), shutdown.clone()));
                }
                Err(err) => {
                    // Usually fd exhaustion: back off instead of spinning on the error.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    connections
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    gateway: Arc<Gateway>,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |request| {
        let gateway = Arc::clone(&gateway);
        async move { Ok::<_, Infallible>(handle(gateway, peer, request).await) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_header_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => return,
        _ = shutdown.wait_for(|draining| *draining) => {}
    }
    // Finish the request in progress (if any), then close.
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
}

/// Which route a request is for.
enum Route<'a> {
    Files,
    File(&'a str),
    Content(&'a str),
    Metrics,
    Healthz,
    Readyz,
    Unknown,
}

fn route(path: &str) -> Route<'_> {
    match path {
        "/v1/files" | "/v1/files/" => Route::Files,
        "/metrics" => Route::Metrics,
        "/healthz" => Route::Healthz,
        "/readyz" => Route::Readyz,
        _ => match path.strip_prefix("/v1/files/") {
            Some(rest) => match rest.split_once('/') {
                None if !rest.is_empty() => Route::File(rest),
                Some((id, "content")) if !id.is_empty() => Route::Content(id),
                _ => Route::Unknown,
            },
            None => Route::Unknown,
        },
    }
}

async fn handle(
    gateway: Arc<Gateway>,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Response<Body> {
    let started = Instant::now();
    let method = request.method().clone();
    gateway.metrics.in_flight(1);
    let _in_flight = InFlight(&gateway);
    let (name, response) = dispatch(&gateway, peer, request).await;
    let status = response.status().as_u16();
    gateway.metrics.record(name, status);
    if !matches!(name, "metrics" | "healthz" | "readyz") {
        tracing::info!(
            target: "upramp::serve",
            method = %method,
            route = name,
            status,
            duration_ms = started.elapsed().as_secs_f64() * 1_000.0,
            "request"
        );
    }
    response
}

struct InFlight<'a>(&'a Gateway);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.metrics.in_flight(-1);
    }
}

async fn dispatch(
    gateway: &Arc<Gateway>,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> (&'static str, Response<Body>) {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    let route = route(&path);
    let name = match (&route, &method) {
        (Route::Files, &Method::POST) => "create",
        (Route::Files, &Method::GET) => "list",
        (Route::File(_), &Method::GET) => "retrieve",
        (Route::File(_), &Method::DELETE) => "delete",
        (Route::Content(_), &Method::GET) => "content",
        (Route::Metrics, &Method::GET) => "metrics",
        (Route::Healthz, &Method::GET) => "healthz",
        (Route::Readyz, &Method::GET) => "readyz",
        _ => "other",
    };
    let response = match (route, method) {
        (Route::Healthz, Method::GET) => text_response(StatusCode::OK, "text/plain", "ok\n".into()),
        (Route::Readyz, Method::GET) => {
            if gateway.is_draining() {
                text_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "draining\n".into(),
                )
            } else {
                text_response(StatusCode::OK, "text/plain", "ready\n".into())
            }
        }
        (Route::Metrics, Method::GET) => metrics(gateway),
        (Route::Unknown, method) => ApiError::no_route(method.as_str(), &path).into_response(),
        (Route::Healthz | Route::Readyz | Route::Metrics, method) => {
            ApiError::method_not_allowed(method.as_str(), &path).into_response()
        }
        (route, method) => {
            if let Some(tokens) = &gateway.tokens {
                let header = request
                    .headers()
                    .get(header::AUTHORIZATION)
                    .map(HeaderValue::as_bytes);
                if tokens.check(header).is_none() {
                    return (name, ApiError::unauthorized().into_response());
                }
            }
            let answer = match (route, method) {
                (Route::Files, Method::POST) => upload::create(gateway, peer, request).await,
                (Route::Files, Method::GET) => files::list(gateway, request.uri().query()).await,
                (Route::File(id), Method::GET) => files::retrieve(gateway, id).await,
                (Route::File(id), Method::DELETE) => files::delete(gateway, id).await,
                (Route::Content(id), Method::GET) => files::content(gateway, id).await,
                (_, method) => Err(ApiError::method_not_allowed(method.as_str(), &path)),
            };
            answer.unwrap_or_else(|err| err.redact(gateway.key.expose()).into_response())
        }
    };
    (name, response)
}

fn metrics(gateway: &Gateway) -> Response<Body> {
    let flag = gateway.flags.snapshot();
    upramp_telemetry::record_rollout_percent(&flag.name, flag.rollout.as_f64());
    let origins = gateway.flags.origins();
    let live = Live {
        flag: &flag,
        origins: &origins,
        reloads: (
            gateway.flags.reload_attempts(),
            gateway.flags.reload_errors(),
        ),
        spool: (
            gateway.spool.used(),
            gateway.spool.max_bytes(),
            gateway.spool.full_refusals(),
        ),
        ready: !gateway.is_draining(),
    };
    let mut text = gateway.exposition.render();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&gateway.metrics.render(&live));
    text_response(
        StatusCode::OK,
        upramp_telemetry::EXPOSITION_CONTENT_TYPE,
        text,
    )
}
