//! The 8254 programmable interval timer, as Linux uses it: channel 0 as the periodic
//! (modes 2 and 3) or one-shot (mode 0) timer on IRQ 0, and channel 2, gated by port
//! 0x61, for TSC calibration. Channel 1 (DRAM refresh) counts but drives nothing.
//!
//! A pure state machine: time comes in as nanoseconds (`now`), and an IRQ 0 edge comes
//! out of [`Pit::tick`]. Periods that pass before the platform looks are not lost:
//! each later look delivers one of them, as KVM's PIT re-injects missed ticks, so that
//! a guest counting timer interrupts (jiffies) keeps time.

/// The PIT's input clock.
pub const HZ: u64 = 1_193_182;

/// The most channel 0 periods owed at once (a second at HZ=1000).
const MAX_MISSED: u64 = 1000;

/// Port 0x61 bits: channel 2's gate, and its output (read-only).
const GATE2: u8 = 1;
const OUT2: u8 = 1 << 5;

#[derive(Debug, Clone, Copy, Default)]
struct Channel {
    /// The reload value (0 means 65536).
    reload: u32,
    mode: u8,
    /// Access mode: 1 low byte, 2 high byte, 3 low then high.
    access: u8,
    /// When counting started (ns); `None` until a count is written (or the gate opens).
    started: Option<u64>,
    /// A latched count, and whether its high byte is next.
    latched: Option<u16>,
    read_high: bool,
    write_high: bool,
    /// The low byte of a count being written in two halves.
    low: u8,
    /// Channel 0: when the next interrupt is due (ns).
    next_irq: Option<u64>,
}

impl Channel {
    fn period(&self) -> u64 {
        if self.reload == 0 {
            65536
        } else {
            u64::from(self.reload)
        }
    }

    /// PIT clocks since counting started.
    fn elapsed(&self, now: u64) -> Option<u64> {
        let started = self.started?;
        Some(((u128::from(now.saturating_sub(started)) * u128::from(HZ)) / 1_000_000_000) as u64)
    }

    fn periodic(&self) -> bool {
        matches!(self.mode, 2 | 3 | 6 | 7)
    }

    /// The count now.
    fn count(&self, now: u64) -> u16 {
        let Some(elapsed) = self.elapsed(now) else {
            return self.reload as u16;
        };
        let period = self.period();
        let left = if self.periodic() {
            period - elapsed % period
        } else {
            period.saturating_sub(elapsed)
        };
        left as u16
    }

    /// The output: mode 0 goes high at terminal count and stays there.
    fn out(&self, now: u64) -> bool {
        match self.elapsed(now) {
            None => self.mode != 0,
            Some(elapsed) if self.mode == 0 => elapsed >= self.period(),
            Some(elapsed) => elapsed % self.period() < self.period() / 2,
        }
    }

    fn ns(clocks: u64) -> u64 {
        ((u128::from(clocks) * 1_000_000_000).div_ceil(u128::from(HZ))) as u64
    }
}

/// The 8254.
#[derive(Debug, Clone, Default)]
pub struct Pit {
    channels: [Channel; 3],
    /// Port 0x61's writable bits.
    port61: u8,
    /// Channel 0 periods that passed but have not raised IRQ 0 yet.
    missed: u64,
}

impl Pit {
    /// A PIT with no channel counting.
    pub fn new() -> Self {
        Self::default()
    }

    /// When IRQ 0 is next due (ns): now if missed periods wait, else when channel 0
    /// next expires.
    pub fn next_irq(&self) -> Option<u64> {
        if self.missed > 0 {
            return Some(0);
        }
        self.channels[0].next_irq
    }

    /// Advances to `now`: whether IRQ 0 has an edge (one per call; periods missed
    /// meanwhile come out of later calls).
    pub fn tick(&mut self, now: u64) -> bool {
        let c = &mut self.channels[0];
        if let Some(due) = c.next_irq.filter(|&due| now >= due) {
            if c.periodic() {
                let period = Channel::ns(c.period()).max(1);
                let passed = (now - due) / period + 1;
                c.next_irq = Some(due + passed * period);
                // Owed ticks are capped: a guest stopped for long (or a tiny period
                // over a long gap) must not be owed an interrupt storm.
                self.missed = (self.missed + passed).min(MAX_MISSED);
            } else {
                c.next_irq = None;
                self.missed += 1;
            }
        }
        let edge = self.missed > 0;
        self.missed = self.missed.saturating_sub(1);
        edge
    }

    /// Reads port `port` (0x40..=0x43, 0x61) at `now`.
    pub fn read(&mut self, port: u16, now: u64) -> u8 {
        match port {
            0x40..=0x42 => {
                let c = &mut self.channels[usize::from(port - 0x40)];
                let count = c.latched.unwrap_or_else(|| c.count(now));
                let byte = match c.access {
                    1 => count as u8,
                    2 => (count >> 8) as u8,
                    _ => {
                        c.read_high = !c.read_high;
                        if c.read_high {
                            count as u8
                        } else {
                            (count >> 8) as u8
                        }
                    }
                };
                if c.access != 3 || !c.read_high {
                    c.latched = None;
                }
                byte
            }
            0x61 => {
                let out2 = if self.channels[2].out(now) { OUT2 } else { 0 };
                // Bit 4 (refresh) toggles: some probes wait for it to change.
                let refresh = ((now / 15_000) as u8 & 1) << 4;
                (self.port61 & 0xf) | out2 | refresh
            }
            _ => 0xff,
        }
    }

