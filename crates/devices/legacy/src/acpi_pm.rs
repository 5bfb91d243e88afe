//! The ACPI power-management block: PM1 event/control, the PM timer, GPE0 and the
//! reset register. Guest poweroff (S5) and reset arrive here; the power button leaves.
//!
//! Register offsets from [`crate::ports::ACPI_PM_PORT`]:
//!
//! | offset | register  | width |
//! |--------|-----------|-------|
//! | 0x00   | PM1_STS   | 2     |
//! | 0x02   | PM1_EN    | 2     |
//! | 0x04   | PM1_CNT   | 2     |
//! | 0x08   | PM_TMR    | 4     |
//! | 0x0c   | GPE0_STS  | 2     |
//! | 0x0e   | GPE0_EN   | 2     |
//! | 0x10   | RESET     | 1     |

use std::sync::Arc;

use gasang_bus::{BusDevice, IrqLine};

use crate::{Clock, PowerControl, PowerEvent};

/// Offsets of the registers in the block.
pub const PM1_EVT: u16 = 0x00;
/// PM1 control.
pub const PM1_CNT: u16 = 0x04;
/// The PM timer.
pub const PM_TMR: u16 = 0x08;
/// GPE0 status and enable.
pub const GPE0: u16 = 0x0c;
/// The reset register.
pub const RESET: u16 = 0x10;
/// Writing this to RESET resets the machine.
pub const RESET_VALUE: u8 = 1;
/// SLP_TYP for S5 (soft off); the DSDT's `\_S5` says the same.
pub const S5_SLP_TYP: u8 = 5;
/// The GPE the power button raises; the DSDT's `\_GPE._E00` handles it.
pub const POWER_BUTTON_GPE: u8 = 0;

const PM1_STS_OFF: usize = 0;
const PM1_EN_OFF: usize = 2;
const PM1_CNT_OFF: usize = 4;
const GPE0_STS_OFF: usize = 0x0c;
const GPE0_EN_OFF: usize = 0x0e;
/// PM1_CNT: SCI_EN (always set: there is no legacy mode), SLP_TYP, SLP_EN.
const SCI_EN: u16 = 1;
const SLP_TYP_SHIFT: u16 = 10;
const SLP_EN: u16 = 1 << 13;
/// PM1 status/enable bits gasang can raise: timer carry and power button.
const PM1_TMR: u16 = 1;
const PM1_PWRBTN: u16 = 1 << 8;
/// The PM timer's frequency.
const PM_TIMER_HZ: u128 = 3_579_545;

/// The ACPI PM block.
pub struct AcpiPm {
    pm1_sts: u16,
    pm1_en: u16,
    pm1_cnt: u16,
    gpe0_sts: u16,
    gpe0_en: u16,
    sci: Box<dyn IrqLine>,
    sci_level: bool,
    power: Arc<dyn PowerControl>,
    clock: Box<dyn Clock>,
}

impl std::fmt::Debug for AcpiPm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcpiPm")
            .field("pm1_sts", &self.pm1_sts)
            .field("pm1_en", &self.pm1_en)
            .field("gpe0_sts", &self.gpe0_sts)
            .field("gpe0_en", &self.gpe0_en)
            .finish()
    }
}

impl AcpiPm {
    /// A PM block raising `sci`, reporting S5 and resets to `power`, timing with `clock`.
    pub fn new(sci: Box<dyn IrqLine>, power: Arc<dyn PowerControl>, clock: Box<dyn Clock>) -> Self {
        Self {
            pm1_sts: 0,
            pm1_en: 0,
            pm1_cnt: SCI_EN,
            gpe0_sts: 0,
            gpe0_en: 0,
            sci,
            sci_level: false,
            power,
            clock,
        }
    }

    /// Presses the power button: the guest's ACPI driver sees a GPE and shuts down.
    pub fn press_power_button(&mut self) {
        self.gpe0_sts |= 1 << POWER_BUTTON_GPE;
        self.update_sci();
    }

    fn timer(&self) -> u32 {
        let ticks = self.clock.monotonic().as_nanos() * PM_TIMER_HZ / 1_000_000_000;
        // A 32-bit counter that wraps (TMR_VAL_EXT).
        (ticks & 0xffff_ffff) as u32
    }

    fn update_sci(&mut self) {
        let pm1 = self.pm1_sts & self.pm1_en & (PM1_TMR | PM1_PWRBTN) != 0;
        let level = pm1 || self.gpe0_sts & self.gpe0_en != 0;
        if level != self.sci_level {
            self.sci_level = level;
            self.sci.set_level(level);
        }
    }

    fn registers(&self) -> [u8; 0x20] {
        let mut regs = [0u8; 0x20];
        let mut put = |off: usize, v: &[u8]| regs[off..off + v.len()].copy_from_slice(v);
        put(PM1_STS_OFF, &self.pm1_sts.to_le_bytes());
        put(PM1_EN_OFF, &self.pm1_en.to_le_bytes());
        put(PM1_CNT_OFF, &self.pm1_cnt.to_le_bytes());
        put(usize::from(PM_TMR), &self.timer().to_le_bytes());
        put(GPE0_STS_OFF, &self.gpe0_sts.to_le_bytes());
        put(GPE0_EN_OFF, &self.gpe0_en.to_le_bytes());
        regs
    }

