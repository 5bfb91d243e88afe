//! The types gasangd's API and the `gasang` CLI share. A leaf crate: neither the
//! daemon nor the CLI reaches the VMM except through these types and
//! `gasang-control`.

pub mod definition;
mod launch;
pub mod vm;

pub use definition::{
    Accel, ConsoleKind, DefinitionError, DiskDefinition, ExitPolicy, NetDefinition, NetMode,
    VmDefinition, VsockDefinition,
};
pub use vm::{ApiError, ErrorCode, Event, EventKind, HostInfo, VmInfo, VmState};
