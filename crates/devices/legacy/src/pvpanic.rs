//! pvpanic (ACPI ID QEMU0001): the guest kernel's panic notifier writes here.

use std::sync::Arc;

use gasang_bus::{BusDevice, RateLimit};

use crate::{PowerControl, PowerEvent};

/// Event bits, both readable as capabilities and writable as events.
const PANICKED: u8 = 1;
const CRASH_LOADED: u8 = 2;

/// The pvpanic port.
pub struct PvPanic {
    power: Arc<dyn PowerControl>,
}

impl std::fmt::Debug for PvPanic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PvPanic")
    }
}

impl PvPanic {
    /// A pvpanic device reporting to `power`.
    pub fn new(power: Arc<dyn PowerControl>) -> Self {
        Self { power }
    }
}

impl BusDevice for PvPanic {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let Some(first) = data.first_mut() {
            *first = PANICKED | CRASH_LOADED;
        }
    }

    fn write(&mut self, _offset: u64, data: &[u8]) {
        static LOG: RateLimit = RateLimit::new(1, 60);
        let value = data.first().copied().unwrap_or(0);
        if value & PANICKED != 0 {
            self.power.power_event(PowerEvent::Panic);
        } else if value & CRASH_LOADED != 0 && LOG.allow() {
            tracing::warn!("guest panicked and is starting its crash kernel");
        }
    }
}
