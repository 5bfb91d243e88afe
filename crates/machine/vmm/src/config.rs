//! What the user asked for, already validated.

use gasang_boot::BootConfig;
use gasang_memory::MemorySize;
use gasang_vcpu::CpuTopology;

pub use crate::pci::PciDevicesConfig;

/// What happens when the guest reboots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RebootAction {
    /// Stop, as after a poweroff (exit status 0).
    #[default]
    Exit,
    /// Reset the machine and boot again in the same process.
    Restart,
}

/// A virtual machine to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmConfig {
    /// Guest RAM.
    pub memory: MemorySize,
    /// vCPUs.
    pub topology: CpuTopology,
    /// Kernel, initrd and command line.
    pub boot: BootConfig,
    /// What a guest reboot does.
    pub on_reboot: RebootAction,
    /// The virtio devices on PCI.
    pub devices: PciDevicesConfig,
}
