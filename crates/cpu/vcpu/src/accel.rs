//! The backend traits.

use std::error::Error;
use std::sync::Arc;

use gasang_bus::{IrqLine, MsiVector};
use gasang_memory::GuestMemory;
use vmm_sys_util::eventfd::EventFd;

use crate::{BootCpuState, CpuTopology};

/// A backend error, with the backend's own error as its source.
#[derive(Debug, thiserror::Error)]
#[error("{what}")]
pub struct AccelError {
    what: String,
    #[source]
    source: Option<Box<dyn Error + Send + Sync>>,
}

impl AccelError {
    /// An error described by `what`, caused by `source`.
    pub fn new(what: impl Into<String>, source: impl Error + Send + Sync + 'static) -> Self {
        Self {
            what: what.into(),
            source: Some(Box::new(source)),
        }
    }

    /// An error with no underlying cause.
    pub fn msg(what: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            source: None,
        }
    }
}

/// The machine's side of guest I/O: the port and MMIO buses.
///
/// A backend calls these from the vCPU thread that made the access, synchronously.
pub trait IoHandler: Send + Sync {
    /// An `in` from `port`: fill `data`.
    fn pio_read(&self, port: u16, data: &mut [u8]);
    /// An `out` to `port`.
    fn pio_write(&self, port: u16, data: &[u8]);
    /// A load from an address that is not RAM: fill `data`.
    fn mmio_read(&self, addr: u64, data: &mut [u8]);
    /// A store to an address that is not RAM.
    fn mmio_write(&self, addr: u64, data: &[u8]);
}

/// Why [`Vcpu::run`] returned to the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VcpuExit {
    /// The CPU shut down: a triple fault. On real hardware the board resets.
    TripleFault,
    /// Another thread kicked this vCPU (to pause it or stop the machine).
    Interrupted,
    /// The guest asked the hypervisor for a reset (e.g. a PSCI-like system event).
    Reset,
    /// The guest asked the hypervisor to power off.
    PowerOff,
}

/// A vCPU stopped for a reason the machine cannot continue from.
#[derive(Debug, thiserror::Error)]
pub enum VcpuError {
    /// The backend failed to run the vCPU at all.
    #[error("vCPU {index} could not run")]
    Run {
        /// Which vCPU.
        index: u32,
        /// The backend's error.
        #[source]
        source: Box<dyn Error + Send + Sync>,
    },
    /// The backend could not emulate what the guest did.
    #[error("vCPU {index} stopped: {reason}")]
    Internal {
        /// Which vCPU.
        index: u32,
        /// What the backend reported.
        reason: String,
    },
}

/// Makes a running vCPU return [`VcpuExit::Interrupted`] soon, from any thread.
pub trait Kick: Send + Sync {
    /// Interrupts the vCPU. Harmless if it is not running.
    fn kick(&self);
}

/// One virtual CPU, owned by its own host thread.
pub trait Vcpu: Send {
    /// This vCPU's index (0 is the bootstrap processor).
    fn index(&self) -> u32;

    /// Runs guest code until something the machine must act on.
    fn run(&mut self, io: &dyn IoHandler) -> Result<VcpuExit, VcpuError>;

    /// A handle other threads use to interrupt [`Vcpu::run`].
    fn kicker(&self) -> Arc<dyn Kick>;
}

/// A virtual machine on one backend: guest RAM mapped, interrupt controllers created.
pub trait AccelVm: Send + Sync {
    /// The interrupt line for global system interrupt `gsi`.
    fn irq_line(&self, gsi: u32) -> Box<dyn IrqLine>;

    /// A new MSI vector (one MSI-X table entry of a device).
    fn msi_vector(&self) -> Result<Box<dyn MsiVector>, AccelError>;

    /// Makes a guest write to `addr` signal `fd` without running the machine's MMIO
    /// handler (KVM's ioeventfd). A backend that has no such path does nothing: the
    /// write then reaches the device, which signals `fd` itself.
    fn register_ioevent(&self, addr: u64, fd: &EventFd) -> Result<(), AccelError>;

    /// Undoes [`AccelVm::register_ioevent`].
    fn unregister_ioevent(&self, addr: u64, fd: &EventFd) -> Result<(), AccelError>;

    /// Creates vCPU `index`. The bootstrap processor (index 0) starts at `boot`;
    /// the others wait for INIT and SIPI, as on real hardware.
    fn create_vcpu(&self, index: u32, boot: &BootCpuState) -> Result<Box<dyn Vcpu>, AccelError>;
}

/// A CPU backend.
pub trait Accelerator {
    /// The name users select it by (`--accel NAME`).
    fn name(&self) -> &'static str;

    /// Creates a VM over `memory` with `topology`'s vCPUs.
    fn create_vm(
        &self,
        memory: &GuestMemory,
        topology: CpuTopology,
    ) -> Result<Arc<dyn AccelVm>, AccelError>;
}
