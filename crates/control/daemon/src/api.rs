//! The REST API under `/v1/` (docs/api.yaml describes it): each handler checks its
//! input, calls the daemon, and answers JSON; every failure is an [`ApiError`] body.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use gasang_api::definition::MAX_DEFINITION;
use gasang_api::{ApiError, ErrorCode, VmDefinition};
use serde::Deserialize;

use crate::daemon::Daemon;
use crate::{console, lifecycle, metrics};

/// The longest shutdown timeout accepted, in seconds.
const MAX_SHUTDOWN_TIMEOUT: u64 = 24 * 3600;

/// An error reply.
#[derive(Debug)]
pub struct Failure(pub ApiError);

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.0)).into_response()
    }
}

type Reply<T> = Result<T, Failure>;
type Shared = State<Arc<Daemon>>;

fn bad_request(message: impl Into<String>) -> Failure {
    Failure(ApiError::new(ErrorCode::BadRequest, message))
}

/// The API's routes.
pub fn router(daemon: Arc<Daemon>) -> Router {
    Router::new()
        .route("/v1/vms", get(list).post(define))
        .route("/v1/vms/{name}", get(info).put(redefine).delete(undefine))
        .route("/v1/vms/{name}/definition", get(definition))
        .route("/v1/vms/{name}/start", post(start))
        .route("/v1/vms/{name}/destroy", post(destroy))
        .route("/v1/vms/{name}/shutdown", post(shutdown))
        .route("/v1/vms/{name}/reboot", post(reboot))
        .route("/v1/vms/{name}/pause", post(pause))
        .route("/v1/vms/{name}/resume", post(resume))
        .route("/v1/vms/{name}/console", get(console::attach))
        .route("/v1/events", get(events))
        .route("/v1/host", get(host))
        .route("/metrics", get(metrics::serve))
        .fallback(|| async { Failure(ApiError::new(ErrorCode::NotFound, "no such API path")) })
        .method_not_allowed_fallback(|| async {
            Failure(ApiError::new(
                ErrorCode::BadRequest,
                "method not allowed on this path",
            ))
        })
        .layer(DefaultBodyLimit::max(MAX_DEFINITION))
        .layer(axum::middleware::from_fn(refuse_large_bodies))
        .with_state(daemon)
}

/// A body declared larger than any request needs is refused before it is read, so
/// that the client learns at once and no memory is spent on it.
async fn refuse_large_bodies(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > MAX_DEFINITION as u64 => Failure(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("the request body is {n} bytes; at most {MAX_DEFINITION} are accepted"),
        ))
        .into_response(),
        _ => next.run(request).await,
    }
}

/// A request body that holds a TOML definition.
fn parse_definition(body: Result<Bytes, BytesRejection>) -> Reply<VmDefinition> {
    let bytes = body.map_err(|e| {
        let code = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ErrorCode::PayloadTooLarge
        } else {
            ErrorCode::BadRequest
        };
        let message = format!("request body: {}", e.body_text());
        Failure(ApiError::new(code, message))
    })?;
    let text =
        std::str::from_utf8(&bytes).map_err(|_| bad_request("the definition is not UTF-8"))?;
    VmDefinition::from_toml(text).map_err(|e| {
        Failure(ApiError::new(
            ErrorCode::InvalidDefinition,
            e.to_string().trim(),
        ))
    })
}

fn query<T>(query: Result<Query<T>, QueryRejection>) -> Reply<T> {
    query
        .map(|Query(q)| q)
        .map_err(|e| bad_request(e.body_text()))
}

async fn list(State(d): Shared) -> impl IntoResponse {
    Json(d.list())
}

/// `POST /v1/vms?start=true&transient=true` is `gasang create`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DefineQuery {
    #[serde(default)]
    start: bool,
    #[serde(default)]
    transient: bool,
}

