//! A virtio device as a PCI function.

use std::sync::{Arc, Mutex};

use gasang_bus::{IrqLine, MsiVector, RateLimit};
use gasang_memory::GuestMemory;
use gasang_pci::{msix, Bar, BarKind, IoEvent, Msix, PciConfig, PciConfigError, PciDevice, PciId};
use virtio_queue::{Queue, QueueT};
use vm_memory::{GuestAddress, GuestMemoryBackend};

use super::common::{Action, CommonConfig, QueueSlot};
use crate::device::{Activation, ActiveQueue, VirtioDevice, TRANSPORT_FEATURES};
use crate::interrupt::VirtioInterrupt;

/// Where things are in BAR 0.
pub mod layout {
    /// The BAR's size.
    pub const BAR_SIZE: u64 = 0x8000;
    /// Common configuration.
    pub const COMMON: u64 = 0x0000;
    /// ISR status.
    pub const ISR: u64 = 0x1000;
    /// Device configuration.
    pub const DEVICE: u64 = 0x2000;
    /// Device configuration's extent.
    pub const DEVICE_LEN: u64 = 0x1000;
    /// Queue notifications: queue `i` at `NOTIFY + i * NOTIFY_MULTIPLIER`.
    pub const NOTIFY: u64 = 0x3000;
    /// Bytes between two queues' notification addresses.
    pub const NOTIFY_MULTIPLIER: u32 = 4;
    /// MSI-X table.
    pub const MSIX_TABLE: u64 = 0x4000;
    /// MSI-X pending bits.
    pub const MSIX_PBA: u64 = 0x6000;
}
use layout::*;

const VENDOR_CAP: u8 = 0x09;
const CAP_COMMON: u8 = 1;
const CAP_NOTIFY: u8 = 2;
const CAP_ISR: u8 = 3;
const CAP_DEVICE: u8 = 4;
const CAP_PCI_CFG: u8 = 5;
/// A guest can write bad values to the device all day: log a few.
static GUEST_LOG: RateLimit = RateLimit::new(10, 10);

/// The transport could not be built (a gasang bug, or the host ran out of eventfds).
#[derive(Debug, thiserror::Error)]
pub enum VirtioPciError {
    /// The configuration space layout was refused.
    #[error("cannot lay out the PCI configuration space")]
    Config(#[from] PciConfigError),
    /// A queue's eventfd could not be created.
    #[error("cannot create the queue notification eventfds")]
    EventFd(#[source] std::io::Error),
    /// The device needs more MSI-X vectors than the BAR has room for.
    #[error("{0} MSI-X vectors do not fit the BAR")]
    TooManyVectors(usize),
}

/// A virtio device on PCI.
pub struct VirtioPci {
    config: PciConfig,
    device: Box<dyn VirtioDevice>,
    common: CommonConfig,
    interrupt: Arc<VirtioInterrupt>,
    memory: GuestMemory,
    msix_cap: usize,
    pci_cfg_cap: usize,
}

impl std::fmt::Debug for VirtioPci {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtioPci")
            .field("type", &self.device.device_type())
            .field("status", &self.common.status)
            .finish()
    }
}

/// A vendor capability of `cfg_type` naming `length` bytes at `offset` of BAR 0.
fn vendor_cap(cfg_type: u8, offset: u64, length: u64, extra: &[u8]) -> Vec<u8> {
    let mut cap = vec![
        VENDOR_CAP,
        0,
        (16 + extra.len()) as u8,
        cfg_type,
        0,
        0,
        0,
        0,
    ];
    cap.extend((offset as u32).to_le_bytes());
    cap.extend((length as u32).to_le_bytes());
    cap.extend(extra);
    cap
}

impl VirtioPci {
    /// `device` as a PCI function, its MSI-X table over `vectors` (one per queue and
    /// one for configuration changes), `intx` as its INTA line, and the BAR at
    /// `bar_address`.
    pub fn new(
        device: Box<dyn VirtioDevice>,
        memory: GuestMemory,
        vectors: Vec<Box<dyn MsiVector>>,
        intx: Box<dyn IrqLine>,
        bar_address: u64,
    ) -> Result<Self, VirtioPciError> {
        let msix = Msix::new(vectors);
        if msix.table_size() > MSIX_PBA - MSIX_TABLE {
            return Err(VirtioPciError::TooManyVectors(msix.len()));
        }
        let mut config = PciConfig::new(pci_id(device.as_ref()), 1);
        config.add_bar(Bar {
            index: 0,
            kind: BarKind::Memory64,
            size: BAR_SIZE,
            prefetchable: false,
        })?;
        config.set_bar_address(0, bar_address);
        config.set_command(gasang_pci::COMMAND_MEMORY);
        let queues = device.queue_sizes().len() as u64;
        let multiplier = NOTIFY_MULTIPLIER.to_le_bytes();
        config.add_capability(
            &vendor_cap(CAP_COMMON, COMMON, super::common::COMMON_LEN, &[]),
            &[],
        )?;
        config.add_capability(
            &vendor_cap(
                CAP_NOTIFY,
                NOTIFY,
                queues * u64::from(NOTIFY_MULTIPLIER),
                &multiplier,
            ),
            &[],
        )?;
        config.add_capability(&vendor_cap(CAP_ISR, ISR, 1, &[]), &[])?;
        config.add_capability(&vendor_cap(CAP_DEVICE, DEVICE, DEVICE_LEN, &[]), &[])?;
        // The PCI configuration access capability: bar, offset, length and data
        // are the driver's to write.
        let writable = [
            0, 0, 0, 0, 0xff, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff,
        ];
        let pci_cfg_cap =
            config.add_capability(&vendor_cap(CAP_PCI_CFG, 0, 0, &[0; 4]), &writable)?;
        let (body, writable) = msix.capability(0, MSIX_TABLE as u32, MSIX_PBA as u32);
        let msix_cap = config.add_capability(&body, &writable)?;
        let offered = device.features() | TRANSPORT_FEATURES;
        let common =
            CommonConfig::new(offered, &device.queue_sizes()).map_err(VirtioPciError::EventFd)?;
        let interrupt = Arc::new(VirtioInterrupt::new(Arc::new(Mutex::new(msix)), intx));
        Ok(Self {
            config,
            device,
            common,
            interrupt,
            memory,
            msix_cap,
            pci_cfg_cap,
        })
    }