    fn write_byte(&mut self, offset: usize, value: u8) {
        let v = u16::from(value);
        let shift = 8 * (offset % 2);
        match offset {
            0 | 1 => self.pm1_sts &= !(v << shift),
            2 | 3 => self.pm1_en = (self.pm1_en & !(0xff << shift)) | (v << shift),
            4 | 5 => self.write_pm1_cnt(shift, v),
            0x0c | 0x0d => self.gpe0_sts &= !(v << shift),
            0x0e | 0x0f => self.gpe0_en = (self.gpe0_en & !(0xff << shift)) | (v << shift),
            0x10 if value == RESET_VALUE => self.power.power_event(PowerEvent::Reset),
            _ => {}
        }
    }

    fn write_pm1_cnt(&mut self, shift: usize, v: u16) {
        let cnt = (self.pm1_cnt & !(0xff << shift)) | (v << shift);
        self.pm1_cnt = (cnt & !SLP_EN) | SCI_EN;
        if cnt & SLP_EN != 0 && (cnt >> SLP_TYP_SHIFT) & 7 == u16::from(S5_SLP_TYP) {
            self.power.power_event(PowerEvent::PowerOff);
        }
    }
}

impl BusDevice for AcpiPm {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let regs = self.registers();
        for (i, byte) in data.iter_mut().enumerate() {
            let at = usize::try_from(offset).map_or(usize::MAX, |o| o.saturating_add(i));
            *byte = regs.get(at).copied().unwrap_or(0);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        for (i, byte) in data.iter().enumerate() {
            if let Ok(at) = usize::try_from(offset) {
                self.write_byte(at.saturating_add(i), *byte);
            }
        }
        self.update_sci();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::test_util::Events;

    #[derive(Clone, Default)]
    struct Level(Arc<AtomicBool>);

    impl IrqLine for Level {
        fn set_level(&self, high: bool) {
            self.0.store(high, Ordering::SeqCst);
        }
    }

    struct OneSecond;

    impl Clock for OneSecond {
        fn wall_seconds(&self) -> i64 {
            0
        }
        fn monotonic(&self) -> Duration {
            Duration::from_secs(1)
        }
    }

    fn pm() -> (AcpiPm, Arc<Events>, Level) {
        let events = Arc::new(Events::default());
        let sci = Level::default();
        let pm = AcpiPm::new(Box::new(sci.clone()), events.clone(), Box::new(OneSecond));
        (pm, events, sci)
    }

    #[test]
    fn test_acpi_pm_s5_sleep_powers_off() {
        let (mut pm, events, _) = pm();
        let value = SLP_EN | (u16::from(S5_SLP_TYP) << SLP_TYP_SHIFT);
        pm.write(u64::from(PM1_CNT), &value.to_le_bytes());
        assert_eq!(*events.0.lock().unwrap(), vec![PowerEvent::PowerOff]);
    }

    #[test]
    fn test_acpi_pm_other_sleep_states_are_ignored() {
        let (mut pm, events, _) = pm();
        let s3 = SLP_EN | (1 << SLP_TYP_SHIFT);
        pm.write(u64::from(PM1_CNT), &s3.to_le_bytes());
        assert!(events.0.lock().unwrap().is_empty());
    }

    #[test]
    fn test_acpi_pm_reset_register_resets() {
        let (mut pm, events, _) = pm();
        pm.write(u64::from(RESET), &[RESET_VALUE]);
        assert_eq!(*events.0.lock().unwrap(), vec![PowerEvent::Reset]);
    }

    #[test]
    fn test_acpi_pm_sci_enabled_reads_back() {
        let (mut pm, _, _) = pm();
        let mut data = [0u8; 2];
        pm.read(u64::from(PM1_CNT), &mut data);
        assert_eq!(u16::from_le_bytes(data) & SCI_EN, SCI_EN);
    }

    #[test]
    fn test_acpi_pm_timer_counts_at_3_58_mhz() {
        let (mut pm, _, _) = pm();
        let mut data = [0u8; 4];
        pm.read(u64::from(PM_TMR), &mut data);
        assert_eq!(u32::from_le_bytes(data), 3_579_545);
    }

    #[test]
    fn test_acpi_pm_power_button_raises_sci_until_acknowledged() {
        let (mut pm, _, sci) = pm();
        pm.write(u64::from(GPE0) + 2, &[1]); // enable GPE 0
        pm.press_power_button();
        assert!(sci.0.load(Ordering::SeqCst));
        let mut sts = [0u8];
        pm.read(u64::from(GPE0), &mut sts);
        assert_eq!(sts[0], 1);
        pm.write(u64::from(GPE0), &[1]); // write 1 to clear
        assert!(!sci.0.load(Ordering::SeqCst));
    }

    #[test]
    fn test_acpi_pm_power_button_without_enable_keeps_sci_low() {
        let (mut pm, _, sci) = pm();
        pm.press_power_button();
        assert!(!sci.0.load(Ordering::SeqCst));
    }
}
