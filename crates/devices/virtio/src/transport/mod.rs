//! The virtio-pci modern transport (virtio 1.x, 4.1): one 64-bit memory BAR holding
//! the common configuration, the ISR status, the device configuration, the queue
//! notification addresses and the MSI-X table, described by vendor capabilities.

mod common;
mod pci;

pub use common::{
    CommonConfig, STATUS_ACKNOWLEDGE, STATUS_DRIVER, STATUS_DRIVER_OK, STATUS_FAILED,
    STATUS_FEATURES_OK, STATUS_NEEDS_RESET,
};
pub use pci::{layout, VirtioPci, VirtioPciError};
