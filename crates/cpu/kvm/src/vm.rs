//! A KVM virtual machine: memory slots, the in-kernel IRQ chip and PIT, interrupt lines.

use std::sync::Arc;

use gasang_bus::{IrqLine, MsiVector};
use gasang_memory::GuestMemory;
use gasang_vcpu::{AccelError, AccelVm, BootCpuState, CpuTopology, Vcpu};
use kvm_bindings::{kvm_pit_config, kvm_userspace_memory_region, CpuId, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{IoEventAddress, Kvm, NoDatamatch, VmFd};
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;

use crate::cpuid::vcpu_cpuid;
use crate::msi::GsiRoutes;
use crate::vcpu::KvmVcpu;

/// Three pages KVM needs for its real-mode TSS on Intel, in the MMIO hole below the BIOS.
const TSS_ADDRESS: usize = 0xfffb_d000;

/// A VM on KVM.
#[derive(Debug)]
pub struct KvmVm {
    fd: Arc<VmFd>,
    /// Held so the mappings behind the memory slots live as long as the VM.
    _memory: GuestMemory,
    supported_cpuid: CpuId,
    topology: CpuTopology,
    routes: Arc<GsiRoutes>,
}

impl KvmVm {
    /// Creates the VM, maps `memory` into it and creates the in-kernel devices.
    pub fn new(kvm: &Kvm, memory: &GuestMemory, topology: CpuTopology) -> Result<Self, AccelError> {
        let fd = kvm
            .create_vm()
            .map_err(|e| AccelError::new("KVM_CREATE_VM failed", e))?;
        let memory = memory.clone();
        for (slot, region) in memory.iter().enumerate() {
            let slot = u32::try_from(slot).expect("guest memory has a handful of regions");
            let region = kvm_userspace_memory_region {
                slot,
                guest_phys_addr: region.start_addr().0,
                memory_size: region.len(),
                userspace_addr: region.as_ptr() as u64,
                flags: 0,
            };
            // SAFETY: the region is a live mapping owned by `memory`, which this VM holds
            // (`_memory`) for as long as the VM fd exists; regions from vm-memory do not
            // overlap, and each gets its own slot number.
            unsafe { fd.set_user_memory_region(region) }
                .map_err(|e| AccelError::new("KVM_SET_USER_MEMORY_REGION failed", e))?;
        }
        fd.set_tss_address(TSS_ADDRESS)
            .map_err(|e| AccelError::new("KVM_SET_TSS_ADDR failed", e))?;
        fd.create_irq_chip()
            .map_err(|e| AccelError::new("KVM_CREATE_IRQCHIP failed", e))?;
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        fd.create_pit2(pit)
            .map_err(|e| AccelError::new("KVM_CREATE_PIT2 failed", e))?;
        let supported_cpuid = kvm
            .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
            .map_err(|e| AccelError::new("KVM_GET_SUPPORTED_CPUID failed", e))?;
        let fd = Arc::new(fd);
        Ok(Self {
            routes: Arc::new(GsiRoutes::new(fd.clone())),
            fd,
            _memory: memory,
            supported_cpuid,
            topology,
        })
    }
}

impl AccelVm for KvmVm {
    fn irq_line(&self, gsi: u32) -> Box<dyn IrqLine> {
        Box::new(KvmIrqLine {
            vm: self.fd.clone(),
            gsi,
        })
    }

    fn msi_vector(&self) -> Result<Box<dyn MsiVector>, AccelError> {
        self.routes.vector()
    }

    fn register_ioevent(&self, addr: u64, fd: &EventFd) -> Result<(), AccelError> {
        // Any access length (no datamatch): the driver writes the queue index.
        self.fd
            .register_ioevent(fd, &IoEventAddress::Mmio(addr), NoDatamatch)
            .map_err(|e| AccelError::new(format!("KVM_IOEVENTFD at {addr:#x} failed"), e))
    }

    fn unregister_ioevent(&self, addr: u64, fd: &EventFd) -> Result<(), AccelError> {
        self.fd
            .unregister_ioevent(fd, &IoEventAddress::Mmio(addr), NoDatamatch)
            .map_err(|e| AccelError::new(format!("KVM_IOEVENTFD removal at {addr:#x} failed"), e))
    }

    fn create_vcpu(&self, index: u32, boot: &BootCpuState) -> Result<Box<dyn Vcpu>, AccelError> {
        let cpuid = vcpu_cpuid(&self.supported_cpuid, self.topology, index)
            .map_err(|e| AccelError::new("cannot build the vCPU's CPUID", e))?;
        let vcpu = KvmVcpu::new(&self.fd, index, &cpuid, boot)?;
        Ok(Box::new(vcpu))
    }
}

/// A GSI of the in-kernel IOAPIC (and PIC, for GSIs below 16).
struct KvmIrqLine {
    vm: Arc<VmFd>,
    gsi: u32,
}

impl IrqLine for KvmIrqLine {
    fn set_level(&self, high: bool) {
        if let Err(e) = self.vm.set_irq_line(self.gsi, high) {
            // Only fails for a bad GSI, which gasang's own device map rules out.
            tracing::error!("KVM_IRQ_LINE {} failed: {e}", self.gsi);
        }
    }
}
