//! `GET /v1/vms/{name}/console` with `Upgrade: gasang-console`: after the 101 reply the
//! connection carries the VM's console both ways, its scrollback first, exactly as the
//! VMM's console socket does. Closing it detaches; the VM runs on.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use gasang_api::{ApiError, ErrorCode};
use gasang_control::CONSOLE_SOCKET;
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

use crate::api::Failure;
use crate::daemon::{conflict, Daemon};

/// The protocol name in the `Upgrade` header.
pub const PROTOCOL: &str = "gasang-console";

/// Connects the client to VM `name`'s console.
pub async fn attach(
    State(daemon): State<Arc<Daemon>>,
    Path(name): Path<String>,
    mut request: Request,
) -> Result<Response, Failure> {
    let wants = request
        .headers()
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(PROTOCOL.as_bytes()));
    if !wants {
        let message = format!("the console needs Connection: upgrade and Upgrade: {PROTOCOL}");
        return Err(Failure(ApiError::new(ErrorCode::BadRequest, message)));
    }
    daemon.with_slot(&name, |slot| match slot.run.as_ref().and_then(|r| r.pid) {
        Some(_) => Ok(()),
        None => Err(conflict(format!("{name} is not running"))),
    })?;
    // Connected before the 101, so that a console that is gone is a 409, not a
    // connection that closes at once.
    let path = daemon.config.run_dir(&name).join(CONSOLE_SOCKET);
    let mut console = UnixStream::connect(&path)
        .await
        .map_err(|_| conflict(format!("{name}'s console is not there; is it stopping?")))?;
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => {
                let mut client = TokioIo::new(upgraded);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut console).await;
            }
            Err(e) => tracing::debug!("console upgrade failed: {e}"),
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, PROTOCOL)
        .body(Body::empty())
        .map_err(|e| Failure(crate::daemon::internal(&e)))
}
