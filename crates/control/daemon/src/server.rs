//! The API socket: accepting connections and serving each on a task of its own, so
//! that a slow or silent client holds up nobody else.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::UnixListener;

/// A client has this long to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Another daemon answers on it.
    #[error("{} is in use by a running gasangd", .0.display())]
    InUse(PathBuf),
    /// Making its directory, removing a stale one, binding or setting its mode.
    #[error("cannot listen on {}", .0.display())]
    Bind(PathBuf, #[source] std::io::Error),
}

/// Binds `path` (mode 0600), replacing a stale socket that nothing serves.
pub fn bind(path: &Path) -> Result<UnixListener, ServerError> {
    let error = |e| ServerError::Bind(path.to_path_buf(), e);
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(ServerError::InUse(path.to_path_buf()));
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(error)?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(error(e)),
        _ => {}
    }
    let listener = UnixListener::bind(path).map_err(error)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(error)?;
    Ok(listener)
}

/// Serves `router` on `listener` until `stop` completes.
pub async fn serve(
    listener: UnixListener,
    router: Router,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        let stream = tokio::select! {
            () = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors, most likely: wait rather than spin.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            if let Err(e) = connection.await {
                tracing::debug!("API connection: {e}");
            }
        });
    }
}
