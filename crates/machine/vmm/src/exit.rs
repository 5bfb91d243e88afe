//! Why a machine stopped, and how the first reason reaches the VMM thread.

use std::sync::Mutex;

use gasang_legacy::{PowerControl, PowerEvent};
use vmm_sys_util::eventfd::EventFd;

/// Why the machine stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitReason {
    /// The guest powered off (ACPI S5 or a hypervisor request).
    PowerOff,
    /// The guest reset the machine (reboot).
    Reset,
    /// A vCPU triple-faulted.
    TripleFault {
        /// Which vCPU.
        vcpu: u32,
    },
    /// The guest kernel panicked and reported it through pvpanic.
    GuestPanic,
    /// The guest wrote to the debug-exit port.
    DebugExit(u32),
    /// A vCPU could not continue (the backend's message, with its causes).
    VcpuFailed(String),
    /// The host sent this signal (SIGTERM, SIGINT).
    Signal(i32),
    /// The user typed the console's quit escape (Ctrl-A X).
    ConsoleQuit,
    /// A `quit` request on the control socket.
    Quit,
}

/// The first exit reason wins; setting it wakes the VMM thread.
#[derive(Debug)]
pub struct ExitLatch {
    reason: Mutex<Option<ExitReason>>,
    wake: EventFd,
}

impl ExitLatch {
    /// A latch with no reason yet.
    pub fn new() -> std::io::Result<Self> {
        Ok(Self {
            reason: Mutex::new(None),
            wake: EventFd::new(libc::EFD_NONBLOCK)?,
        })
    }

    /// Records `reason` unless one is already set, and wakes the VMM thread.
    pub fn exit(&self, reason: ExitReason) {
        let mut current = self.reason.lock().expect("exit lock poisoned");
        if current.is_none() {
            tracing::debug!("machine stopping: {reason:?}");
            *current = Some(reason);
        }
        // Only fails if the counter would overflow: it is already readable then.
        let _ = self.wake.write(1);
    }

    /// The reason, once set.
    pub fn reason(&self) -> Option<ExitReason> {
        self.reason.lock().expect("exit lock poisoned").clone()
    }

    /// The fd that becomes readable when a reason is set.
    pub fn wake_fd(&self) -> &EventFd {
        &self.wake
    }
}

impl PowerControl for ExitLatch {
    fn power_event(&self, event: PowerEvent) {
        self.exit(match event {
            PowerEvent::PowerOff => ExitReason::PowerOff,
            PowerEvent::Reset => ExitReason::Reset,
            PowerEvent::Panic => ExitReason::GuestPanic,
            PowerEvent::DebugExit(code) => ExitReason::DebugExit(code),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_exit_latch_first_reason_wins() {
        let latch = ExitLatch::new().unwrap();
        latch.power_event(PowerEvent::Panic);
        latch.exit(ExitReason::PowerOff);
        assert_eq!(latch.reason(), Some(ExitReason::GuestPanic));
        assert_eq!(latch.wake_fd().read().unwrap(), 2);
    }
}
