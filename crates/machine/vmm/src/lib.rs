//! The gasang machine, shared by every CPU backend.
//!
//! [`run`] builds a [`Machine`](machine) from a [`VmConfig`] on an
//! [`Accelerator`](gasang_vcpu::Accelerator): guest memory, ACPI tables, the kernel,
//! the legacy devices on the port bus, the virtio devices on PCI (each with an I/O
//! thread of its own), one thread per vCPU. The calling thread becomes
//! the VMM thread: an event loop (event-manager) for console input and signals. It
//! returns when the guest powers off, resets, panics or crashes, or a signal or a
//! control request ([`ControlServer`]) stops it.

mod config;
mod console;
mod console_socket;
mod control;
mod devices;
mod exit;
mod io;
mod machine;
mod pci;
mod signals;
mod vcpus;

pub use config::{PciDevicesConfig, RebootAction, VmConfig};
pub use console::{Console, ConsoleError};
pub use console_socket::SCROLLBACK_BYTES;
pub use control::ControlServer;
pub use devices::acpi_machine;
pub use exit::ExitReason;
pub use gasang_bus::RangeTraps;
pub use gasang_virtio::block::{AioConfig, BlockConfig};
pub use gasang_virtio::net::{NetBackendConfig, NetConfig};
pub use gasang_virtio::vsock::{VsockConfig, MIN_GUEST_CID};
pub use io::TrapCounts;
pub use machine::{run, MachineHost, RunReport, VmmError};
pub use pci::host as pci_host;
pub use vcpus::error_chain;
