//! QEMU's isa-debug-exit: a write of `v` ends the VMM with status `(v << 1) | 1`.

use std::sync::Arc;

use gasang_bus::BusDevice;

use crate::{le_value, PowerControl, PowerEvent};

/// The debug-exit port, for test guests.
pub struct DebugExit {
    power: Arc<dyn PowerControl>,
}

impl std::fmt::Debug for DebugExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DebugExit")
    }
}

impl DebugExit {
    /// A debug-exit port reporting to `power`.
    pub fn new(power: Arc<dyn PowerControl>) -> Self {
        Self { power }
    }
}

impl BusDevice for DebugExit {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn write(&mut self, _offset: u64, data: &[u8]) {
        // The status is 8 bits wide as a process exit code; QEMU's formula, truncated.
        let status = ((le_value(data) << 1) | 1) & 0xff;
        let status = u32::try_from(status).expect("masked to 8 bits");
        self.power.power_event(PowerEvent::DebugExit(status));
    }
}
