//! The PC's legacy devices, emulated by trapping their port I/O (trap-and-emulate).
//!
//! Each device is a pure state machine behind [`gasang_bus::BusDevice`]: it holds no
//! file descriptors or threads and knows nothing of KVM. Its side effects come in
//! through injected interfaces: [`IrqLine`](gasang_bus::IrqLine) for interrupts,
//! [`PowerControl`] for poweroff/reset/panic, [`Clock`] for time, `Write` for output.
//!
//! [`ports`] is the device map: where each device sits in port space and its IRQ.

pub mod acpi_pm;
mod clock;
mod cmos;
mod debug_exit;
mod i8042;
pub mod ports;
mod power;
mod pvpanic;
mod serial;

pub use acpi_pm::AcpiPm;
pub use clock::{Clock, HostClock};
pub use cmos::Cmos;
pub use debug_exit::DebugExit;
pub use i8042::I8042;
pub use power::{PowerControl, PowerEvent};
pub use pvpanic::PvPanic;
pub use serial::Serial;

/// Reads a little-endian value of up to 8 bytes from an access's data.
fn le_value(data: &[u8]) -> u64 {
    data.iter()
        .rev()
        .fold(0, |acc, b| (acc << 8) | u64::from(*b))
}

/// Test helpers shared by the devices' unit tests.
#[cfg(test)]
mod test_util {
    use std::sync::Mutex;

    use crate::{PowerControl, PowerEvent};

    /// Records every power event a device raises.
    #[derive(Default)]
    pub struct Events(pub Mutex<Vec<PowerEvent>>);

    impl PowerControl for Events {
        fn power_event(&self, event: PowerEvent) {
            self.0.lock().unwrap().push(event);
        }
    }
}
