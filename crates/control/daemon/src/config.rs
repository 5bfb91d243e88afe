//! What `gasangd` is told on its command line, checked once.

use std::path::{Path, PathBuf};

/// The default API socket.
pub const DEFAULT_SOCKET: &str = "/run/gasang/gasang.sock";
/// The default state directory: the database and each VM's runtime directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/gasang";
/// Guest memory may add up to this many times the host's RAM, by default.
pub const DEFAULT_MEMORY_OVERCOMMIT: f64 = 1.0;

/// The daemon's settings.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// Where the API listens.
    pub socket: PathBuf,
    /// Where the database and the runtime directories are.
    pub state_dir: PathBuf,
    /// The `gasang` binary that runs each VMM.
    pub vmm: PathBuf,
    /// How many times the host's RAM the active VMs' memory may add up to.
    pub memory_overcommit: f64,
}

/// A setting is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The ratio is not a positive number of reasonable size.
    #[error("--memory-overcommit {0}: must be more than 0 and at most 100")]
    Overcommit(f64),
    /// A path is relative.
    #[error("{0} {1:?}: must be an absolute path")]
    Relative(&'static str, PathBuf),
    /// The VMM binary is not there.
    #[error("--vmm {}: no such executable", .0.display())]
    Vmm(PathBuf),
}

impl DaemonConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.memory_overcommit > 0.0 && self.memory_overcommit <= 100.0) {
            return Err(ConfigError::Overcommit(self.memory_overcommit));
        }
        for (flag, path) in [("--socket", &self.socket), ("--state-dir", &self.state_dir)] {
            if !path.is_absolute() {
                return Err(ConfigError::Relative(flag, path.clone()));
            }
        }
        if !self.vmm.is_file() {
            return Err(ConfigError::Vmm(self.vmm.clone()));
        }
        Ok(())
    }

    /// The database file.
    pub fn database(&self) -> PathBuf {
        self.state_dir.join("gasangd.redb")
    }

    /// The file whose presence says that this host boot's autostart has been done:
    /// beside the socket, in /run by default, which is emptied at boot.
    pub fn autostart_marker(&self) -> PathBuf {
        self.socket.with_extension("autostarted")
    }

    /// VM `name`'s runtime directory: its sockets, exit record and log.
    pub fn run_dir(&self, name: &str) -> PathBuf {
        self.state_dir.join("run").join(name)
    }

    /// The longest VM name whose sockets fit in a socket address (108 bytes with the
    /// terminating zero) under this state directory.
    pub fn max_name(&self) -> usize {
        let fixed = self.run_dir("").join(gasang_control::CONSOLE_SOCKET);
        107usize.saturating_sub(fixed.as_os_str().len())
    }
}

/// The `gasang` beside the running executable (as installed), if there is one.
pub fn default_vmm(exe: &Path) -> PathBuf {
    exe.with_file_name("gasang")
}
