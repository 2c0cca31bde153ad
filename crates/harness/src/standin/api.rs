//! Routing, authentication, the file endpoints and fault injection, per the provider contracts.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use http::header::{
    AUTHORIZATION, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER, USER_AGENT,
};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, BodyStream, Full};
use hyper::body::Incoming;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::conn::ConnControl;
use super::{lock, Entry, Shared, Store, StoredFile};
use crate::fault::{FaultDecision, InjectedFault, PathTarget};
use crate::flavor::Flavor;

type Reply = Response<Full<Bytes>>;

/// Largest file either provider takes (100 MB, read 1024-based).
const MAX_FILE_BYTES: u64 = 100 * MIB;
const MIB: u64 = 1024 * 1024;
/// Room for multipart framing and small fields on top of the file when judging `Content-Length`.
const MULTIPART_SLACK: u64 = 64 * 1024;
/// Longest a stalled request holds its connection before it is cut.
const STALL_MAX: Duration = Duration::from_secs(300);
/// Largest `purpose` value read.
const MAX_FIELD_BYTES: usize = 1024;

const KIMI_PURPOSES: [&str; 4] = ["file-extract", "image", "video", "batch"];

enum Route {
    Upload,
    List,
    Retrieve(String),
    Content(String),
    Delete(String),
    Unknown,
}

impl Route {
    fn parse(flavor: Flavor, method: &Method, path: &str) -> Self {
        let Some(rest) = path
            .strip_prefix(flavor.base_path())
            .and_then(|rest| rest.strip_prefix("/files"))
        else {
            return Self::Unknown;
        };
        let segments: Vec<&str> = rest.split('/').skip(1).collect();
        match (method, segments.as_slice()) {
            (&Method::POST, []) => Self::Upload,
            (&Method::GET, []) => Self::List,
            (&Method::GET, [id]) if !id.is_empty() => Self::Retrieve((*id).to_owned()),
            (&Method::DELETE, [id]) if !id.is_empty() => Self::Delete((*id).to_owned()),
            (&Method::GET, [id, "content"]) if !id.is_empty() => Self::Content((*id).to_owned()),
            _ => Self::Unknown,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Upload => "upload",
            Self::List => "list",
            Self::Retrieve(_) => "retrieve",
            Self::Content(_) => "content",
            Self::Delete(_) => "delete",
            Self::Unknown => "unknown",
        }
    }
}

/// What an upload handler wants done with its connection.
enum Outcome {
    Respond(Reply),
    /// Close without answering; `reset` sends a TCP RST instead of a FIN.
    Abort {
        reset: bool,
    },
    /// Stop reading and never answer.
    Stall,
}

pub(super) async fn handle(
    shared: Arc<Shared>,
    control: Arc<ConnControl>,
    request: Request<Incoming>,
) -> Reply {
    if request.uri().path() == FAULTS_CONTROL_PATH {
        return faults_control(&shared, request).await;
    }
    let route = Route::parse(shared.flavor, request.method(), request.uri().path());
    let path = request
        .headers()
        .get(USER_AGENT)
        .and_then(|value| value.to_str().ok())
        .and_then(PathTarget::from_user_agent);
    let decision = shared.admit(route.name(), path);
    let outcome = match auth_rejection(&shared, &request) {
        Some(reply) => {
            if matches!(route, Route::Upload) {
                shared.update_stats(|stats| stats.uploads_rejected += 1);
            }
            drain(request.into_body()).await;
            Outcome::Respond(reply)
        }
        None => match route {
            Route::Upload => upload(&shared, request, decision).await,
            Route::List => Outcome::Respond(list(&shared, request.uri().query().unwrap_or(""))),
            Route::Retrieve(id) => Outcome::Respond(retrieve(&shared, &id)),
            Route::Content(id) => Outcome::Respond(content(&shared, &id)),
            Route::Delete(id) => Outcome::Respond(delete(&shared, &id)),
            Route::Unknown => Outcome::Respond(error(
                shared.flavor,
                StatusCode::NOT_FOUND,
                "resource_not_found_error",
                "404",
                &format!("no route for {} {}", request.method(), request.uri().path()),
            )),
        },
    };
    match outcome {
        Outcome::Respond(reply) => {
            delay(&shared, decision).await;
            reply
        }
        Outcome::Abort { reset } => {
            if !reset {
                delay(&shared, decision).await;
            }
            control.abort(reset);
            std::future::pending().await
        }
        Outcome::Stall => {
            tokio::select! {
                () = shared.shutdown.cancelled() => {}
                () = tokio::time::sleep(STALL_MAX) => {}
            }
            control.abort(true);
            std::future::pending().await
        }
    }
}

