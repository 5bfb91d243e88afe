//! The i8042 keyboard controller, for the reset line only (vm-superio's device).

use std::convert::Infallible;
use std::sync::Arc;

use gasang_bus::BusDevice;
use vm_superio::Trigger;

use crate::{PowerControl, PowerEvent};

/// Pulses the CPU reset line: tells the machine to reset.
struct ResetLine(Arc<dyn PowerControl>);

impl Trigger for ResetLine {
    type E = Infallible;

    fn trigger(&self) -> Result<(), Infallible> {
        self.0.power_event(PowerEvent::Reset);
        Ok(())
    }
}

/// The i8042 at 0x60..=0x64: command 0xfe to port 0x64 resets the machine.
pub struct I8042 {
    device: vm_superio::I8042Device<ResetLine>,
}

impl std::fmt::Debug for I8042 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("I8042")
    }
}

impl I8042 {
    /// An i8042 whose reset line goes to `power`.
    pub fn new(power: Arc<dyn PowerControl>) -> Self {
        Self {
            device: vm_superio::I8042Device::new(ResetLine(power)),
        }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let value = u8::try_from(offset).map_or(0, |o| self.device.read(o));
        data.fill(0);
        if let Some(first) = data.first_mut() {
            *first = value;
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let (Some(value), Ok(offset)) = (data.first(), u8::try_from(offset)) {
            // The trigger is infallible.
            let _ = self.device.write(offset, *value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::Events;

    #[test]
    fn test_i8042_command_fe_resets() {
        let events = Arc::new(Events::default());
        let mut dev = I8042::new(events.clone());
        dev.write(4, &[0xfe]);
        assert_eq!(*events.0.lock().unwrap(), vec![PowerEvent::Reset]);
    }

    #[test]
    fn test_i8042_other_writes_do_nothing() {
        let events = Arc::new(Events::default());
        let mut dev = I8042::new(events.clone());
        dev.write(4, &[0xaa]);
        dev.write(0, &[0xfe]);
        assert!(events.0.lock().unwrap().is_empty());
    }
}
