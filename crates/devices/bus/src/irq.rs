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

/// A message-signalled interrupt: what a PCI function writes to raise it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsiMessage {
    /// The address (0xfee0_0000 | destination APIC ID << 12 | mode bits).
    pub address: u64,
    /// The data (vector, delivery mode, trigger mode).
    pub data: u32,
}

/// One MSI or MSI-X vector, as the CPU backend delivers it.
///
/// KVM backs it with a GSI route and an irqfd, so raising it is one eventfd write;
/// the software CPU hands the message to its local APICs.
pub trait MsiVector: Send + Sync {
    /// The message the guest programmed, or `None` while the vector is masked or off.
    fn set_message(&self, message: Option<MsiMessage>);

    /// Raises the interrupt with the current message (nothing if there is none).
    fn trigger(&self);
}