/// Where a process outside the stand-in's own (a `upramp mock` driven by `cargo xtask fleet`) reads and
/// replaces the fault plan at run time; outside both providers' base paths, so no client route collides.
pub const FAULTS_CONTROL_PATH: &str = "/_standin/faults";
/// Longest fault plan a control request may carry.
const MAX_FAULT_SPEC_BYTES: usize = 4096;

/// `GET` answers the plan in force as text; `PUT` with a plan in the body (the `--faults` syntax)
/// replaces it for every request arriving from then on. Both need the bearer key, draw no fault
/// decision (the random sequence of uploads is unchanged) and are not counted as requests.
async fn faults_control(shared: &Shared, request: Request<Incoming>) -> Reply {
    if let Some(reply) = auth_rejection(shared, &request) {
        drain(request.into_body()).await;
        return reply;
    }
    let method = request.method().clone();
    match method {
        Method::GET => text_reply(StatusCode::OK, lock(&shared.faults).to_string()),
        Method::PUT => {
            let body = match read_limited(request.into_body(), MAX_FAULT_SPEC_BYTES).await {
                Ok(body) => body,
                Err(message) => return text_reply(StatusCode::BAD_REQUEST, message),
            };
            let Ok(spec) = std::str::from_utf8(&body) else {
                return text_reply(
                    StatusCode::BAD_REQUEST,
                    "fault plan is not UTF-8".to_owned(),
                );
            };
            match crate::fault::FaultPlan::parse(spec.trim()) {
                Ok(plan) => {
                    let text = plan.to_string();
                    *lock(&shared.faults) = plan;
                    tracing::info!(faults = %text, "stand-in fault plan replaced");
                    text_reply(StatusCode::OK, text)
                }
                Err(err) => text_reply(
                    StatusCode::BAD_REQUEST,
                    format!("fault plan `{}`: {err}", spec.trim()),
                ),
            }
        }
        _ => {
            drain(request.into_body()).await;
            text_reply(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} {FAULTS_CONTROL_PATH}: only GET and PUT"),
            )
        }
    }
}

/// The whole body if it is at most `limit` bytes.
async fn read_limited(body: Incoming, limit: usize) -> Result<Bytes, String> {
    let limited = http_body_util::Limited::new(body, limit);
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) => Err(format!(
            "fault plan body unreadable or over {limit} bytes: {err}"
        )),
    }
}

fn text_reply(status: StatusCode, text: String) -> Reply {
    let mut reply = Response::new(Full::new(Bytes::from(text)));
    *reply.status_mut() = status;
    reply.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    reply
}

async fn delay(shared: &Shared, decision: FaultDecision) {
    if !decision.delay.is_zero() {
        shared.count_fault("latency");
        tokio::time::sleep(decision.delay).await;
    }
}

/// The 401 answer for a request without the right bearer token, or `None` when it may pass.
fn auth_rejection(shared: &Shared, request: &Request<Incoming>) -> Option<Reply> {
    let header = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    let token = header
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    match token {
        None => Some(error(
            shared.flavor,
            StatusCode::UNAUTHORIZED,
            "invalid_authentication_error",
            "1001",
            "Invalid Authentication: the Authorization header must be `Bearer <api key>`",
        )),
        Some(token) if token != shared.api_key => Some(error(
            shared.flavor,
            StatusCode::UNAUTHORIZED,
            "incorrect_api_key_error",
            "1002",
            "Incorrect API key provided",
        )),
        Some(_) => None,
    }
}