    /// Writes `value` to port `port` at `now`.
    pub fn write(&mut self, port: u16, value: u8, now: u64) {
        match port {
            0x40..=0x42 => self.write_count(usize::from(port - 0x40), value, now),
            0x43 => self.control(value, now),
            0x61 => {
                let opened = value & GATE2 != 0 && self.port61 & GATE2 == 0;
                self.port61 = value & 0xf;
                if opened {
                    // Channel 2 (re)starts counting when its gate rises.
                    self.channels[2].started = Some(now);
                }
            }
            _ => {}
        }
    }

    fn control(&mut self, value: u8, now: u64) {
        let channel = usize::from(value >> 6);
        if channel == 3 {
            // Read-back: latch the counts of the channels named (bits 1..3).
            for i in 0..3 {
                if value & (2 << i) != 0 && value & 0x20 == 0 {
                    let c = &mut self.channels[i];
                    c.latched = Some(c.count(now));
                }
            }
            return;
        }
        let c = &mut self.channels[channel];
        let access = (value >> 4) & 3;
        if access == 0 {
            c.latched = Some(c.count(now));
            c.read_high = false;
            return;
        }
        *c = Channel {
            mode: (value >> 1) & 7,
            access,
            ..Channel::default()
        };
        if channel == 0 {
            self.missed = 0; // reprogrammed: old periods no longer count
        }
    }

    fn write_count(&mut self, index: usize, value: u8, now: u64) {
        let c = &mut self.channels[index];
        let reload = match c.access {
            1 => u32::from(value),
            2 => u32::from(value) << 8,
            _ => {
                c.write_high = !c.write_high;
                if c.write_high {
                    c.low = value;
                    return;
                }
                u32::from(c.low) | (u32::from(value) << 8)
            }
        };
        c.reload = reload;
        // Channel 2 counts only while its gate is open.
        let gated_off = index == 2 && self.port61 & GATE2 == 0;
        c.started = (!gated_off).then_some(now);
        if index == 0 {
            c.next_irq = Some(now + Channel::ns(c.period()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ns for `clocks` PIT clocks.
    fn ns(clocks: u64) -> u64 {
        Channel::ns(clocks)
    }

    #[test]
    fn test_channel_0_periodic_interrupts_at_the_programmed_rate() {
        let mut pit = Pit::new();
        pit.write(0x43, 0x34, 0); // channel 0, lo/hi, mode 2
        pit.write(0x40, (11932 & 0xff) as u8, 0);
        pit.write(0x40, (11932 >> 8) as u8, 1000); // 100 Hz, from t = 1000 ns
        let period = ns(11932);
        assert_eq!(pit.next_irq(), Some(1000 + period));
        assert!(!pit.tick(1000 + period - 1));
        assert!(pit.tick(1000 + period));
        assert!(pit.tick(1000 + 5 * period + 7), "late");
        assert_eq!(pit.next_irq(), Some(0), "three periods still owed");
        for _ in 0..3 {
            assert!(pit.tick(1000 + 5 * period + 8));
        }
        assert!(!pit.tick(1000 + 5 * period + 9), "caught up");
        assert_eq!(pit.next_irq(), Some(1000 + 6 * period));
        pit.tick(1000 + 100_000 * period);
        let owed = (0..2000)
            .take_while(|_| pit.tick(1000 + 100_000 * period))
            .count();
        assert_eq!(owed, MAX_MISSED as usize - 1, "capped");
    }

    #[test]
    fn test_latched_count_reads_low_then_high() {
        let mut pit = Pit::new();
        pit.write(0x43, 0x30, 0); // channel 0, lo/hi, mode 0 (one-shot)
        pit.write(0x40, 0x00, 0);
        pit.write(0x40, 0x10, 0); // 4096
        pit.write(0x43, 0x00, ns(96)); // latch channel 0
        let lo = pit.read(0x40, ns(2000));
        let hi = pit.read(0x40, ns(3000));
        assert_eq!(u16::from_le_bytes([lo, hi]), 4000, "the latched count");
        assert!(pit.tick(ns(4096)));
        assert!(!pit.tick(ns(9000)), "one-shot");
    }

    #[test]
    fn test_channel_2_gate_and_output_on_port_61() {
        let mut pit = Pit::new();
        pit.write(0x61, 0, 0);
        pit.write(0x43, 0xb0, 0); // channel 2, lo/hi, mode 0
        pit.write(0x42, 0xff, 0);
        pit.write(0x42, 0xff, 0);
        assert_eq!(
            pit.read(0x61, ns(70000)) & OUT2,
            0,
            "gate closed: not counting"
        );
        pit.write(0x61, GATE2, ns(100));
        assert_eq!(pit.read(0x61, ns(100 + 65533)) & OUT2, 0);
        assert_eq!(
            pit.read(0x61, ns(100 + 65536)) & OUT2,
            OUT2,
            "terminal count"
        );
    }
}
