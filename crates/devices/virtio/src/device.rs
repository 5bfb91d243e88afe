//! What every virtio device implements, and what the transport hands it when the
//! driver starts it.

use std::sync::Arc;

use gasang_memory::GuestMemory;
use virtio_queue::Queue;
use vmm_sys_util::eventfd::EventFd;

use crate::interrupt::VirtioInterrupt;

/// Feature bit: virtio 1.x (the only interface gasang offers).
pub const F_VERSION_1: u64 = 1 << 32;
/// Feature bit: indirect descriptor tables.
pub const F_INDIRECT_DESC: u64 = 1 << 28;
/// Feature bit: the used and available event indexes (notification suppression).
pub const F_EVENT_IDX: u64 = 1 << 29;
/// The features the transport offers for every device.
pub const TRANSPORT_FEATURES: u64 = F_VERSION_1 | F_INDIRECT_DESC | F_EVENT_IDX;

/// virtio device types.
pub mod device_type {
    /// Network card.
    pub const NET: u16 = 1;
    /// Block device.
    pub const BLOCK: u16 = 2;
    /// Console.
    pub const CONSOLE: u16 = 3;
    /// Entropy source.
    pub const RNG: u16 = 4;
    /// Socket device.
    pub const VSOCK: u16 = 19;
}

/// A queue the driver set up and enabled.
#[derive(Debug)]
pub struct ActiveQueue {
    /// Its index in the device.
    pub index: u16,
    /// The ring, as virtio-queue walks it.
    pub queue: Queue,
    /// Signalled when the driver notifies the queue.
    pub event: EventFd,
    /// The MSI-X vector its completions raise (0xffff: none).
    pub vector: u16,
}

/// What a device gets when the driver sets DRIVER_OK.
#[derive(Debug)]
pub struct Activation {
    /// Guest RAM, where the rings and buffers are.
    pub memory: GuestMemory,
    /// The enabled queues, by index.
    pub queues: Vec<ActiveQueue>,
    /// How the device interrupts the driver.
    pub interrupt: Arc<VirtioInterrupt>,
    /// The features the driver accepted.
    pub features: u64,
}

impl Activation {
    /// Takes queues 0 and 1: receive and transmit, in every device that has both.
    pub fn take_rx_tx(&mut self) -> Result<(ActiveQueue, ActiveQueue), ActivateError> {
        let mut queues = std::mem::take(&mut self.queues).into_iter();
        match (queues.next(), queues.next()) {
            (Some(rx), Some(tx)) if (rx.index, tx.index) == (0, 1) => Ok((rx, tx)),
            (Some(rx), _) if rx.index == 0 => Err(ActivateError::MissingQueue(1)),
            _ => Err(ActivateError::MissingQueue(0)),
        }
    }
}

/// The device refused to start.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    /// A queue the device needs is not enabled.
    #[error("queue {0} is not set up")]
    MissingQueue(u16),
    /// The device's I/O thread could not be started.
    #[error("cannot start the device's thread")]
    Thread(#[source] std::io::Error),
}

/// A virtio device behind a transport.
pub trait VirtioDevice: Send {
    /// Its virtio device type ([`device_type`]).
    fn device_type(&self) -> u16;

    /// Its PCI class code.
    fn pci_class(&self) -> u32;

    /// The largest size of each of its queues.
    fn queue_sizes(&self) -> Vec<u16>;

    /// Its device-specific feature bits (the transport adds its own).
    fn features(&self) -> u64;

    /// Reads its configuration space at `offset`; bytes beyond it read zero.
    fn read_config(&self, offset: u64, data: &mut [u8]);

    /// Writes its configuration space (most fields are read-only).
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}

    /// The driver set DRIVER_OK: start serving the queues.
    fn activate(&mut self, activation: Activation) -> Result<(), ActivateError>;

    /// The driver reset the device: stop serving, give back nothing.
    fn reset(&mut self);
}

/// Copies the bytes of `config` at `offset` into `data`, zeros beyond it.
pub fn read_config_bytes(config: &[u8], offset: u64, data: &mut [u8]) {
    data.fill(0);
    let Ok(start) = usize::try_from(offset) else {
        return;
    };
    if let Some(bytes) = config.get(start..) {
        let n = bytes.len().min(data.len());
        data[..n].copy_from_slice(&bytes[..n]);
    }
}