/// The provider's error body: Kimi `{"error":{"type","message"}}`, GLM `{"error":{"code","message"}}`.
fn error(
    flavor: Flavor,
    status: StatusCode,
    kimi_type: &str,
    glm_code: &str,
    message: &str,
) -> Reply {
    let body = match flavor {
        Flavor::Kimi => json!({ "error": { "type": kimi_type, "message": message } }),
        Flavor::Glm => json!({ "error": { "code": glm_code, "message": message } }),
    };
    json_reply(status, &body)
}

fn json_reply(status: StatusCode, body: &Value) -> Reply {
    let mut reply = Response::new(Full::new(Bytes::from(body.to_string())));
    *reply.status_mut() = status;
    reply
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    reply
}

fn bad_request(flavor: Flavor, glm_code: &str, message: &str) -> Reply {
    error(
        flavor,
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        glm_code,
        message,
    )
}

fn closing(mut reply: Reply) -> Reply {
    reply
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    reply
}

/// A limit as the providers word it (`100MB`), or in bytes when it is not a whole number of MiB (a
/// configured cap).
fn size_text(limit: u64) -> String {
    if limit % MIB == 0 {
        format!("{}MB", limit / MIB)
    } else {
        format!("{limit} bytes")
    }
}

fn too_large(flavor: Flavor, purpose: Option<&str>, limit: u64, bytes: Option<u64>) -> Reply {
    let seen = bytes.map_or_else(String::new, |bytes| format!(" (got {bytes} bytes)"));
    match flavor {
        Flavor::Kimi => bad_request(
            flavor,
            "",
            &format!(
                "File size is too large, max file size is {}",
                size_text(limit)
            ),
        ),
        Flavor::Glm if limit >= MAX_FILE_BYTES => error(
            flavor,
            StatusCode::from_u16(435).unwrap_or(StatusCode::PAYLOAD_TOO_LARGE),
            "",
            "1210",
            &format!("File size exceeds the {} limit{seen}", size_text(limit)),
        ),
        Flavor::Glm => bad_request(
            flavor,
            "1210",
            &format!(
                "File size exceeds the {} limit for purpose {}{seen}",
                size_text(limit),
                purpose.unwrap_or("?")
            ),
        ),
    }
}

fn fault_reply(flavor: Flavor, fault: InjectedFault) -> Option<Reply> {
    let reply = match fault {
        InjectedFault::Status500 => error(
            flavor,
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "500",
            "Internal server error",
        ),
        InjectedFault::Status502 => error(
            flavor,
            StatusCode::BAD_GATEWAY,
            "server_error",
            "500",
            "Bad gateway",
        ),
        InjectedFault::Status503 => error(
            flavor,
            StatusCode::SERVICE_UNAVAILABLE,
            "engine_overloaded_error",
            "1305",
            "The service may be temporarily overloaded, please try again later",
        ),
        InjectedFault::RateLimited | InjectedFault::RateLimitedDate => {
            let mut reply = error(
                flavor,
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_reached_error",
                "1302",
                "Rate limit reached, please reduce concurrency and retry later",
            );
            let retry_after = if fault == InjectedFault::RateLimited {
                "1".to_owned()
            } else {
                httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(2))
            };
            if let Ok(value) = HeaderValue::from_str(&retry_after) {
                reply.headers_mut().insert(RETRY_AFTER, value);
            }
            reply
        }
        InjectedFault::QuotaExhausted => error(
            flavor,
            StatusCode::TOO_MANY_REQUESTS,
            "exceeded_current_quota_error",
            "1113",
            "Your account balance is exhausted, please recharge and try again",
        ),
        InjectedFault::Unauthorized => error(
            flavor,
            StatusCode::UNAUTHORIZED,
            "invalid_authentication_error",
            "1000",
            "Authentication failed",
        ),
        InjectedFault::Stall
        | InjectedFault::Reset
        | InjectedFault::DropAfterAccept
        | InjectedFault::Malformed => return None,
    };
    Some(reply)
}

