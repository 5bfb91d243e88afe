//! gasang's software CPU: an x86-64 interpreter in Rust, with a translator that turns
//! hot blocks into host code (`jit`), for hosts whose hardware virtualization cannot
//! run guest kernel code.
//!
//! - [`CpuState`] holds the architectural registers.
//! - [`Memory`] is the CPU's view of memory at linear addresses: a flat process image for
//!   `gasang user-run`, or guest-physical RAM behind the paging unit for a whole machine.
//! - [`Cpu::step`] decodes one instruction with iced-x86 and executes it; an instruction
//!   gasang does not implement raises #UD in the guest, as hardware does.
//!
//! No KVM here: this crate depends on nothing but iced-x86 (decoder and assembler) and
//! libc (the translator's executable mapping).

pub mod atomic;
mod block;
mod cpu;
mod cpuid;
mod decoded;
mod exception;
mod exec;
mod flags;
mod jit;
mod memory;
mod state;
pub mod system;
mod x87;

pub use cpu::{Cpu, Exception, Exit, RunResult};
pub use cpuid::cpuid;
pub use flags::Flags;
pub use jit::host_tlb::HostTlb;
pub use memory::{Access, FlatMemory, Memory, MemoryFault};
pub use state::{CpuState, Gpr, Segment};
pub use x87::X87State;

/// The host's time-stamp counter, which the guest's is (plus an offset the guest may
/// write): constant-rate and monotonic on the hosts gasang runs on.
pub fn host_tsc() -> u64 {
    // SAFETY: RDTSC has no preconditions on x86-64 (the host gasang runs on).
    unsafe { core::arch::x86_64::_rdtsc() }
}
