//! The common configuration structure of the virtio-pci transport (virtio 1.x,
//! 4.1.4.3): feature negotiation, the device status and each queue's set-up.

use virtio_queue::{Queue, QueueT};
use vm_memory::GuestAddress;
use vmm_sys_util::eventfd::EventFd;

use crate::interrupt::{VirtioInterrupt, NO_VECTOR};

/// Device status: the driver found the device.
pub const STATUS_ACKNOWLEDGE: u8 = 1;
/// Device status: the driver knows how to drive it.
pub const STATUS_DRIVER: u8 = 2;
/// Device status: the driver is ready; the device may use its queues.
pub const STATUS_DRIVER_OK: u8 = 4;
/// Device status: feature negotiation is complete.
pub const STATUS_FEATURES_OK: u8 = 8;
/// Device status: the device hit an error and needs a reset.
pub const STATUS_NEEDS_RESET: u8 = 0x40;
/// Device status: the driver gave up on the device.
pub const STATUS_FAILED: u8 = 0x80;

/// Length of the common configuration structure.
pub const COMMON_LEN: u64 = 0x38;

/// One queue as the driver sets it up.
#[derive(Debug)]
pub struct QueueSlot {
    /// Size, addresses and ready flag.
    pub queue: Queue,
    /// Its MSI-X vector.
    pub vector: u16,
    /// Signalled by the driver's notifications.
    pub event: EventFd,
    /// The driver wrote a value the queue refused (a bad size, a misaligned ring).
    pub invalid: bool,
}

/// What a write to the common configuration asks of the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing beyond the register.
    None,
    /// DRIVER_OK was set: start the device.
    Activate,
    /// Zero was written to the status: reset the device.
    Reset,
}

/// The common configuration registers.
#[derive(Debug)]
pub struct CommonConfig {
    /// Offered features (device and transport).
    pub offered: u64,
    /// Features the driver accepted.
    pub accepted: u64,
    /// Device status.
    pub status: u8,
    device_feature_select: u32,
    driver_feature_select: u32,
    queue_select: u16,
    /// The queues.
    pub queues: Vec<QueueSlot>,
}

/// The field at `offset`: its start and width in bytes.
fn field(offset: u64) -> Option<(u64, u64)> {
    Some(match offset {
        0x00..0x10 => (offset & !3, 4),
        0x10..0x14 => (offset & !1, 2),
        0x14 | 0x15 => (offset, 1),
        0x16..0x20 => (offset & !1, 2),
        0x20..0x38 => (offset & !7, 8),
        _ => return None,
    })
}

impl CommonConfig {
    /// Registers for a device offering `offered`, with queues of `sizes`.
    pub fn new(offered: u64, sizes: &[u16]) -> Result<Self, std::io::Error> {
        let queues = sizes
            .iter()
            .map(|&size| {
                Ok(QueueSlot {
                    queue: Queue::new(size).map_err(|e| std::io::Error::other(e.to_string()))?,
                    vector: NO_VECTOR,
                    event: EventFd::new(libc::EFD_NONBLOCK)?,
                    invalid: false,
                })
            })
            .collect::<Result<_, std::io::Error>>()?;
        Ok(Self {
            offered,
            accepted: 0,
            status: 0,
            device_feature_select: 0,
            driver_feature_select: 0,
            queue_select: 0,
            queues,
        })
    }

    fn selected(&self) -> Option<&QueueSlot> {
        self.queues.get(usize::from(self.queue_select))
    }

    fn value(&self, start: u64, interrupt: &VirtioInterrupt) -> u64 {
        let window = |features: u64, select: u32| match select {
            0 => features & 0xffff_ffff,
            1 => features >> 32,
            _ => 0,
        };
        let queue = self.selected();
        let q = |f: fn(&QueueSlot) -> u64| queue.map_or(0, f);
        match start {
            0x00 => u64::from(self.device_feature_select),
            0x04 => window(self.offered, self.device_feature_select),
            0x08 => u64::from(self.driver_feature_select),
            0x0c => window(self.accepted, self.driver_feature_select),
            0x10 => u64::from(interrupt.config_vector()),
            0x12 => self.queues.len() as u64,
            0x14 => {
                let needs_reset = if interrupt.reset_needed() {
                    STATUS_NEEDS_RESET
                } else {
                    0
                };
                u64::from(self.status | needs_reset)
            }
            0x15 => 0,
            0x16 => u64::from(self.queue_select),
            0x18 => q(|s| u64::from(s.queue.size())),
            0x1a => queue.map_or(u64::from(NO_VECTOR), |s| u64::from(s.vector)),
            0x1c => q(|s| u64::from(s.queue.ready())),
            0x1e => u64::from(self.queue_select),
            0x20 => q(|s| s.queue.desc_table()),
            0x28 => q(|s| s.queue.avail_ring()),
            0x30 => q(|s| s.queue.used_ring()),
            _ => 0,
        }
    }