/// The purpose's size limit, or `None` when the purpose is unknown to the provider.
fn purpose_limit(flavor: Flavor, purpose: &str, filename: &str) -> Option<u64> {
    match flavor {
        Flavor::Kimi => KIMI_PURPOSES.contains(&purpose).then_some(MAX_FILE_BYTES),
        Flavor::Glm => match purpose {
            "file-extract" => {
                let extension = filename
                    .rsplit_once('.')
                    .map(|(_, ext)| ext.to_ascii_lowercase());
                let image = matches!(extension.as_deref(), Some("png" | "jpg" | "jpeg"));
                Some(if image { 5 * MIB } else { 50 * MIB })
            }
            "code-interpreter" => Some(20 * MIB),
            "batch" | "agent" | "voice-clone-input" | "retrieval" => Some(MAX_FILE_BYTES),
            _ => None,
        },
    }
}

fn purposes_hint(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::Kimi => "file-extract, image, video, batch",
        Flavor::Glm => "batch, file-extract, code-interpreter, agent, voice-clone-input, retrieval",
    }
}

/// A file part as it streams in: size, hash and the first `head_limit` bytes.
struct Received {
    filename: Option<String>,
    bytes: u64,
    hasher: Sha256,
    head: BytesMut,
    head_limit: usize,
}

impl Received {
    fn push(&mut self, chunk: &[u8]) {
        self.bytes += chunk.len() as u64;
        self.hasher.update(chunk);
        let room = self.head_limit.saturating_sub(self.head.len());
        self.head.extend_from_slice(&chunk[..room.min(chunk.len())]);
    }
}

async fn upload(shared: &Shared, request: Request<Incoming>, decision: FaultDecision) -> Outcome {
    let outcome = receive_upload(shared, request, decision).await;
    if let Outcome::Respond(reply) = &outcome {
        if reply.status().is_client_error() && reply.status() != StatusCode::TOO_MANY_REQUESTS {
            shared.update_stats(|stats| stats.uploads_rejected += 1);
        }
    }
    outcome
}

