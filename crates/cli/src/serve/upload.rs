//! `POST /v1/files`: the multipart body streamed to a spool file under the provider's limits, then
//! uploaded through the [`Uploader`](upramp_uploader::Uploader).
//!
//! Nothing reaches the provider before the body is complete and checked: a client that goes away
//! mid-body, or a body over a limit, ends here with its spool file removed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response};
use tokio::io::AsyncWriteExt;
use upramp_providers::{FileObject, FileProvider, UploadMeta};
use upramp_uploader::{Receipt, RetryPolicy, UploadRequest};

use super::errors::ApiError;
use super::response::{json_response, Body};
use super::Gateway;

/// The routing-key header.
pub const ROUTING_KEY_HEADER: &str = "x-upramp-routing-key";
/// Longest accepted routing key.
const MAX_ROUTING_KEY: usize = 256;
/// Longest accepted `purpose` value.
const MAX_PURPOSE: u64 = 256;
/// Room for the multipart framing and small fields around the file.
pub const FRAMING_ALLOWANCE: u64 = 64 * 1024;
/// How long past the uploader's own deadline the gateway waits before it stops waiting itself:
/// the uploader's deadline starts when the request gets its slot and knows whether the file may be
/// stored, so it should answer first whenever there was no wait for a slot.
const DEADLINE_MARGIN: Duration = Duration::from_millis(500);
/// Spool writes are batched to this size (memory per upload stays about this).
const WRITE_BUFFER: usize = 256 * 1024;

/// Handle one upload.
pub async fn create(
    gateway: &Arc<Gateway>,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    if gateway.is_draining() {
        return Err(ApiError::draining());
    }
    let routing_key = routing_key(&request, peer)?;
    let boundary = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| multer::parse_boundary(value).ok())
        .ok_or_else(|| {
            ApiError::bad_request(
                None,
                "expected a multipart/form-data body with a boundary (fields `file` and `purpose`)",
            )
        })?;
    let max_file = gateway.max_file_bytes();
    let max_body = max_file.saturating_add(FRAMING_ALLOWANCE);
    let declared = declared_length(&request)?;
    let mut reservation = gateway.spool.reservation();
    if let Some(declared) = declared {
        if declared > max_body {
            return Err(ApiError::too_large(format!(
                "request body of {declared} bytes is over the largest file {} accepts ({max_file} bytes) plus framing",
                gateway.provider_name()
            )));
        }
        if declared > gateway.spool.max_bytes() {
            return Err(ApiError::too_large(format!(
                "request body of {declared} bytes is over the gateway's spool ({} bytes)",
                gateway.spool.max_bytes()
            )));
        }
        reservation
            .grow_to(declared)
            .map_err(|_| ApiError::spool_full())?;
    }

    let started = Instant::now();
    let stream = request.into_body().into_data_stream();
    let constraints = multer::Constraints::new().size_limit(
        multer::SizeLimit::new()
            .whole_stream(max_body)
            .for_field("purpose", MAX_PURPOSE),
    );
    let mut multipart = multer::Multipart::with_constraints(stream, boundary, constraints);

    let mut purpose: Option<String> = None;
    let mut received: Option<Received> = None;
    loop {
        let field = match idle(gateway, multipart.next_field()).await? {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(err) => return Err(body_error(gateway, &err)),
        };
        match field.name() {
            Some("file") => {
                if received.is_some() {
                    return Err(ApiError::bad_request(
                        Some("file"),
                        "more than one `file` field",
                    ));
                }
                let filename = field
                    .file_name()
                    .map(str::to_owned)
                    .filter(|name| !name.trim().is_empty())
                    .unwrap_or_else(|| "upload".to_owned());
                received = Some(
                    spool_file(
                        gateway,
                        field,
                        filename,
                        purpose.as_deref(),
                        &mut reservation,
                    )
                    .await?,
                );
            }
            Some("purpose") => {
                let mut field = field;
                let mut value = Vec::new();
                while let Some(chunk) = idle(gateway, field.chunk())
                    .await?
                    .map_err(|e| body_error(gateway, &e))?
                {
                    value.extend_from_slice(&chunk);
                }
                let text = String::from_utf8(value)
                    .map_err(|_| ApiError::bad_request(Some("purpose"), "purpose is not UTF-8"))?;
                let text = text.trim().to_owned();
                if let Some(received) = &received {
                    check_size(gateway, &text, &received.filename, received.bytes)?;
                }
                purpose = Some(text);
            }
            _ => {
                // Unknown fields are read and dropped; the whole-stream limit bounds them.
                let mut field = field;
                while idle(gateway, field.chunk())
                    .await?
                    .map_err(|e| body_error(gateway, &e))?
                    .is_some()
                {}
            }
        }
    }
    let purpose = purpose
        .filter(|p| !p.is_empty())
        .ok_or_else(|| ApiError::bad_request(Some("purpose"), "missing form field `purpose`"))?;
    let received =
        received.ok_or_else(|| ApiError::bad_request(Some("file"), "missing form field `file`"))?;
    let meta = UploadMeta {
        filename: received.filename.clone(),
        purpose: purpose.clone(),
        length: received.bytes,
    };
    gateway
        .provider
        .check_upload(&meta)
        .map_err(|err| ApiError::from_provider(&err))?;
    reservation.shrink_to(received.bytes);
    let receive_ms = started.elapsed().as_secs_f64() * 1_000.0;

    let request = UploadRequest {
        path: received.spool.path().to_owned(),
        purpose,
        routing_key: Some(routing_key),
        filename: Some(received.filename),
    };
    // The uploader's deadline does not count the wait for a concurrency slot; the gateway's does,
    // so a provider that holds every slot cannot park requests behind it.
    let flag = gateway.flags.snapshot();
    let deadline = gateway.timeouts.deadline_for(
        received.bytes,
        flag.timeout,
        flag.max_retries,
        flag.fallback,
        &RetryPolicy::default(),
    );
    let receipt = tokio::time::timeout(
        deadline.saturating_add(DEADLINE_MARGIN),
        gateway.uploader.upload(request),
    )
    .await
    .map_err(|_| ApiError::upload_deadline(deadline))?
    .map_err(|err| ApiError::from_upload(&err))?;
    drop(received.spool);
    drop(reservation);
    Ok(receipt_response(&receipt, receive_ms))
}

