//! `gasang run --runtime-dir DIR`: a VMM run by a supervisor (gasangd) rather than
//! on a terminal. The console is `DIR/console.sock`, requests come on
//! `DIR/control.sock`, and the end is recorded in `DIR/exit.json` (the protocol is
//! [`gasang_control`]'s).

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use gasang_control::{ExitRecord, RunState, VmmInfo, CONSOLE_SOCKET, CONTROL_SOCKET, EXIT_FILE};
use gasang_vmm::{Console, ConsoleError, ControlServer, VmConfig};

/// The runtime directory is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ManagedError {
    /// It does not exist or is not a directory.
    #[error("--runtime-dir {}: not a directory", .0.display())]
    NotADirectory(PathBuf),
    /// A running VMM already serves this socket.
    #[error("{} is in use by a running VMM", .0.display())]
    InUse(PathBuf),
    /// A stale socket could not be removed, or the control socket not bound.
    #[error("cannot set up {}", path.display())]
    Socket {
        /// The socket.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The console socket could not be bound.
    #[error(transparent)]
    Console(#[from] ConsoleError),
}

/// A VMM's sockets in its runtime directory.
#[derive(Debug)]
pub struct Managed {
    /// The console on `console.sock`.
    pub console: Console,
    /// The control socket's server.
    pub control: ControlServer,
}

impl Managed {
    /// Binds both sockets in `dir`, replacing stale ones that no process serves, and
    /// removes an old exit record.
    pub fn start(
        dir: &Path,
        name: Option<&str>,
        accel: &str,
        config: &VmConfig,
    ) -> Result<Self, ManagedError> {
        if !dir.is_dir() {
            return Err(ManagedError::NotADirectory(dir.to_path_buf()));
        }
        let control_path = dir.join(CONTROL_SOCKET);
        let console_path = dir.join(CONSOLE_SOCKET);
        claim(&control_path)?;
        claim(&console_path)?;
        let _ = std::fs::remove_file(dir.join(EXIT_FILE));
        let info = VmmInfo {
            name: name.map(str::to_string),
            pid: std::process::id(),
            state: RunState::Running,
            accel: accel.to_string(),
            vcpus: config.topology.vcpus(),
            memory_bytes: config.memory.bytes(),
            boots: 0,
            started_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        };
        let control =
            ControlServer::serve(&control_path, info).map_err(|source| ManagedError::Socket {
                path: control_path.clone(),
                source,
            })?;
        let console = Console::socket(&console_path)?;
        Ok(Self { console, control })
    }
}

/// Makes `path` free to bind: an error if a process serves it, removed if stale.
fn claim(path: &Path) -> Result<(), ManagedError> {
    if UnixStream::connect(path).is_ok() {
        return Err(ManagedError::InUse(path.to_path_buf()));
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(ManagedError::Socket {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Writes `record` to `dir/exit.json` atomically (a temporary file, fsynced, renamed),
/// so that a reader sees all of it or nothing.
pub fn record_exit(dir: &Path, record: &ExitRecord) {
    let path = dir.join(EXIT_FILE);
    let temporary = dir.join(format!("{EXIT_FILE}.tmp"));
    let written = (|| {
        use std::io::Write;
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(gasang_control::encode(record).as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, &path)
    })();
    if let Err(e) = written {
        eprintln!("gasang: cannot write {}: {e}", path.display());
    }
}
