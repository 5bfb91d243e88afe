//! PCI for gasang guests: the root bus behind a host bridge, reached through both
//! configuration mechanisms (ports 0xCF8/0xCFC and ECAM), type-0 configuration
//! spaces with BARs and capabilities, and MSI-X.
//!
//! Nothing here knows a CPU backend: BARs reach the machine's MMIO bus through a
//! [`BarMapper`], and MSI-X vectors are [`gasang_bus::MsiVector`]s.

mod access;
mod config;
pub mod msix;
mod root;

pub use access::{PciConfigIo, PciConfigMmio, CONFIG_IO_LEN, ECAM_BUS_SIZE};
pub use config::{
    Bar, BarKind, BarMapping, PciConfig, PciConfigError, PciId, COMMAND_INTX_DISABLE, COMMAND_IO,
    COMMAND_MASTER, COMMAND_MEMORY, CONFIG_SIZE,
};
pub use msix::Msix;
pub use root::{
    BarMapper, HostBridge, IoEvent, PciAddress, PciBusFull, PciDevice, PciRoot, SharedPciDevice,
    SLOTS,
};