async fn receive_upload(
    shared: &Shared,
    request: Request<Incoming>,
    decision: FaultDecision,
) -> Outcome {
    let flavor = shared.flavor;
    let (parts, body) = request.into_parts();
    if let Some(reply) = decision.fault.and_then(|fault| fault_reply(flavor, fault)) {
        if let Some(fault) = decision.fault {
            shared.count_injected(fault);
        }
        drain(body).await;
        return Outcome::Respond(reply);
    }
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    let largest = shared.max_file_bytes.unwrap_or(MAX_FILE_BYTES);
    if declared.is_some_and(|length| length > largest.saturating_add(MULTIPART_SLACK)) {
        // Refuse before reading a byte: the body is certainly over the limit.
        return Outcome::Respond(closing(too_large(flavor, None, largest, None)));
    }
    let boundary = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| multer::parse_boundary(value).ok());
    let Some(boundary) = boundary else {
        drain(body).await;
        return Outcome::Respond(bad_request(
            flavor,
            "1214",
            "Content-Type must be multipart/form-data with a boundary",
        ));
    };
    if let Some(rate) = decision.bandwidth {
        shared.count_fault("bandwidth");
        tracing::trace!(rate, "throttling upload body");
    }
    let mut multipart = multer::Multipart::new(body_stream(body, decision.bandwidth), boundary);
    let mut purpose: Option<String> = None;
    let mut received: Option<Received> = None;
    let mid_body_fault = decision
        .fault
        .filter(|fault| matches!(fault, InjectedFault::Stall | InjectedFault::Reset));
    loop {
        let mut field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(err) => return malformed_body(flavor, &err),
        };
        match field.name() {
            Some("purpose") => {
                let mut value = Vec::new();
                loop {
                    match field.chunk().await {
                        Ok(Some(chunk)) => {
                            value.extend_from_slice(&chunk);
                            if value.len() > MAX_FIELD_BYTES {
                                return Outcome::Respond(closing(bad_request(
                                    flavor,
                                    "1214",
                                    "purpose field is too long",
                                )));
                            }
                        }
                        Ok(None) => break,
                        Err(err) => return malformed_body(flavor, &err),
                    }
                }
                purpose = Some(String::from_utf8_lossy(&value).trim().to_owned());
            }
            Some("file") => {
                if received.is_some() {
                    return Outcome::Respond(closing(bad_request(
                        flavor,
                        "1214",
                        "more than one file field",
                    )));
                }
                let filename = field.file_name().map(str::to_owned);
                let limit = purpose
                    .as_deref()
                    .and_then(|purpose| {
                        purpose_limit(flavor, purpose, filename.as_deref().unwrap_or(""))
                    })
                    .map_or(largest, |documented| {
                        shared.max_file_bytes.unwrap_or(documented)
                    });
                let mut file = Received {
                    filename,
                    bytes: 0,
                    hasher: Sha256::new(),
                    // Sized once from the declared body length, which bounds the file part: a head
                    // grown chunk by chunk reallocated and copied it several times per upload.
                    head: BytesMut::with_capacity(
                        declared
                            .map_or(0, |length| length.min(shared.content_bytes as u64) as usize),
                    ),
                    head_limit: shared.content_bytes,
                };
                loop {
                    match field.chunk().await {
                        Ok(Some(chunk)) => {
                            file.push(&chunk);
                            if file.bytes > limit {
                                return Outcome::Respond(closing(too_large(
                                    flavor,
                                    purpose.as_deref(),
                                    limit,
                                    None,
                                )));
                            }
                        }
                        Ok(None) => break,
                        Err(err) => return malformed_body(flavor, &err),
                    }
                    if let Some(fault) = mid_body_fault {
                        return mid_body(shared, fault);
                    }
                }
                if let Some(fault) = mid_body_fault {
                    return mid_body(shared, fault);
                }
                received = Some(file);
            }
            _ => loop {
                match field.chunk().await {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(err) => return malformed_body(flavor, &err),
                }
            },
        }
    }
    let Some(file) = received else {
        return Outcome::Respond(bad_request(flavor, "1214", "missing multipart field: file"));
    };
    let Some(purpose) = purpose else {
        return Outcome::Respond(bad_request(
            flavor,
            "1214",
            "missing multipart field: purpose",
        ));
    };
    let Some(filename) = file.filename.clone().filter(|name| !name.is_empty()) else {
        return Outcome::Respond(bad_request(
            flavor,
            "1214",
            "the file field has no filename",
        ));
    };
    let Some(limit) = purpose_limit(flavor, &purpose, &filename) else {
        let message = format!(
            "Invalid purpose {purpose:?}: expected one of {}",
            purposes_hint(flavor)
        );
        return Outcome::Respond(bad_request(flavor, "1210", &message));
    };
    // A configured cap replaces the documented limit here too (the purpose may arrive after the file).
    let limit = shared.max_file_bytes.unwrap_or(limit);
    if file.bytes > limit {
        return Outcome::Respond(too_large(flavor, Some(&purpose), limit, Some(file.bytes)));
    }
    if flavor == Flavor::Kimi && file.bytes == 0 {
        return Outcome::Respond(bad_request(flavor, "", "File size is zero"));
    }
    let stored = {
        let mut store = lock(&shared.store);
        if flavor == Flavor::Kimi && store.files.len() >= shared.max_files {
            let message = format!(
                "Too many files: the file count limit is {}",
                shared.max_files
            );
            return Outcome::Respond(bad_request(flavor, "", &message));
        }
        let seq = store.next_seq;
        let stored = StoredFile {
            id: store.new_id(flavor),
            filename,
            purpose,
            bytes: file.bytes,
            sha256: hex::encode(file.hasher.finalize()),
            created_at: unix_now(),
        };
        store.files.push(Entry {
            seq,
            file: stored.clone(),
            head: file.head.freeze(),
        });
        stored
    };
    shared.update_stats(|stats| stats.uploads_accepted += 1);
    match decision.fault {
        Some(InjectedFault::DropAfterAccept) => {
            shared.count_injected(InjectedFault::DropAfterAccept);
            shared.update_stats(|stats| stats.uploads_dropped_after_accept += 1);
            Outcome::Abort { reset: false }
        }
        Some(InjectedFault::Malformed) => {
            shared.count_injected(InjectedFault::Malformed);
            let text = file_object(flavor, &stored).to_string();
            // Cut mid-document: the status and headers look fine, the JSON does not parse.
            let broken = Bytes::copy_from_slice(&text.as_bytes()[..text.len() / 2]);
            let mut reply = Response::new(Full::new(broken));
            reply
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            Outcome::Respond(reply)
        }
        _ => Outcome::Respond(json_reply(StatusCode::OK, &file_object(flavor, &stored))),
    }
}

