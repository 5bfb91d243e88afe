//! The KVM backend: hardware-assisted full virtualization.
//!
//! KVM runs guest code on the host CPU (VT-x / AMD-V) and keeps the interrupt
//! controllers (PIC, IOAPIC, LAPICs) and the PIT in the kernel. gasang sees only the
//! exits it must emulate: port I/O and MMIO to its devices, shutdowns and errors.
//!
//! Every `kvm_ioctls` call of gasang lives in this crate.

mod cpuid;
mod kick;
mod msi;
mod regs;
mod vcpu;
mod vm;

use std::sync::Arc;

use gasang_memory::GuestMemory;
use gasang_vcpu::{AccelError, AccelVm, Accelerator, CpuTopology};
use kvm_ioctls::{Cap, Kvm};

pub use vm::KvmVm;

/// Why KVM cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KvmError {
    /// No /dev/kvm.
    #[error("/dev/kvm does not exist: this host has no KVM (load kvm_intel or kvm_amd, enable virtualization in the firmware, or use --accel soft)")]
    NoDevice,
    /// /dev/kvm exists but this user may not open it.
    #[error("permission denied opening /dev/kvm: add this user to the 'kvm' group (or run as root), or use --accel soft")]
    NoPermission,
    /// Any other failure to open it.
    #[error("cannot open /dev/kvm")]
    Open(#[source] kvm_ioctls::Error),
    /// The kernel's KVM API is not the one gasang speaks.
    #[error("KVM API version {0} is not supported (gasang needs 12)")]
    ApiVersion(i32),
    /// A capability gasang relies on is missing.
    #[error("this host's KVM lacks the {0} capability gasang needs")]
    MissingCap(&'static str),
}

/// The KVM accelerator: an open /dev/kvm.
#[derive(Debug)]
pub struct KvmAccelerator {
    kvm: Kvm,
}

impl KvmAccelerator {
    /// Opens /dev/kvm and checks that it can run a gasang machine.
    pub fn new() -> Result<Self, KvmError> {
        let kvm = Kvm::new().map_err(|e| match e.errno() {
            libc::ENOENT | libc::ENODEV | libc::ENXIO => KvmError::NoDevice,
            libc::EACCES | libc::EPERM => KvmError::NoPermission,
            _ => KvmError::Open(e),
        })?;
        let version = kvm.get_api_version();
        if version != 12 {
            return Err(KvmError::ApiVersion(version));
        }
        let needed = [
            (Cap::Irqchip, "IRQCHIP"),
            (Cap::UserMemory, "USER_MEMORY"),
            (Cap::Pit2, "PIT2"),
            (Cap::ImmediateExit, "IMMEDIATE_EXIT"),
            (Cap::ExtCpuid, "EXT_CPUID"),
            (Cap::IrqRouting, "IRQ_ROUTING"),
            (Cap::Irqfd, "IRQFD"),
            (Cap::Ioeventfd, "IOEVENTFD"),
        ];
        for (cap, name) in needed {
            if !kvm.check_extension(cap) {
                return Err(KvmError::MissingCap(name));
            }
        }
        Ok(Self { kvm })
    }
}

impl Accelerator for KvmAccelerator {
    fn name(&self) -> &'static str {
        "kvm"
    }

    fn create_vm(
        &self,
        memory: &GuestMemory,
        topology: CpuTopology,
    ) -> Result<Arc<dyn AccelVm>, AccelError> {
        Ok(Arc::new(KvmVm::new(&self.kvm, memory, topology)?))
    }
}
