//! What the API says about VMs: their state, a summary for `gasang list`, lifecycle
//! events, and errors.

use serde::{Deserialize, Serialize};

use crate::definition::Accel;

/// Where a VM is in its life, as `gasang list` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VmState {
    /// Defined, with no VMM process.
    Stopped,
    /// Its VMM process is starting and has not answered yet.
    Starting,
    /// The guest runs.
    Running,
    /// The vCPUs are parked.
    Paused,
    /// The power button was pressed; the guest has not powered off yet.
    ShuttingDown,
    /// The guest panicked or triple-faulted, or its VMM process died, and `on_crash`
    /// is `preserve`.
    Crashed,
}

impl VmState {
    /// Whether a VMM process is there.
    pub fn is_active(self) -> bool {
        !matches!(self, Self::Stopped | Self::Crashed)
    }
}

/// One VM, as `GET /v1/vms` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmInfo {
    /// Its name.
    pub name: String,
    /// Its state.
    pub state: VmState,
    /// The backend it asked for.
    pub accel: Accel,
    /// The backend it runs on ("kvm" or "soft"), while active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// vCPUs.
    pub vcpus: u32,
    /// Guest memory in bytes.
    pub memory_bytes: u64,
    /// The VMM process, while there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Milliseconds since the guest started, while active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime_ms: Option<u64>,
    /// Started with the daemon.
    pub autostart: bool,
    /// Created with `gasang create`: forgotten when it stops.
    pub transient: bool,
    /// How it last ended ("the guest powered off"), once it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<String>,
}

/// The host's resources and what the VMs commit of them, as `GET /v1/host` says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfo {
    /// Host RAM in bytes.
    pub memory_bytes: u64,
    /// The most guest memory the daemon lets active VMs have together: host RAM
    /// times the overcommit ratio.
    pub memory_limit_bytes: u64,
    /// Guest memory of the active VMs.
    pub committed_memory_bytes: u64,
    /// Host CPUs.
    pub cpus: u32,
    /// vCPUs of the active VMs.
    pub committed_vcpus: u32,
    /// VMs defined.
    pub defined: u32,
    /// VMs with a VMM process.
    pub active: u32,
}

/// A lifecycle change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// A definition was stored.
    Defined,
    /// A definition was removed.
    Undefined,
    /// A VMM process started.
    Started,
    /// The vCPUs were parked.
    Paused,
    /// The vCPUs run again.
    Resumed,
    /// The power button was pressed.
    ShutdownRequested,
    /// The VMM process ended without a crash.
    Stopped,
    /// The guest or its VMM process crashed.
    Crashed,
    /// An exit policy started the VM again.
    Restarted,
    /// A restarted daemon found the VMM process still running.
    Reattached,
}

/// An event, as `GET /v1/events` streams them (one JSON object a line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Milliseconds since the Unix epoch.
    pub time_unix_ms: u64,
    /// The VM.
    pub vm: String,
    /// What happened.
    pub kind: EventKind,
    /// Why, in words: "the guest powered off", "kill -9 of the VMM process", "on_crash
    /// = restart".
    pub reason: String,
}

/// What went wrong with a request, as the body of every 4xx and 5xx reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    /// The request is malformed (not JSON, a bad parameter).
    BadRequest,
    /// The definition was refused (an unknown field, a bad size, a bad name).
    InvalidDefinition,
    /// A file the definition names is missing or unreadable.
    MissingFile,
    /// No VM has that name.
    NotFound,
    /// The VM's state does not allow it (a start of a running VM), or the name is
    /// taken.
    Conflict,
    /// Starting it would commit more host memory than the daemon allows.
    Overcommit,
    /// The body is larger than the daemon accepts.
    PayloadTooLarge,
    /// The VMM process refused the definition (a file that is not a kernel, an image
    /// another VMM has open): the message is the VMM's.
    StartFailed,
    /// The daemon failed; its log says more.
    Internal,
}

impl ErrorCode {
    /// The HTTP status that carries it.
    pub fn http_status(self) -> u16 {
        match self {
            Self::BadRequest | Self::InvalidDefinition | Self::MissingFile => 400,
            Self::NotFound => 404,
            Self::Conflict | Self::Overcommit => 409,
            Self::PayloadTooLarge => 413,
            Self::StartFailed => 422,
            Self::Internal => 500,
        }
    }
}

/// An error reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// What kind of failure.
    pub code: ErrorCode,
    /// One line that names the problem.
    pub message: String,
}

impl ApiError {
    /// An error of `code` saying `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test
mod tests {
    use super::*;

    fn json<T: Serialize>(value: &T) -> String {
        serde_json::to_string(value).unwrap()
    }

    #[test]
    fn test_states_events_and_errors_have_their_wire_names() {
        assert_eq!(json(&VmState::ShuttingDown), "\"shutting-down\"");
        assert_eq!(
            json(&EventKind::ShutdownRequested),
            "\"shutdown-requested\""
        );
        let err = ApiError::new(ErrorCode::Overcommit, "no room");
        assert_eq!(json(&err), r#"{"code":"overcommit","message":"no room"}"#);
        assert_eq!(err.code.http_status(), 409);
        assert_eq!(err.to_string(), "no room");
        assert!(VmState::Paused.is_active() && !VmState::Crashed.is_active());
    }

    #[test]
    fn test_info_leaves_out_what_a_stopped_vm_has_not() {
        let info = VmInfo {
            name: "web".into(),
            state: VmState::Stopped,
            accel: Accel::Auto,
            backend: None,
            vcpus: 2,
            memory_bytes: 1 << 30,
            pid: None,
            uptime_ms: None,
            autostart: false,
            transient: false,
            last_exit: None,
        };
        let text = serde_json::to_string(&info).unwrap();
        assert!(
            !text.contains("pid") && text.contains("\"state\":\"stopped\""),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<VmInfo>(&text).unwrap(), info);
    }
}
