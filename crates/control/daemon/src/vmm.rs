//! One VMM process, as the daemon sees it: started as `gasang run --runtime-dir`, and
//! reached only through `gasang-control`'s socket and files.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use gasang_api::VmDefinition;
use gasang_control::{
    ExitKind, ExitRecord, Reply, Request, VmmInfo, CONSOLE_SOCKET, CONTROL_SOCKET, EXIT_FILE,
    LOG_FILE, MAX_LINE,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::process::{Child, Command};

/// How long one request may take: the VMM answers from its control thread at once.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a new VMM may take to build its machine and answer.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Talking to a VMM failed.
#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    /// The process could not be started.
    #[error("cannot start the VMM {}", .0.display())]
    Spawn(PathBuf, #[source] std::io::Error),
    /// The control socket is not there or does not answer.
    #[error("the VMM's control socket did not answer")]
    Io(#[from] std::io::Error),
    /// It answered with something that is not a reply.
    #[error("the VMM sent a malformed reply")]
    Malformed,
    /// It refused the request.
    #[error("the VMM refused: {0}")]
    Refused(String),
    /// It ended before it was ready; the exit record says why.
    #[error("{0}")]
    Failed(String),
    /// It took too long.
    #[error("the VMM did not answer within {0:?}")]
    Timeout(Duration),
}

/// Sends `request` on a connection of its own and returns the reply.
pub async fn call(dir: &Path, request: &Request) -> Result<Reply, VmmError> {
    let exchange = async {
        let mut stream = UnixStream::connect(dir.join(CONTROL_SOCKET)).await?;
        stream
            .write_all(gasang_control::encode(request).as_bytes())
            .await?;
        let mut line = Vec::new();
        let limit = u64::try_from(MAX_LINE).unwrap_or(u64::MAX);
        BufReader::new(stream.take(limit))
            .read_until(b'\n', &mut line)
            .await?;
        match serde_json::from_slice::<Reply>(&line) {
            Ok(Reply::Error(why)) => Err(VmmError::Refused(why)),
            Ok(reply) => Ok(reply),
            Err(_) => Err(VmmError::Malformed),
        }
    };
    tokio::time::timeout(CALL_TIMEOUT, exchange)
        .await
        .map_err(|_| VmmError::Timeout(CALL_TIMEOUT))?
}

/// The VMM's [`VmmInfo`].
pub async fn info(dir: &Path) -> Result<VmmInfo, VmmError> {
    match call(dir, &Request::Info).await? {
        Reply::Info(info) => Ok(info),
        _ => Err(VmmError::Malformed),
    }
}

/// Sends a request whose reply is `done`.
pub async fn command(dir: &Path, request: Request) -> Result<(), VmmError> {
    match call(dir, &request).await? {
        Reply::Done => Ok(()),
        _ => Err(VmmError::Malformed),
    }
}

/// Starts `vmm run ...` for `definition` in `dir`, its output appended to the log,
/// in a process group of its own so that a signal to the daemon's group (Ctrl-C on
/// its terminal) does not reach it.
pub fn spawn(vmm: &Path, definition: &VmDefinition, dir: &Path) -> Result<Child, VmmError> {
    let spawn_error = |e| VmmError::Spawn(vmm.to_path_buf(), e);
    std::fs::create_dir_all(dir).map_err(spawn_error)?;
    for stale in [EXIT_FILE, CONTROL_SOCKET, CONSOLE_SOCKET] {
        let _ = std::fs::remove_file(dir.join(stale));
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(LOG_FILE))
        .map_err(spawn_error)?;
    let log_err = log.try_clone().map_err(spawn_error)?;
    Command::new(vmm)
        .args(definition.run_args(dir))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0)
        .kill_on_drop(false)
        .spawn()
        .map_err(spawn_error)
}

/// Waits until the new VMM's machine is up (`info` counts a boot), or fails with
/// what its exit record says. The control socket answers before the machine is
/// built, so an answer alone is not enough: the kernel may still be refused.
pub async fn wait_ready(dir: &Path, child: &mut Child) -> Result<VmmInfo, VmmError> {
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            let why = read_exit(dir).map_or_else(
                || format!("the VMM exited ({status}) before it was ready"),
                |r| r.detail,
            );
            return Err(VmmError::Failed(why));
        }
        if dir.join(CONTROL_SOCKET).exists() {
            match info(dir).await {
                Ok(info) if info.boots > 0 => return Ok(info),
                _ => {}
            }
        }
        if tokio::time::Instant::now() > deadline {
            return Err(VmmError::Timeout(READY_TIMEOUT));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Returns when the VMM's machine has stopped: the VMM closes every control
/// connection then, and the kernel closes them if the process dies. A socket that
/// refuses connections while the process lives is tried again for a while.
pub async fn wait_closed(dir: &Path, pid: Option<u32>) {
    let path = dir.join(CONTROL_SOCKET);
    for _ in 0..50 {
        if let Ok(mut stream) = UnixStream::connect(&path).await {
            let mut sink = [0u8; 256];
            while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
            return;
        }
        if !pid.is_some_and(alive) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The exit record, if the VMM wrote one.
pub fn read_exit(dir: &Path) -> Option<ExitRecord> {
    let text = std::fs::read(dir.join(EXIT_FILE)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Whether process `pid` is still there (and not a zombie).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state is the first field after the parenthesized command name.
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

/// Kills `pid` with SIGKILL.
pub fn kill(pid: u32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) takes two integers and touches no memory of ours; a pid that is
    // gone only makes it fail with ESRCH.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
}

/// The reason a VMM process gave for its end, in words, with its category; a process
/// that left no record died without saying (SIGKILL, a crash of the VMM itself).
pub fn describe_exit(record: Option<&ExitRecord>) -> (ExitKind, String) {
    match record {
        Some(r) => (r.kind, r.detail.clone()),
        None => (
            ExitKind::Crash,
            "the VMM process died without an exit record (killed?)".into(),
        ),
    }
}
