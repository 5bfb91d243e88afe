//! How a device's thread interrupts the driver: an MSI-X vector when the driver
//! enabled MSI-X, otherwise the ISR status byte and the INTx line.

use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use gasang_bus::{lock, IrqLine};
use gasang_pci::Msix;

/// "No MSI-X vector" in the common configuration.
pub const NO_VECTOR: u16 = 0xffff;
/// ISR bit: a queue has used buffers.
pub const ISR_QUEUE: u8 = 1;
/// ISR bit: the configuration changed.
pub const ISR_CONFIG: u8 = 2;

/// A device's interrupts, shared by the transport (on vCPU threads) and the device's
/// own thread.
pub struct VirtioInterrupt {
    msix: Arc<Mutex<Msix>>,
    /// The ISR status byte; the INTx line follows it (high while it is not zero).
    isr: Mutex<u8>,
    intx: Box<dyn IrqLine>,
    config_vector: AtomicU16,
    needs_reset: AtomicBool,
}

impl std::fmt::Debug for VirtioInterrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtioInterrupt")
            .field("isr", &*lock(&self.isr))
            .finish()
    }
}

impl VirtioInterrupt {
    /// Interrupts through `msix`, or `intx` without it.
    pub fn new(msix: Arc<Mutex<Msix>>, intx: Box<dyn IrqLine>) -> Self {
        Self {
            msix,
            isr: Mutex::new(0),
            intx,
            config_vector: AtomicU16::new(NO_VECTOR),
            needs_reset: AtomicBool::new(false),
        }
    }

    /// The MSI-X state (the transport's table accesses).
    pub fn msix(&self) -> MutexGuard<'_, Msix> {
        lock(&self.msix)
    }

    fn raise(&self, vector: u16, isr_bit: u8) {
        {
            let mut msix = lock(&self.msix);
            if msix.enabled() {
                if vector != NO_VECTOR {
                    msix.notify(vector);
                }
                return;
            }
        }
        let mut isr = lock(&self.isr);
        *isr |= isr_bit;
        self.intx.set_level(true);
    }

    /// A queue whose vector is `vector` has used buffers.
    pub fn queue(&self, vector: u16) {
        self.raise(vector, ISR_QUEUE);
    }

    /// The device's configuration (or status) changed.
    pub fn config_changed(&self) {
        self.raise(self.config_vector.load(Ordering::Relaxed), ISR_CONFIG);
    }

    /// The device hit an error it cannot go on from (a broken ring): the driver sees
    /// NEEDS_RESET in the device status, and a configuration interrupt.
    pub fn needs_reset(&self) {
        if !self.needs_reset.swap(true, Ordering::SeqCst) {
            self.config_changed();
        }
    }

    /// Whether the device needs a reset.
    pub fn reset_needed(&self) -> bool {
        self.needs_reset.load(Ordering::SeqCst)
    }

    /// The driver read the ISR status: it clears, and INTx drops.
    pub fn read_isr(&self) -> u8 {
        let mut isr = lock(&self.isr);
        let value = std::mem::take(&mut *isr);
        self.intx.set_level(false);
        value
    }

    /// The configuration-change vector.
    pub fn config_vector(&self) -> u16 {
        self.config_vector.load(Ordering::Relaxed)
    }

    /// Sets the configuration-change vector.
    pub fn set_config_vector(&self, vector: u16) {
        self.config_vector.store(vector, Ordering::Relaxed);
    }

    /// The device was reset: nothing pending, no error.
    pub fn reset(&self) {
        self.needs_reset.store(false, Ordering::SeqCst);
        self.set_config_vector(NO_VECTOR);
        self.read_isr();
    }
}
