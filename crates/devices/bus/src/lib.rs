//! The seams between the guest's address spaces and the devices behind them.
//!
//! - [`Bus`] maps address ranges (I/O ports or guest-physical MMIO) to [`BusDevice`]s.
//! - [`IrqLine`] is how a device raises an interrupt without knowing the interrupt
//!   controller (KVM's in-kernel one, or the software CPU's); [`MsiVector`] is the
//!   same for a message-signalled interrupt.
//! - [`lock`] takes a lock that another thread's panic poisoned.
//! - [`RateLimit`] keeps log lines that a guest can trigger from flooding the host.
//!
//! Nothing here knows about KVM: devices depend on this crate only.

mod bus;
mod irq;
mod rate_limit;
mod sync;

pub use bus::{Bus, BusDevice, BusError, RangeTraps, SharedDevice};
pub use irq::{IrqLine, MsiMessage, MsiVector, NoIrq};
pub use rate_limit::RateLimit;
pub use sync::lock;
