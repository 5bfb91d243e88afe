//! The control protocol of one VMM process: what gasangd (or a script) says to a
//! `gasang run --runtime-dir DIR` over `DIR/control.sock`, and what the VMM leaves in
//! `DIR/exit.json` when it stops.
//!
//! One JSON object per line each way: a [`Request`], then its [`Reply`]. A connection
//! may carry any number of requests; the VMM closes it when the machine stops, which
//! is how a supervisor that keeps one connection open learns of the exit at once.
//! This crate is the whole contract: the daemon depends on nothing else of the VMM.

use std::io::BufRead;

use serde::{Deserialize, Serialize};

/// The control socket's name in the runtime directory.
pub const CONTROL_SOCKET: &str = "control.sock";
/// The console socket's name: each connection gets the scrollback, then the live
/// console; what it sends is typed into the guest.
pub const CONSOLE_SOCKET: &str = "console.sock";
/// The exit record's name, written (atomically) when the VMM stops.
pub const EXIT_FILE: &str = "exit.json";
/// The VMM's log (its stderr), opened by whoever starts it.
pub const LOG_FILE: &str = "vmm.log";
/// The longest line either side accepts: requests and replies are small.
pub const MAX_LINE: usize = 64 * 1024;

/// A request to the VMM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    /// What the VMM runs, and its state: [`Reply::Info`].
    Info,
    /// Stops every vCPU (devices finish what is in flight); idempotent.
    Pause,
    /// Lets the vCPUs run again; idempotent.
    Resume,
    /// Presses the ACPI power button: a guest that handles it shuts down.
    PowerButton,
    /// Resets the machine, as the reset button does.
    Reset,
    /// Stops the machine now, without asking the guest ([`ExitKind::Quit`]).
    Quit,
    /// The guest's trapped accesses per device: [`Reply::Stats`].
    Stats,
}

/// The VMM's answer to one [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reply {
    /// Done.
    Done,
    /// For [`Request::Info`].
    Info(VmmInfo),
    /// For [`Request::Stats`].
    Stats(VmmStats),
    /// The request failed; why.
    Error(String),
}

/// Whether the vCPUs run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunState {
    /// The guest runs.
    Running,
    /// Every vCPU is stopped.
    Paused,
}

/// What a VMM process runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmmInfo {
    /// The name it was given (`--name`), if any.
    pub name: Option<String>,
    /// Its process ID.
    pub pid: u32,
    /// Running or paused.
    pub state: RunState,
    /// The CPU backend: "kvm" or "soft".
    pub accel: String,
    /// vCPUs.
    pub vcpus: u32,
    /// Guest RAM in bytes.
    pub memory_bytes: u64,
    /// Boots so far (a reset that restarts the machine in place counts one more).
    pub boots: u32,
    /// When the process started, in milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
}

/// Where the guest's trapped accesses went.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmmStats {
    /// One entry per device range the guest reached, in bus order.
    pub devices: Vec<DeviceTraps>,
    /// Accesses that reached no device.
    pub unknown: u64,
}

/// The traps one device range took (KVM: the exits that reached gasang; software
/// CPU: every access).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceTraps {
    /// The device's name ("serial", "virtio-blk", ...).
    pub name: String,
    /// "port" or "mmio".
    pub space: String,
    /// The range's first address.
    pub base: u64,
    /// Reads.
    pub reads: u64,
    /// Writes.
    pub writes: u64,
}

/// Why a VMM stopped: the supervisor's policies act on the kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExitKind {
    /// The guest powered off.
    Poweroff,
    /// The guest rebooted (and the VMM was not told to restart it in place).
    Reboot,
    /// The guest crashed: a kernel panic, a triple fault, a vCPU that cannot go on.
    Crash,
    /// Stopped on request: [`Request::Quit`], a signal, the console's quit key.
    Quit,
    /// The machine could not be built: a bad kernel, an image that will not open.
    Failed,
}

/// `exit.json`: what the VMM says about its end. Missing after a VMM process is gone,
/// it was killed (or itself crashed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// The category.
    pub kind: ExitKind,
    /// In words ("the guest triple-faulted on vCPU 0").
    pub detail: String,
    /// The process's exit status.
    pub status: u8,
}

/// A malformed line.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// Reading or writing the socket failed.
    #[error("control socket I/O failed")]
    Io(#[from] std::io::Error),
    /// The line is longer than [`MAX_LINE`].
    #[error("line longer than {MAX_LINE} bytes")]
    TooLong,
    /// The line is not the JSON of the expected type.
    #[error("malformed message")]
    Json(#[from] serde_json::Error),
}

/// `message` as one line of JSON.
pub fn encode<T: Serialize>(message: &T) -> String {
    // Serializing these plain types cannot fail: no maps with non-string keys.
    let mut line = serde_json::to_string(message).unwrap_or_else(|_| "null".into());
    line.push('\n');
    line
}

/// Reads one line of at most [`MAX_LINE`] bytes and parses it; `None` at end of input.
pub fn read_message<T: for<'de> Deserialize<'de>>(
    reader: &mut impl BufRead,
) -> Result<Option<T>, ProtocolError> {
    let mut line = Vec::new();
    let limit = u64::try_from(MAX_LINE + 1).unwrap_or(u64::MAX);
    let n = std::io::Read::take(&mut *reader, limit).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') && line.len() > MAX_LINE {
        return Err(ProtocolError::TooLong);
    }
    Ok(Some(serde_json::from_slice(&line)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_request_wire_form() {
        assert_eq!(encode(&Request::PowerButton), "{\"op\":\"power-button\"}\n");
        let parsed: Option<Request> = read_message(&mut &b"{\"op\":\"pause\"}\n"[..]).unwrap();
        assert_eq!(parsed, Some(Request::Pause));
    }

    #[test]
    fn test_reply_round_trip() {
        let reply = Reply::Error("no".into());
        let line = encode(&reply);
        assert_eq!(line, "{\"error\":\"no\"}\n");
        assert_eq!(
            read_message::<Reply>(&mut line.as_bytes()).unwrap(),
            Some(reply)
        );
    }

    #[test]
    fn test_unknown_op_and_non_object_are_refused() {
        assert!(read_message::<Request>(&mut &b"{\"op\":\"fly\"}\n"[..]).is_err());
        assert!(read_message::<Request>(&mut &b"[1]\n"[..]).is_err());
    }

    #[test]
    fn test_overlong_line_is_refused() {
        let long = vec![b' '; MAX_LINE + 10];
        let result = read_message::<Request>(&mut &long[..]);
        assert!(matches!(result, Err(ProtocolError::TooLong)));
    }

    #[test]
    fn test_end_of_input_is_none() {
        assert_eq!(read_message::<Request>(&mut &b""[..]).unwrap(), None);
    }
}
