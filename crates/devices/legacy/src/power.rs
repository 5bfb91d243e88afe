//! Machine-level events a device can cause.

/// Something the guest did that ends or restarts the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerEvent {
    /// ACPI S5: soft off.
    PowerOff,
    /// A reset: i8042 pulse, ACPI reset register.
    Reset,
    /// The guest kernel panicked and said so through pvpanic.
    Panic,
    /// The guest wrote this exit status to the debug-exit port.
    DebugExit(u32),
}

/// Receives [`PowerEvent`]s. Implemented by the machine, which stops or resets itself.
pub trait PowerControl: Send + Sync {
    /// Handles `event`. Called on the vCPU thread that caused it; must not block.
    fn power_event(&self, event: PowerEvent);
}