    fn vectors(&self) -> usize {
        self.interrupt.msix().len()
    }

    fn read_bar0(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        match offset {
            COMMON..ISR => self.common.read(offset, data, &self.interrupt),
            ISR => {
                if let Some(first) = data.first_mut() {
                    *first = self.interrupt.read_isr();
                }
            }
            DEVICE..NOTIFY => self.device.read_config(offset - DEVICE, data),
            MSIX_TABLE..MSIX_PBA => self.interrupt.msix().read_table(offset - MSIX_TABLE, data),
            MSIX_PBA..BAR_SIZE => self.interrupt.msix().read_pba(offset - MSIX_PBA, data),
            _ => {}
        }
    }

    fn write_bar0(&mut self, offset: u64, data: &[u8]) {
        match offset {
            COMMON..ISR => {
                let vectors = self.vectors();
                match self.common.write(offset, data, &self.interrupt, vectors) {
                    Action::None => {}
                    Action::Activate => self.activate(),
                    Action::Reset => self.reset(),
                }
            }
            DEVICE..NOTIFY => self.device.write_config(offset - DEVICE, data),
            NOTIFY..MSIX_TABLE => self.notify(offset - NOTIFY),
            MSIX_TABLE..MSIX_PBA => self.interrupt.msix().write_table(offset - MSIX_TABLE, data),
            _ => {}
        }
    }

    /// A notification that did not go through an ioeventfd (the software CPU, or
    /// KVM before the eventfd was registered).
    fn notify(&mut self, offset: u64) {
        let index = offset / u64::from(NOTIFY_MULTIPLIER);
        if let Some(slot) = self.common.queues.get(index as usize) {
            if let Err(e) = slot.event.write(1) {
                tracing::warn!("cannot signal virtio queue {index}: {e}");
            }
        } else if GUEST_LOG.allow() {
            tracing::debug!("the guest notified virtio queue {index}, which does not exist");
        }
    }

    fn activate(&mut self) {
        let queues = match self.active_queues() {
            Ok(queues) => queues,
            Err(index) => {
                if GUEST_LOG.allow() {
                    tracing::warn!(
                        "virtio device type {}: queue {index} is unusable",
                        self.device.device_type()
                    );
                }
                self.interrupt.needs_reset();
                return;
            }
        };
        let activation = Activation {
            memory: self.memory.clone(),
            queues,
            interrupt: self.interrupt.clone(),
            features: self.common.accepted,
        };
        if let Err(e) = self.device.activate(activation) {
            tracing::warn!(
                "virtio device type {} did not start: {e}",
                self.device.device_type()
            );
            self.interrupt.needs_reset();
        }
    }

    /// The enabled queues as the device will own them, or the index of one that is
    /// enabled but broken.
    fn active_queues(&self) -> Result<Vec<ActiveQueue>, u16> {
        let event_idx = self.common.accepted & crate::F_EVENT_IDX != 0;
        let mut queues = Vec::new();
        for (index, slot) in self.common.queues.iter().enumerate() {
            let index = index as u16;
            if !slot.queue.ready() {
                continue;
            }
            let queue = own_queue(slot, event_idx, &self.memory).ok_or(index)?;
            let event = slot.event.try_clone().map_err(|_| index)?;
            queues.push(ActiveQueue {
                index,
                queue,
                event,
                vector: slot.vector,
            });
        }
        Ok(queues)
    }

