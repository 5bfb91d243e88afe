//! virtio 1.x devices over the PCI transport.
//!
//! - [`VirtioPci`] is the transport: a PCI function whose BAR holds the virtio
//!   registers, with MSI-X (and INTx without it).
//! - A [`VirtioDevice`] is the device behind it. When the driver starts it, it runs
//!   its queues on an I/O thread of its own ([`worker`]), woken by the queues'
//!   eventfds; a vCPU never waits for the device's I/O.
//! - The rings are walked by the rust-vmm `virtio-queue` crate.

pub mod block;
pub mod console;
mod device;
mod interrupt;
pub mod net;
mod queue;
pub mod rng;
mod transport;
pub mod vsock;
pub mod worker;

pub use device::{
    device_type, read_config_bytes, ActivateError, Activation, ActiveQueue, VirtioDevice,
    F_EVENT_IDX, F_INDIRECT_DESC, F_VERSION_1, TRANSPORT_FEATURES,
};
pub use interrupt::{VirtioInterrupt, ISR_CONFIG, ISR_QUEUE, NO_VECTOR};
pub use transport::*;