async fn define(
    State(d): Shared,
    q: Result<Query<DefineQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Reply<Response> {
    let q = query(q)?;
    let definition = parse_definition(body)?;
    let name = definition.name.clone();
    let mut info = d.define(definition, q.transient)?;
    if q.start {
        info = match lifecycle::start(&d, &name, "create request").await {
            Ok(info) => info,
            Err(e) => {
                // `create` is define-and-start: a VM that did not start is not kept.
                let _ = d.undefine(&name);
                return Err(e.into());
            }
        };
    }
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

async fn info(State(d): Shared, Path(name): Path<String>) -> Reply<Response> {
    Ok(Json(d.get(&name)?).into_response())
}

async fn redefine(
    State(d): Shared,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Reply<Response> {
    let definition = parse_definition(body)?;
    Ok(Json(d.redefine(&name, definition)?).into_response())
}

async fn undefine(State(d): Shared, Path(name): Path<String>) -> Reply<StatusCode> {
    d.undefine(&name)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn definition(State(d): Shared, Path(name): Path<String>) -> Reply<Response> {
    let text = d.definition(&name)?.to_toml();
    Ok(([(header::CONTENT_TYPE, "application/toml")], text).into_response())
}

async fn start(State(d): Shared, Path(name): Path<String>) -> Reply<Response> {
    Ok(Json(lifecycle::start(&d, &name, "start request").await?).into_response())
}

async fn destroy(State(d): Shared, Path(name): Path<String>) -> Reply<Response> {
    Ok(Json(lifecycle::destroy(&d, &name, "destroy request").await?).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShutdownQuery {
    /// Seconds until the VM is destroyed if it has not powered off.
    #[serde(default = "default_shutdown_timeout")]
    timeout: u64,
}

fn default_shutdown_timeout() -> u64 {
    60
}

async fn shutdown(
    State(d): Shared,
    Path(name): Path<String>,
    q: Result<Query<ShutdownQuery>, QueryRejection>,
) -> Reply<Response> {
    let q = query(q)?;
    if q.timeout > MAX_SHUTDOWN_TIMEOUT {
        return Err(bad_request(format!(
            "timeout={}: at most {MAX_SHUTDOWN_TIMEOUT} seconds",
            q.timeout
        )));
    }
    let info = lifecycle::shutdown(&d, &name, Duration::from_secs(q.timeout)).await?;
    Ok((StatusCode::ACCEPTED, Json(info)).into_response())
}

async fn reboot(State(d): Shared, Path(name): Path<String>) -> Reply<Response> {
    Ok(Json(lifecycle::reboot(&d, &name).await?).into_response())
}

async fn pause(State(d): Shared, Path(name): Path<String>) -> Reply<Response> {
    Ok(Json(lifecycle::pause(&d, &name, true).await?).into_response())
}

async fn resume(State(d): Shared, Path(name): Path<String>) -> Reply<Response> {
    Ok(Json(lifecycle::pause(&d, &name, false).await?).into_response())
}

async fn host(State(d): Shared) -> impl IntoResponse {
    Json(d.host_info())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    #[serde(default)]
    follow: bool,
}

/// The recent events, one JSON object a line; with `follow=true`, new ones as they
/// happen, until the client goes.
async fn events(
    State(d): Shared,
    q: Result<Query<EventsQuery>, QueryRejection>,
) -> Reply<Response> {
    let q = query(q)?;
    let (history, live) = d.events.subscribe();
    let mut text = String::new();
    for event in &history {
        text.push_str(&gasang_control::encode(event));
    }
    let content = [(header::CONTENT_TYPE, "application/x-ndjson")];
    if !q.follow {
        return Ok((content, text).into_response());
    }
    let first =
        futures_util::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(text)) });
    let rest = futures_util::stream::unfold(live, |mut live| async move {
        loop {
            match live.recv().await {
                Ok(event) => {
                    let line = Bytes::from(gasang_control::encode(&event));
                    return Some((Ok(line), live));
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    let stream = futures_util::StreamExt::chain(first, rest);
    Ok((content, Body::from_stream(stream)).into_response())
}