fn mid_body(shared: &Shared, fault: InjectedFault) -> Outcome {
    shared.count_injected(fault);
    if fault == InjectedFault::Stall {
        Outcome::Stall
    } else {
        Outcome::Abort { reset: true }
    }
}

fn malformed_body(flavor: Flavor, err: &multer::Error) -> Outcome {
    Outcome::Respond(closing(bad_request(
        flavor,
        "1214",
        &format!("malformed multipart body: {err}"),
    )))
}

/// The request body as a stream of data chunks, read no faster than `bandwidth` bytes per second.
fn body_stream(
    body: Incoming,
    bandwidth: Option<u64>,
) -> impl Stream<Item = Result<Bytes, hyper::Error>> + Send {
    let started = Instant::now();
    futures::stream::unfold(
        (BodyStream::new(body), 0u64),
        move |(mut frames, mut read)| async move {
            loop {
                match frames.next().await? {
                    Ok(frame) => {
                        let Ok(data) = frame.into_data() else {
                            continue;
                        };
                        read += data.len() as u64;
                        if let Some(rate) = bandwidth {
                            let due = started + Duration::from_secs_f64(read as f64 / rate as f64);
                            tokio::time::sleep_until(due.into()).await;
                        }
                        return Some((Ok(data), (frames, read)));
                    }
                    Err(err) => return Some((Err(err), (frames, read))),
                }
            }
        },
    )
}

/// Read and discard the rest of a body so the client, still sending, gets to read the answer.
async fn drain(body: Incoming) {
    let mut body = body;
    while let Some(frame) = body.frame().await {
        if frame.is_err() {
            break;
        }
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64)
}

fn file_object(flavor: Flavor, file: &StoredFile) -> Value {
    match flavor {
        Flavor::Kimi => json!({
            "id": file.id,
            "object": "file",
            "bytes": file.bytes,
            "created_at": file.created_at,
            "filename": file.filename,
            "purpose": file.purpose,
            "status": "ok",
            "status_details": "",
        }),
        Flavor::Glm => json!({
            "id": file.id,
            "object": "file",
            "bytes": file.bytes,
            "created_at": file.created_at,
            "filename": file.filename,
            "purpose": file.purpose,
        }),
    }
}

fn not_found(flavor: Flavor, id: &str) -> Reply {
    error(
        flavor,
        StatusCode::NOT_FOUND,
        "resource_not_found_error",
        "404",
        &format!("file not found: {id}"),
    )
}

fn list(shared: &Shared, query: &str) -> Reply {
    let flavor = shared.flavor;
    let store = lock(&shared.store);
    if flavor == Flavor::Kimi {
        return kimi_list(&store, query);
    }
    let mut purpose = None;
    let mut after = None;
    let mut descending = true;
    let mut limit = 20usize;
    for (key, value) in query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
    {
        match key {
            "purpose" if !value.is_empty() => purpose = Some(value),
            "after" if !value.is_empty() => after = Some(value),
            "order" => match value {
                "asc" => descending = false,
                "desc" => descending = true,
                other => {
                    return bad_request(
                        flavor,
                        "1214",
                        &format!("order {other:?}: expected asc or desc"),
                    )
                }
            },
            "limit" => match value.parse::<usize>() {
                Ok(parsed @ 1..=100) => limit = parsed,
                _ => {
                    return bad_request(
                        flavor,
                        "1214",
                        &format!("limit {value:?}: expected a whole number from 1 to 100"),
                    )
                }
            },
            _ => {}
        }
    }
    let mut files: Vec<&StoredFile> = store
        .files
        .iter()
        .map(|entry| &entry.file)
        .filter(|file| purpose.is_none_or(|purpose| file.purpose == purpose))
        .collect();
    // Insertion order is creation order, finer than the one-second created_at.
    if descending {
        files.reverse();
    }
    if let Some(after) = after {
        let Some(position) = files.iter().position(|file| file.id == after) else {
            return bad_request(flavor, "1214", &format!("after {after:?}: no such file"));
        };
        files.drain(..=position);
    }
    let has_more = files.len() > limit;
    let data: Vec<Value> = files
        .iter()
        .take(limit)
        .map(|file| file_object(flavor, file))
        .collect();
    json_reply(
        StatusCode::OK,
        &json!({ "object": "list", "data": data, "has_more": has_more }),
    )
}

