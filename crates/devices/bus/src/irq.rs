//! Interrupt lines as devices see them.

/// One interrupt input of the platform's interrupt controller (a GSI).
///
/// Implemented by each CPU backend: KVM raises its in-kernel IOAPIC/PIC line, the
/// software CPU its own. Devices hold a `Box<dyn IrqLine>` and never learn which.
pub trait IrqLine: Send + Sync {
    /// Drives a level-triggered line high or low.
    fn set_level(&self, high: bool);

    /// Signals an edge-triggered interrupt: one rising edge.
    fn pulse(&self) {
        self.set_level(true);
        self.set_level(false);
    }
}

/// A line connected to nothing: for devices whose interrupt is unused, and for tests.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoIrq;

impl IrqLine for NoIrq {
    fn set_level(&self, _high: bool) {}
}