    /// Reads `data` at `offset`. Accesses that straddle fields read zeros.
    pub fn read(&self, offset: u64, data: &mut [u8], interrupt: &VirtioInterrupt) {
        data.fill(0);
        let Some((start, width)) = field(offset) else {
            return;
        };
        let at = offset - start;
        if at + data.len() as u64 > width {
            return;
        }
        let bytes = self.value(start, interrupt).to_le_bytes();
        data.copy_from_slice(&bytes[at as usize..at as usize + data.len()]);
    }

    /// Writes `data` at `offset`, with `vectors` MSI-X vectors in the function.
    pub fn write(
        &mut self,
        offset: u64,
        data: &[u8],
        interrupt: &VirtioInterrupt,
        vectors: usize,
    ) -> Action {
        let Some((start, width)) = field(offset) else {
            return Action::None;
        };
        let at = offset - start;
        if at + data.len() as u64 > width {
            return Action::None;
        }
        let mut bytes = self.value(start, interrupt).to_le_bytes();
        bytes[at as usize..at as usize + data.len()].copy_from_slice(data);
        let value = u64::from_le_bytes(bytes);
        let vector = |v: u64| {
            if (v as usize) < vectors {
                v as u16
            } else {
                NO_VECTOR
            }
        };
        match start {
            0x00 => self.device_feature_select = value as u32,
            0x08 => self.driver_feature_select = value as u32,
            0x0c => self.accept(value as u32),
            0x10 => interrupt.set_config_vector(vector(value)),
            0x14 => return self.set_status(value as u8),
            0x16 => self.queue_select = value as u16,
            0x18..0x38 => self.write_queue(start, value, vector(value)),
            _ => {}
        }
        Action::None
    }

    fn accept(&mut self, window: u32) {
        if self.status & STATUS_FEATURES_OK != 0 {
            return;
        }
        let shift = match self.driver_feature_select {
            0 => 0,
            1 => 32,
            _ => return,
        };
        self.accepted = (self.accepted & !(0xffff_ffff << shift)) | u64::from(window) << shift;
    }

    fn set_status(&mut self, status: u8) -> Action {
        if status == 0 {
            return Action::Reset;
        }
        let added = status & !self.status;
        let mut status = status;
        if added & STATUS_FEATURES_OK != 0 {
            let acceptable =
                self.accepted & !self.offered == 0 && self.accepted & crate::F_VERSION_1 != 0;
            if !acceptable {
                // The driver reads FEATURES_OK back and gives up.
                status &= !STATUS_FEATURES_OK;
            }
        }
        self.status = status;
        let ready = status & STATUS_FEATURES_OK != 0 && status & STATUS_FAILED == 0;
        if added & STATUS_DRIVER_OK != 0 && ready {
            return Action::Activate;
        }
        Action::None
    }

    fn write_queue(&mut self, start: u64, value: u64, vector: u16) {
        let driver_ok = self.status & STATUS_DRIVER_OK != 0;
        let Some(slot) = self.queues.get_mut(usize::from(self.queue_select)) else {
            return;
        };
        // A queue's set-up is frozen once it is enabled (or the device started).
        if start != 0x1a && (slot.queue.ready() || driver_ok) {
            return;
        }
        if start == 0x1a {
            slot.vector = vector;
            return;
        }
        // The try_ setters refuse bad sizes and misaligned rings without logging
        // (the guest could make that a flood); the queue then fails validation.
        let queue = &mut slot.queue;
        let refused = match start {
            0x18 => queue.try_set_size(value as u16).is_err(),
            0x1c => {
                queue.set_ready(value & 1 == 1);
                false
            }
            0x20 => queue
                .try_set_desc_table_address(GuestAddress(value))
                .is_err(),
            0x28 => queue
                .try_set_avail_ring_address(GuestAddress(value))
                .is_err(),
            0x30 => queue
                .try_set_used_ring_address(GuestAddress(value))
                .is_err(),
            _ => false,
        };
        slot.invalid |= refused;
    }

    /// Back to the state after power-on; the queues' eventfds stay.
    pub fn reset(&mut self) {
        self.accepted = 0;
        self.status = 0;
        self.device_feature_select = 0;
        self.driver_feature_select = 0;
        self.queue_select = 0;
        for slot in &mut self.queues {
            slot.queue.reset();
            slot.vector = NO_VECTOR;
            slot.invalid = false;
        }
    }
}