    fn reset(&mut self) {
        self.device.reset();
        self.common.reset();
        self.interrupt.reset();
    }

    /// A write landed in the PCI configuration access capability's data field:
    /// forward it to the BAR it names.
    fn pci_cfg_access(&mut self, write: bool) {
        // Capabilities start on register boundaries: bar, offset, length and data
        // are registers 1 to 4 of this one.
        let reg = self.pci_cfg_cap / 4;
        let bar = self.config.read_reg(reg + 1) as u8;
        let (offset, length) = (self.config.read_reg(reg + 2), self.config.read_reg(reg + 3));
        if bar != 0 || !matches!(length, 1 | 2 | 4) || offset % length != 0 {
            return;
        }
        let len = length as usize;
        let cap = self.pci_cfg_cap;
        if write {
            let data = self.config.read_reg(reg + 4).to_le_bytes();
            self.write_bar0(u64::from(offset), &data[..len]);
        } else {
            let mut bytes = [0u8; 4];
            self.read_bar0(u64::from(offset), &mut bytes[..len]);
            self.config.set_bytes(cap + 16, &bytes);
        }
    }
}

/// The identity virtio 1.x gives a device of `device`'s type (4.1.2.1).
fn pci_id(device: &dyn VirtioDevice) -> PciId {
    PciId {
        vendor: 0x1af4,
        device: 0x1040 + device.device_type(),
        revision: 1,
        class: device.pci_class(),
        subsystem_vendor: 0x1af4,
        subsystem: 0x1100,
    }
}

/// A copy of `slot`'s queue for the device, if its rings lie in guest RAM.
fn own_queue(slot: &QueueSlot, event_idx: bool, memory: &GuestMemory) -> Option<Queue> {
    let q = &slot.queue;
    let size = u64::from(q.size());
    let rings = [
        (q.desc_table(), 16 * size),
        (q.avail_ring(), 6 + 2 * size),
        (q.used_ring(), 6 + 8 * size),
    ];
    let in_ram = rings
        .iter()
        .all(|&(addr, len)| memory.check_range(GuestAddress(addr), len as usize));
    if slot.invalid || !in_ram {
        return None;
    }
    let mut queue = Queue::new(q.max_size()).ok()?;
    queue.try_set_size(q.size()).ok()?;
    queue
        .try_set_desc_table_address(GuestAddress(q.desc_table()))
        .ok()?;
    queue
        .try_set_avail_ring_address(GuestAddress(q.avail_ring()))
        .ok()?;
    queue
        .try_set_used_ring_address(GuestAddress(q.used_ring()))
        .ok()?;
    queue.set_event_idx(event_idx);
    queue.set_ready(true);
    Some(queue)
}

impl PciDevice for VirtioPci {
    fn config(&self) -> &PciConfig {
        &self.config
    }

    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }

    fn read_config(&mut self, reg: usize) -> u32 {
        if reg == (self.pci_cfg_cap + 16) / 4 {
            self.pci_cfg_access(false);
        }
        self.config.read_reg(reg)
    }

    fn write_config(&mut self, reg: usize, offset: usize, data: &[u8]) {
        self.config.write(reg, offset, data);
        // The message control word is the upper half of the capability's first
        // register (capabilities start on register boundaries).
        if reg == self.msix_cap / 4 && offset + data.len() > msix::CONTROL_OFFSET {
            let word = (self.config.read_reg(reg) >> 16) as u16;
            self.interrupt.msix().control_written(word);
        }
        if reg == (self.pci_cfg_cap + 16) / 4 {
            self.pci_cfg_access(true);
        }
    }

    fn read_bar(&mut self, bar: u8, offset: u64, data: &mut [u8]) {
        if bar == 0 {
            self.read_bar0(offset, data);
        } else {
            data.fill(0xff);
        }
    }

    fn write_bar(&mut self, bar: u8, offset: u64, data: &[u8]) {
        if bar == 0 {
            self.write_bar0(offset, data);
        }
    }

    fn ioevents(&self) -> Vec<IoEvent> {
        self.common
            .queues
            .iter()
            .enumerate()
            .filter_map(|(i, slot)| {
                Some(IoEvent {
                    bar: 0,
                    offset: NOTIFY + i as u64 * u64::from(NOTIFY_MULTIPLIER),
                    fd: slot.event.try_clone().ok()?,
                })
            })
            .collect()
    }
}
