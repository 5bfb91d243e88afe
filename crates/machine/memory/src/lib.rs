//! Guest memory: the x86-64 guest-physical memory map every backend shares, the
//! user's memory size (validated once), and the guest RAM itself (vm-memory).

pub mod layout;
mod ram;
mod size;

pub use ram::{create_guest_memory, ram_ranges, GuestMemoryError, MemoryRange, RangeKind};
pub use size::{host_total_memory, MemorySize, MemorySizeError};

/// Guest RAM as every part of gasang sees it.
pub type GuestMemory = vm_memory::GuestMemoryMmap<()>;
