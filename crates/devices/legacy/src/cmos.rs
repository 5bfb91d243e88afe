//! The MC146818 CMOS RTC and NVRAM at ports 0x70/0x71, showing the host's wall clock.
//!
//! The guest may set the clock: gasang keeps the difference from the host's time, so
//! the guest's clock keeps ticking from what it set.

use gasang_bus::BusDevice;

use crate::Clock;

/// Registers.
const SECONDS: u8 = 0x00;
const MINUTES: u8 = 0x02;
const HOURS: u8 = 0x04;
const WEEKDAY: u8 = 0x06;
const DAY: u8 = 0x07;
const MONTH: u8 = 0x08;
const YEAR: u8 = 0x09;
const STATUS_A: u8 = 0x0a;
const STATUS_B: u8 = 0x0b;
const STATUS_C: u8 = 0x0c;
const STATUS_D: u8 = 0x0d;
const CENTURY: u8 = 0x32;
/// Memory size registers (as BIOSes and SeaBIOS read them).
const EXT_MEM_KB: u8 = 0x17;
const EXT_MEM_KB_ALT: u8 = 0x30;
const MEM_ABOVE_16M: u8 = 0x34;
const MEM_ABOVE_4G: u8 = 0x5b;

/// Status A: 32.768 kHz time base, 1024 Hz periodic rate. UIP (bit 7) is never set:
/// reads are consistent because the time is computed per access.
const STATUS_A_DEFAULT: u8 = 0x26;
/// Status B: 24-hour mode, BCD.
const STATUS_B_24H: u8 = 0x02;
const STATUS_B_BINARY: u8 = 0x04;
const STATUS_B_SET: u8 = 0x80;
/// Status D: valid RAM and time.
const STATUS_D_VRT: u8 = 0x80;

/// The CMOS device.
pub struct Cmos {
    index: u8,
    nvram: [u8; 128],
    clock: Box<dyn Clock>,
    /// Guest time minus host time, in seconds.
    offset: i64,
}

impl std::fmt::Debug for Cmos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cmos")
            .field("index", &self.index)
            .field("offset", &self.offset)
            .finish()
    }
}

fn put_u16(nvram: &mut [u8; 128], reg: u8, value: u64) {
    let v = u16::try_from(value.min(0xffff)).expect("clamped to 16 bits");
    nvram[usize::from(reg)..usize::from(reg) + 2].copy_from_slice(&v.to_le_bytes());
}

impl Cmos {
    /// A CMOS showing `clock`'s time and the guest's RAM sizes below and above 4 GiB.
    pub fn new(clock: Box<dyn Clock>, mem_below_4g: u64, mem_above_4g: u64) -> Self {
        let mut nvram = [0u8; 128];
        nvram[usize::from(STATUS_A)] = STATUS_A_DEFAULT;
        nvram[usize::from(STATUS_B)] = STATUS_B_24H;
        nvram[usize::from(STATUS_D)] = STATUS_D_VRT;
        let ext_kb = mem_below_4g.saturating_sub(1 << 20) >> 10;
        put_u16(&mut nvram, EXT_MEM_KB, ext_kb);
        put_u16(&mut nvram, EXT_MEM_KB_ALT, ext_kb);
        put_u16(
            &mut nvram,
            MEM_ABOVE_16M,
            mem_below_4g.saturating_sub(16 << 20) >> 16,
        );
        let above = (mem_above_4g >> 16).to_le_bytes();
        nvram[usize::from(MEM_ABOVE_4G)..usize::from(MEM_ABOVE_4G) + 3]
            .copy_from_slice(&above[..3]);
        Self {
            index: 0,
            nvram,
            clock,
            offset: 0,
        }
    }

    fn now(&self) -> i64 {
        self.clock.wall_seconds() + self.offset
    }

    fn binary(&self) -> bool {
        self.nvram[usize::from(STATUS_B)] & STATUS_B_BINARY != 0
    }

    fn encode(&self, v: u32) -> u8 {
        let v = u8::try_from(v % 100).expect("below 100");
        if self.binary() {
            v
        } else {
            ((v / 10) << 4) | (v % 10)
        }
    }

    fn decode(&self, v: u8) -> u32 {
        if self.binary() {
            u32::from(v)
        } else {
            u32::from(v >> 4) * 10 + u32::from(v & 0xf)
        }
    }

    fn read_register(&self, reg: u8) -> u8 {
        let t = DateTime::from_unix(self.now());
        match reg {
            SECONDS => self.encode(t.second),
            MINUTES => self.encode(t.minute),
            HOURS => self.encode_hour(t.hour),
            WEEKDAY => self.encode(t.weekday + 1),
            DAY => self.encode(t.day),
            MONTH => self.encode(t.month),
            YEAR => self.encode(t.year.rem_euclid(100) as u32),
            CENTURY => self.encode(t.year.div_euclid(100).clamp(0, 99) as u32),
            STATUS_C => 0,
            _ => self.nvram[usize::from(reg & 0x7f)],
        }
    }

    /// Hours in 24-hour mode, or 1..=12 with bit 7 for PM in 12-hour mode.
    fn encode_hour(&self, hour: u32) -> u8 {
        if self.nvram[usize::from(STATUS_B)] & STATUS_B_24H != 0 {
            return self.encode(hour);
        }
        let pm = if hour >= 12 { 0x80 } else { 0 };
        self.encode((hour + 11) % 12 + 1) | pm
    }

