//! gasangd, the management domain: it keeps VM definitions in a database, runs each
//! VM in a VMM process of its own (`gasang run --runtime-dir`), watches those
//! processes, applies exit policies, and serves the REST API on a Unix socket.
//!
//! It reaches a VMM only through `gasang-control` (the control socket, the console
//! socket and the exit record), and its clients only through `gasang-api`: the VMMs
//! outlive the daemon, and a new daemon finds them again.

mod api;
pub mod config;
mod console;
pub mod daemon;
mod events;
mod host;
mod lifecycle;
mod metrics;
mod server;
mod store;
mod supervise;
mod vmm;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub use config::{ConfigError, DaemonConfig};
pub use daemon::{Daemon, DaemonError};
pub use server::ServerError;

/// The daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A setting is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The state could not be opened.
    #[error(transparent)]
    Daemon(#[from] DaemonError),
    /// The socket could not be set up.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// The database failed while re-attaching.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// Signals could not be set up.
    #[error("cannot handle signals")]
    Signals(#[source] std::io::Error),
}

/// Runs the daemon until SIGTERM or SIGINT; the VMs keep running after it.
pub async fn run(config: DaemonConfig) -> Result<(), RunError> {
    use tokio::signal::unix::{signal, SignalKind};
    config.validate()?;
    let listener = server::bind(&config.socket)?;
    let daemon = Arc::new(Daemon::open(config)?);
    supervise::reattach_all(&daemon).await?;
    // Autostart is once per host boot, as libvirt's: the marker sits beside the
    // socket, in /run, which the host empties when it boots.
    let marker = daemon.config.autostart_marker();
    if !marker.exists() {
        if let Err(e) = std::fs::write(&marker, b"") {
            tracing::warn!("cannot write {}: {e}", marker.display());
        }
        tokio::spawn({
            let daemon = daemon.clone();
            async move { supervise::autostart(&daemon).await }
        });
    }
    let mut term = signal(SignalKind::terminate()).map_err(RunError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(RunError::Signals)?;
    let stop = async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
    };
    tracing::info!(socket = %daemon.config.socket.display(), "gasangd serving");
    server::serve(listener, api::router(daemon.clone()), stop).await;
    let _ = std::fs::remove_file(&daemon.config.socket);
    Ok(())
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