/// Kimi documents no list parameters, so the real service may ignore them; a client that sends
/// the OpenAI SDK's cursor (`after`) or a `limit` gets them honoured here, and every answer says
/// `has_more`, so a cursor-following pager ends. Unparseable values are ignored, as unknown
/// parameters would be; an unknown `after` gives an empty last page.
fn kimi_list(store: &Store, query: &str) -> Reply {
    let mut after = None;
    let mut limit = usize::MAX;
    for (key, value) in query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
    {
        match key {
            "after" if !value.is_empty() => after = Some(value),
            "limit" => {
                if let Ok(parsed @ 1..) = value.parse::<usize>() {
                    limit = parsed;
                }
            }
            _ => {}
        }
    }
    let mut files: Vec<&StoredFile> = store.files.iter().map(|entry| &entry.file).collect();
    if let Some(after) = after {
        match files.iter().position(|file| file.id == after) {
            Some(position) => {
                files.drain(..=position);
            }
            None => files.clear(),
        }
    }
    let has_more = files.len() > limit;
    let data: Vec<Value> = files
        .iter()
        .take(limit)
        .map(|file| file_object(Flavor::Kimi, file))
        .collect();
    json_reply(
        StatusCode::OK,
        &json!({ "object": "list", "data": data, "has_more": has_more }),
    )
}

fn retrieve(shared: &Shared, id: &str) -> Reply {
    let store = lock(&shared.store);
    match store.files.iter().find(|entry| entry.file.id == id) {
        Some(entry) => json_reply(StatusCode::OK, &file_object(shared.flavor, &entry.file)),
        None => not_found(shared.flavor, id),
    }
}

fn delete(shared: &Shared, id: &str) -> Reply {
    let mut store = lock(&shared.store);
    match store.files.iter().position(|entry| entry.file.id == id) {
        Some(position) => {
            store.files.remove(position);
            json_reply(
                StatusCode::OK,
                &json!({ "id": id, "object": "file", "deleted": true }),
            )
        }
        None => not_found(shared.flavor, id),
    }
}

fn content(shared: &Shared, id: &str) -> Reply {
    let store = lock(&shared.store);
    let Some(entry) = store.files.iter().find(|entry| entry.file.id == id) else {
        return not_found(shared.flavor, id);
    };
    let file = &entry.file;
    let (body, content_type) = match shared.flavor {
        Flavor::Kimi => (
            Bytes::from(String::from_utf8_lossy(&entry.head).into_owned()),
            "text/plain; charset=utf-8",
        ),
        Flavor::Glm if file.purpose == "file-extract" => {
            let (title, file_type) = file
                .filename
                .rsplit_once('.')
                .unwrap_or((file.filename.as_str(), ""));
            let body = json!({
                "content": String::from_utf8_lossy(&entry.head),
                "file_type": file_type.to_ascii_lowercase(),
                "filename": file.filename,
                "title": title,
                "type": "file",
            });
            return json_reply(StatusCode::OK, &body);
        }
        Flavor::Glm => (entry.head.clone(), "application/octet-stream"),
    };
    let mut reply = Response::new(Full::new(body));
    reply
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    reply
}