    fn write_register(&mut self, reg: u8, value: u8) {
        let mut t = DateTime::from_unix(self.now());
        let v = self.decode(value & 0x7f);
        match reg {
            SECONDS => t.second = v.min(59),
            MINUTES => t.minute = v.min(59),
            HOURS => t.hour = v.min(23),
            DAY => t.day = v.clamp(1, 31),
            MONTH => t.month = v.clamp(1, 12),
            YEAR => t.year = t.year.div_euclid(100) * 100 + i64::from(v.min(99)),
            CENTURY => t.year = i64::from(v.min(99)) * 100 + t.year.rem_euclid(100),
            STATUS_C | STATUS_D | WEEKDAY => return,
            STATUS_B => {
                // Only the mode bits stick; interrupts are not emulated.
                self.nvram[usize::from(STATUS_B)] =
                    value & (STATUS_B_SET | STATUS_B_BINARY | STATUS_B_24H);
                return;
            }
            _ => {
                self.nvram[usize::from(reg & 0x7f)] = value;
                return;
            }
        }
        self.offset = t.to_unix() - self.clock.wall_seconds();
    }
}

impl BusDevice for Cmos {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let Some(first) = data.first_mut() else {
            return;
        };
        *first = match offset {
            0 => self.index,
            _ => self.read_register(self.index & 0x7f),
        };
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&value) = data.first() else { return };
        match offset {
            // Bit 7 masks NMIs on real hardware; only the index matters here.
            0 => self.index = value & 0x7f,
            _ => self.write_register(self.index, value),
        }
    }
}

/// A UTC calendar time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DateTime {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    /// 0 = Sunday.
    weekday: u32,
}

impl DateTime {
    /// Howard Hinnant's civil-from-days.
    fn from_unix(secs: i64) -> Self {
        let days = secs.div_euclid(86400);
        let rem = u32::try_from(secs.rem_euclid(86400)).expect("below 86400");
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = u32::try_from(doy - (153 * mp + 2) / 5 + 1).expect("1..=31");
        let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).expect("1..=12");
        let year = yoe + era * 400 + i64::from(month <= 2);
        let weekday = u32::try_from((days + 4).rem_euclid(7)).expect("0..=6");
        Self {
            year,
            month,
            day,
            hour: rem / 3600,
            minute: rem / 60 % 60,
            second: rem % 60,
            weekday,
        }
    }

    /// Howard Hinnant's days-from-civil.
    fn to_unix(self) -> i64 {
        let y = self.year - i64::from(self.month <= 2);
        let era = y.div_euclid(400);
        let yoe = y.rem_euclid(400);
        let m = i64::from(self.month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        days * 86400 + i64::from(self.hour * 3600 + self.minute * 60 + self.second)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// 2026-11-23 14:05:09 UTC, a Monday.
    const NOW: i64 = 1_795_442_709;

    struct FixedClock(i64);

    impl Clock for FixedClock {
        fn wall_seconds(&self) -> i64 {
            self.0
        }
        fn monotonic(&self) -> Duration {
            Duration::ZERO
        }
    }

    fn cmos() -> Cmos {
        Cmos::new(Box::new(FixedClock(NOW)), 512 << 20, 0)
    }

    fn reg(cmos: &mut Cmos, reg: u8) -> u8 {
        cmos.write(0, &[reg]);
        let mut data = [0u8];
        cmos.read(1, &mut data);
        data[0]
    }

    #[test]
    fn test_cmos_reads_host_time_in_bcd() {
        let mut c = cmos();
        let fields: Vec<u8> = [SECONDS, MINUTES, HOURS, WEEKDAY, DAY, MONTH, YEAR, CENTURY]
            .iter()
            .map(|r| reg(&mut c, *r))
            .collect();
        assert_eq!(fields, [0x09, 0x05, 0x14, 0x02, 0x23, 0x11, 0x26, 0x20]);
    }

    #[test]
    fn test_cmos_binary_mode_reads_binary() {
        let mut c = cmos();
        c.write(0, &[STATUS_B]);
        c.write(1, &[STATUS_B_24H | STATUS_B_BINARY]);
        assert_eq!(reg(&mut c, HOURS), 14);
        assert_eq!(reg(&mut c, YEAR), 26);
    }

    #[test]
    fn test_cmos_12_hour_mode_sets_pm_bit() {
        let mut c = cmos();
        c.write(0, &[STATUS_B]);
        c.write(1, &[0]);
        assert_eq!(reg(&mut c, HOURS), 0x82);
    }

    #[test]
    fn test_cmos_guest_sets_year_and_clock_keeps_offset() {
        let mut c = cmos();
        c.write(0, &[YEAR]);
        c.write(1, &[0x30]);
        assert_eq!(reg(&mut c, YEAR), 0x30);
        assert_eq!(reg(&mut c, MONTH), 0x11);
        assert_eq!(reg(&mut c, DAY), 0x23);
    }

    #[test]
    fn test_cmos_status_registers_and_memory_size() {
        let mut c = cmos();
        assert_eq!(reg(&mut c, STATUS_A) & 0x80, 0, "no update in progress");
        assert_eq!(reg(&mut c, STATUS_D), STATUS_D_VRT);
        let above_16m = u16::from_le_bytes([reg(&mut c, 0x34), reg(&mut c, 0x35)]);
        assert_eq!(u64::from(above_16m) << 16, (512 - 16) << 20);
    }

    #[test]
    fn test_datetime_round_trips_across_eras() {
        for secs in [0, 951_782_400, NOW, -86_400, 4_102_444_800] {
            assert_eq!(DateTime::from_unix(secs).to_unix(), secs);
        }
        assert_eq!(DateTime::from_unix(951_782_400).month, 2, "2000-02-29");
        assert_eq!(DateTime::from_unix(951_782_400).day, 29);
    }
}