/// A body that arrived whole in the spool.
struct Received {
    spool: super::spool::SpoolFile,
    filename: String,
    bytes: u64,
}

async fn spool_file(
    gateway: &Gateway,
    mut field: multer::Field<'static>,
    filename: String,
    purpose: Option<&str>,
    reservation: &mut super::spool::Reservation,
) -> Result<Received, ApiError> {
    // With the purpose already known its exact cap applies; otherwise the largest any purpose has,
    // and the exact one once the purpose arrives.
    let cap = match purpose {
        Some(purpose) => gateway
            .limits()
            .max_bytes(purpose, &filename)
            .ok_or_else(|| purpose_error(gateway, purpose))?,
        None => gateway.max_file_bytes(),
    };
    let (spool, file) = gateway
        .spool
        .create()
        .await
        .map_err(|err| ApiError::internal(format!("cannot create a spool file: {err}")))?;
    let mut writer = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file);
    let mut bytes = 0u64;
    while let Some(chunk) = idle(gateway, field.chunk())
        .await?
        .map_err(|e| body_error(gateway, &e))?
    {
        bytes += chunk.len() as u64;
        if bytes > cap {
            return Err(ApiError::too_large(format!(
                "file {filename:?} is over the {cap} byte limit of {} for purpose {}; refused while receiving",
                gateway.provider_name(),
                purpose.unwrap_or("(any)")
            )));
        }
        reservation
            .grow_to(bytes)
            .map_err(|_| ApiError::spool_full())?;
        write(&mut writer, &chunk).await?;
    }
    writer
        .flush()
        .await
        .map_err(|err| ApiError::internal(format!("cannot write the spool file: {err}")))?;
    Ok(Received {
        spool,
        filename,
        bytes,
    })
}

async fn write(
    writer: &mut tokio::io::BufWriter<tokio::fs::File>,
    chunk: &Bytes,
) -> Result<(), ApiError> {
    writer
        .write_all(chunk)
        .await
        .map_err(|err| ApiError::internal(format!("cannot write the spool file: {err}")))
}

fn purpose_error(gateway: &Gateway, purpose: &str) -> ApiError {
    let allowed: Vec<&str> = gateway.limits().purposes().collect();
    ApiError::bad_request(
        Some("purpose"),
        format!(
            "purpose {purpose:?} is not accepted by {} (allowed: {})",
            gateway.provider_name(),
            allowed.join(", ")
        ),
    )
}

