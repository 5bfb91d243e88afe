//! The software-CPU backend: each vCPU runs on gasang's own x86-64 CPU
//! (`gasang-softcpu`) in its host thread, over the guest RAM every vCPU shares.
//!
//! The machine (memory map, boot path, devices, ACPI) is the one the KVM backend runs.
//! Port I/O and accesses outside RAM go to the machine's [`gasang_vcpu::IoHandler`],
//! synchronously, from the vCPU's thread, as KVM's exits do.
//!
//! The interrupt controllers are gasang's own (`gasang-irqchip`): a local APIC per vCPU
//! (with its timer, one-shot, periodic or TSC-deadline) and an I/O APIC for the
//! machine's interrupt lines; the PIT; and kvmclock with KVM's CPUID signature, so the
//! guest reads time without trapping. Application processors start through INIT and
//! start-up IPIs, in real mode, as on hardware.

mod boot;
mod clock;
mod interrupts;
mod kvmclock;
mod platform;
mod vcpu;

use std::sync::Arc;

use gasang_bus::{IrqLine, MsiVector};
use gasang_memory::GuestMemory;
use gasang_softcpu::system::ram::GuestRam;
use gasang_vcpu::{AccelError, AccelVm, Accelerator, BootCpuState, CpuTopology, Vcpu};
use interrupts::{Interrupts, SoftIrqLine, SoftMsi};
use vm_memory::{GuestMemoryBackend as _, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;

/// The software-CPU accelerator. It needs nothing from the host.
#[derive(Debug, Default)]
pub struct SoftAccelerator;

impl Accelerator for SoftAccelerator {
    fn name(&self) -> &'static str {
        "soft"
    }

    fn create_vm(
        &self,
        memory: &GuestMemory,
        topology: CpuTopology,
    ) -> Result<Arc<dyn AccelVm>, AccelError> {
        let ram = guest_ram(memory)?;
        let apic_ids: Vec<u8> = (0..topology.vcpus())
            .map(|i| u8::try_from(topology.apic_id(i)).unwrap_or(u8::MAX))
            .collect();
        // Measured now, not when the guest first needs it.
        let hz = clock::tsc_hz();
        tracing::debug!("host TSC: {hz} Hz");
        Ok(Arc::new(SoftVm {
            ram,
            memory: memory.clone(),
            topology,
            interrupts: Arc::new(Interrupts::new(&apic_ids)),
        }))
    }
}

/// Guest RAM as the software CPU reaches it: every region of `memory` (below the MMIO
/// hole, and above 4 GiB for a large guest).
fn guest_ram(memory: &GuestMemory) -> Result<GuestRam, AccelError> {
    let mut ranges = Vec::new();
    for region in memory.iter() {
        let len = usize::try_from(region.len()).expect("a mapped region fits the address space");
        let base = region
            .get_host_address(vm_memory::MemoryRegionAddress(0))
            .map_err(|e| AccelError::new("guest RAM has no host mapping", e))?;
        ranges.push((region.start_addr().0, base, len));
    }
    // SAFETY: each `base` is the start of a region's mmap (page-aligned), `len` bytes
    // long, readable and writable; vm-memory keeps it mapped while any clone of `memory`
    // lives, and every holder of this GuestRam or a share of it (the VM, each vCPU)
    // holds a clone of `memory` too. The regions come ascending and apart.
    Ok(unsafe { GuestRam::with_regions(&ranges) })
}

/// A VM on the software CPU.
#[derive(Debug)]
struct SoftVm {
    ram: GuestRam,
    /// Keeps `ram`'s mapping alive.
    memory: GuestMemory,
    topology: CpuTopology,
    interrupts: Arc<Interrupts>,
}

// SAFETY: `GuestRam` is a handle on shared guest memory (Send); sharing the VM between
// threads only ever calls `GuestRam::share`, which copies the pointer and clones an Arc.
unsafe impl Sync for SoftVm {}

impl AccelVm for SoftVm {
    fn irq_line(&self, gsi: u32) -> Box<dyn IrqLine> {
        Box::new(SoftIrqLine {
            interrupts: self.interrupts.clone(),
            gsi,
        })
    }

    fn msi_vector(&self) -> Result<Box<dyn MsiVector>, AccelError> {
        Ok(Box::new(SoftMsi {
            interrupts: self.interrupts.clone(),
            message: std::sync::Mutex::new(None),
        }))
    }

    fn register_ioevent(&self, _addr: u64, _fd: &EventFd) -> Result<(), AccelError> {
        // No exits here: the store reaches the device, which signals the eventfd.
        Ok(())
    }

    fn unregister_ioevent(&self, _addr: u64, _fd: &EventFd) -> Result<(), AccelError> {
        Ok(())
    }

    fn create_vcpu(&self, index: u32, boot: &BootCpuState) -> Result<Box<dyn Vcpu>, AccelError> {
        let ram = (self.ram.share(), self.memory.clone());
        Ok(Box::new(vcpu::SoftVcpu::new(
            index,
            ram,
            self.topology,
            self.interrupts.clone(),
            boot,
        )))
    }
}
