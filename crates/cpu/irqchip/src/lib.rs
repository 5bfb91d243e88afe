//! Interrupt controllers and timers for a CPU backend that has no in-kernel ones (the
//! software CPU): the local APIC, the I/O APIC and the 8254 PIT, each a pure state
//! machine. Time comes in as TSC values (nanoseconds for the PIT); what a controller asks of the platform (deliver an interrupt, send an
//! IPI, end a level-triggered interrupt) comes out as a return value. No threads, no
//! locks, no KVM.

pub mod ioapic;
pub mod lapic;
pub mod pit;

pub use ioapic::{Delivery, IoApic};
pub use lapic::{ApicAction, Ipi, LocalApic};
pub use pit::Pit;