fn check_size(
    gateway: &Gateway,
    purpose: &str,
    filename: &str,
    bytes: u64,
) -> Result<(), ApiError> {
    match gateway.limits().max_bytes(purpose, filename) {
        None => Err(purpose_error(gateway, purpose)),
        Some(cap) if bytes > cap => Err(ApiError::too_large(format!(
            "file {filename:?} is {bytes} bytes, over the {cap} byte limit of {} for purpose {purpose}",
            gateway.provider_name()
        ))),
        Some(_) => Ok(()),
    }
}

/// Wait for the next body event, or fail with 408 when the client sends nothing for
/// `--body-timeout`.
async fn idle<T>(
    gateway: &Gateway,
    next: impl std::future::Future<Output = T>,
) -> Result<T, ApiError> {
    tokio::time::timeout(gateway.body_timeout, next)
        .await
        .map_err(|_| ApiError::body_timeout(gateway.body_timeout))
}

fn body_error(gateway: &Gateway, err: &multer::Error) -> ApiError {
    match err {
        multer::Error::StreamSizeExceeded { limit } => ApiError::too_large(format!(
            "request body is over {limit} bytes (the largest file {} accepts plus framing)",
            gateway.provider_name()
        )),
        multer::Error::FieldSizeExceeded { limit, field_name } => ApiError::bad_request(
            None,
            format!(
                "form field {:?} is over {limit} bytes",
                field_name.as_deref().unwrap_or("")
            ),
        ),
        multer::Error::StreamReadFailed(_) | multer::Error::IncompleteStream => {
            gateway.metrics.disconnect();
            tracing::info!(target: "upramp::serve", "client went away before its body was complete; nothing was sent on");
            ApiError::bad_request(None, "the request body ended early")
        }
        other => ApiError::bad_request(None, format!("malformed multipart body: {other}")),
    }
}

fn declared_length(request: &Request<Incoming>) -> Result<Option<u64>, ApiError> {
    let Some(value) = request.headers().get(header::CONTENT_LENGTH) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| ApiError::bad_request(None, "Content-Length is not a number"))
}

/// The routing key: the `X-Upramp-Routing-Key` header, else `addr:<client IP>`.
fn routing_key(request: &Request<Incoming>, peer: SocketAddr) -> Result<String, ApiError> {
    match request.headers().get(ROUTING_KEY_HEADER) {
        Some(value) => {
            let key = value
                .to_str()
                .ok()
                .map(str::trim)
                .filter(|key| !key.is_empty() && key.len() <= MAX_ROUTING_KEY)
                .ok_or_else(|| {
                    ApiError::bad_request(
                        None,
                        format!("header X-Upramp-Routing-Key must be 1 to {MAX_ROUTING_KEY} visible ASCII characters"),
                    )
                })?;
            Ok(key.to_owned())
        }
        None => Ok(format!("addr:{}", peer.ip())),
    }
}

/// The provider's file object in the OpenAI shape.
pub fn file_json(file: &FileObject) -> serde_json::Value {
    serde_json::json!({
        "id": file.id,
        "object": if file.object.is_empty() { "file" } else { file.object.as_str() },
        "bytes": file.bytes,
        "created_at": file.created_at,
        "filename": file.filename,
        "purpose": file.purpose,
        "status": file.status,
        "status_details": file.status_details,
    })
}

fn receipt_response(receipt: &Receipt, receive_ms: f64) -> Response<Body> {
    let mut response = json_response(StatusCode::OK, &file_json(&receipt.file));
    let headers = response.headers_mut();
    let mut set = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    set("x-upramp-path", receipt.path.as_str().to_owned());
    set("x-upramp-attempts", receipt.attempts.to_string());
    set(
        "x-upramp-upload-ms",
        format!("{:.3}", receipt.duration.as_secs_f64() * 1_000.0),
    );
    set("x-upramp-receive-ms", format!("{receive_ms:.3}"));
    set(
        "x-upramp-routing",
        format!("{}/{}", receipt.routing.decided, receipt.routing.reason),
    );
    set("x-upramp-sha256", receipt.sha256.clone());
    if let Some(reason) = receipt.fallback_reason {
        set("x-upramp-fallback-reason", reason.as_str().to_owned());
    }
    if receipt.adopted {
        set("x-upramp-adopted", "true".to_owned());
    }
    response
}
