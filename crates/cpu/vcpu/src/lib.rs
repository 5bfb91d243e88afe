//! What a CPU backend ("accelerator") must provide to run a gasang machine.
//!
//! The machine (memory map, boot path, devices, ACPI) is the same for every backend.
//! A backend turns guest RAM plus a [`BootCpuState`] into running vCPUs, hands every
//! port-I/O and MMIO access to the machine's [`IoHandler`], and drives interrupt lines.
//!
//! - KVM (`gasang-kvm`): hardware-assisted; the in-kernel IRQ chip, PIT and LAPICs.
//! - The software CPU: executes guest instructions itself, with user-space interrupt
//!   controllers.

mod accel;
mod state;
pub mod topology;

pub use accel::{AccelError, AccelVm, Accelerator, IoHandler, Kick, Vcpu, VcpuError, VcpuExit};
pub use state::{BootCpuState, Segment};
pub use topology::{CpuTopology, TopologyError, MAX_VCPUS};
