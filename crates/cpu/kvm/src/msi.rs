//! MSI on KVM: each vector is a GSI routed to its message and an irqfd, so that a
//! device thread raises it with one eventfd write and no vCPU is involved.
//!
//! KVM replaces the whole routing table at once, so the VM keeps it: the in-kernel
//! PIC and IOAPIC routes KVM starts with, then one MSI route per programmed vector.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use gasang_bus::{lock, MsiMessage, MsiVector};
use gasang_vcpu::AccelError;
use kvm_bindings::{
    kvm_irq_routing_entry, KvmIrqRouting, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER,
    KVM_IRQCHIP_PIC_SLAVE, KVM_IRQ_ROUTING_IRQCHIP, KVM_IRQ_ROUTING_MSI,
};
use kvm_ioctls::VmFd;
use vmm_sys_util::eventfd::EventFd;

/// IOAPIC inputs: GSIs below this are the irqchip's; MSI GSIs come after.
const IOAPIC_PINS: u32 = 24;

#[derive(Debug, Default)]
struct Table {
    next_gsi: u32,
    msi: BTreeMap<u32, MsiMessage>,
}

/// The VM's GSI routing table.
#[derive(Debug)]
pub struct GsiRoutes {
    vm: Arc<VmFd>,
    table: Mutex<Table>,
}

fn irqchip(gsi: u32, chip: u32, pin: u32) -> kvm_irq_routing_entry {
    let mut entry = kvm_irq_routing_entry {
        gsi,
        type_: KVM_IRQ_ROUTING_IRQCHIP,
        ..Default::default()
    };
    entry.u.irqchip.irqchip = chip;
    entry.u.irqchip.pin = pin;
    entry
}

fn msi(gsi: u32, message: MsiMessage) -> kvm_irq_routing_entry {
    let mut entry = kvm_irq_routing_entry {
        gsi,
        type_: KVM_IRQ_ROUTING_MSI,
        ..Default::default()
    };
    entry.u.msi.address_lo = message.address as u32;
    entry.u.msi.address_hi = (message.address >> 32) as u32;
    entry.u.msi.data = message.data;
    entry
}

impl GsiRoutes {
    /// The table of `vm`, as KVM_CREATE_IRQCHIP left it.
    pub fn new(vm: Arc<VmFd>) -> Self {
        let table = Table {
            next_gsi: IOAPIC_PINS,
            msi: BTreeMap::new(),
        };
        Self {
            vm,
            table: Mutex::new(table),
        }
    }

    /// Writes the table to KVM: KVM's default irqchip routes, then the MSIs.
    fn commit(&self, table: &Table) -> Result<(), kvm_ioctls::Error> {
        let mut entries = Vec::new();
        for gsi in 0..IOAPIC_PINS {
            if gsi < 16 {
                let chip = if gsi < 8 {
                    KVM_IRQCHIP_PIC_MASTER
                } else {
                    KVM_IRQCHIP_PIC_SLAVE
                };
                entries.push(irqchip(gsi, chip, gsi % 8));
            }
            entries.push(irqchip(gsi, KVM_IRQCHIP_IOAPIC, gsi));
        }
        entries.extend(table.msi.iter().map(|(&gsi, &m)| msi(gsi, m)));
        let routing = KvmIrqRouting::from_entries(&entries)
            .map_err(|_| kvm_ioctls::Error::new(libc::E2BIG))?;
        self.vm.set_gsi_routing(&routing)
    }

    /// A new vector: a GSI with an irqfd.
    pub fn vector(self: &Arc<Self>) -> Result<Box<dyn MsiVector>, AccelError> {
        let gsi = {
            let mut table = lock(&self.table);
            table.next_gsi += 1;
            table.next_gsi - 1
        };
        let fd = EventFd::new(libc::EFD_NONBLOCK)
            .map_err(|e| AccelError::new("cannot create an irqfd", e))?;
        self.vm
            .register_irqfd(&fd, gsi)
            .map_err(|e| AccelError::new(format!("KVM_IRQFD for GSI {gsi} failed"), e))?;
        Ok(Box::new(KvmMsi {
            routes: self.clone(),
            gsi,
            fd,
        }))
    }

    fn route(&self, gsi: u32, message: Option<MsiMessage>) {
        let mut table = lock(&self.table);
        let changed = match message {
            Some(m) => table.msi.insert(gsi, m) != Some(m),
            None => table.msi.remove(&gsi).is_some(),
        };
        if changed {
            if let Err(e) = self.commit(&table) {
                tracing::error!("KVM_SET_GSI_ROUTING failed: {e}");
            }
        }
    }
}

/// One MSI vector on KVM.
struct KvmMsi {
    routes: Arc<GsiRoutes>,
    gsi: u32,
    fd: EventFd,
}

impl MsiVector for KvmMsi {
    fn set_message(&self, message: Option<MsiMessage>) {
        self.routes.route(self.gsi, message);
    }

    fn trigger(&self) {
        if let Err(e) = self.fd.write(1) {
            tracing::error!("cannot raise MSI GSI {}: {e}", self.gsi);
        }
    }
}

impl Drop for KvmMsi {
    fn drop(&mut self) {
        let _ = self.routes.vm.unregister_irqfd(&self.fd, self.gsi);
    }
}
