//! A local APIC (xAPIC register layout): interrupt requests and priorities, EOI, the
//! timer (one-shot, periodic, TSC deadline) and the interrupt command register.
//!
//! A pure state machine: time comes in as TSC values (`now`), and an IPI the guest
//! sends comes out of [`LocalApic::write`] for the platform to route.

/// Register offsets (bytes from the APIC base).
mod reg {
    pub const ID: u32 = 0x20;
    pub const VERSION: u32 = 0x30;
    pub const TPR: u32 = 0x80;
    pub const PPR: u32 = 0xa0;
    pub const EOI: u32 = 0xb0;
    pub const LDR: u32 = 0xd0;
    pub const DFR: u32 = 0xe0;
    pub const SVR: u32 = 0xf0;
    pub const ISR: u32 = 0x100;
    pub const TMR: u32 = 0x180;
    pub const IRR: u32 = 0x200;
    pub const ESR: u32 = 0x280;
    pub const ICR_LOW: u32 = 0x300;
    pub const ICR_HIGH: u32 = 0x310;
    pub const LVT_TIMER: u32 = 0x320;
    pub const LVT_ERROR: u32 = 0x370;
    pub const TIMER_INITIAL: u32 = 0x380;
    pub const TIMER_CURRENT: u32 = 0x390;
    pub const TIMER_DIVIDE: u32 = 0x3e0;
}

/// LVT: masked.
const MASKED: u32 = 1 << 16;
/// SVR: the APIC is software-enabled.
const APIC_ENABLED: u32 = 1 << 8;
/// The LVT timer's mode field.
const TIMER_MODE: u32 = 3 << 17;
const PERIODIC: u32 = 1 << 17;
const TSC_DEADLINE: u32 = 2 << 17;

/// An interprocessor interrupt the guest asked for by writing the ICR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipi {
    /// The vector (fixed delivery) or the SIPI page.
    pub vector: u8,
    /// Delivery mode: 0 fixed, 1 lowest priority, 4 NMI, 5 INIT, 6 start-up.
    pub mode: u8,
    /// Logical (flat) destination rather than physical.
    pub logical: bool,
    /// The destination field (ICR bits 56..64).
    pub destination: u8,
    /// Shorthand: 0 none, 1 self, 2 all including self, 3 all excluding self.
    pub shorthand: u8,
    /// The level bit: clear only in an INIT level de-assert, which does nothing.
    pub assert: bool,
}

/// A 256-bit register (IRR, ISR, TMR) as eight 32-bit words, as the guest reads it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Bits256([u32; 8]);

impl Bits256 {
    fn set(&mut self, v: u8, on: bool) {
        let (word, bit) = (usize::from(v / 32), v % 32);
        if on {
            self.0[word] |= 1 << bit;
        } else {
            self.0[word] &= !(1 << bit);
        }
    }

    fn get(&self, v: u8) -> bool {
        self.0[usize::from(v / 32)] & (1 << (v % 32)) != 0
    }

    /// The highest vector set.
    fn highest(&self) -> Option<u8> {
        (0..8).rev().find_map(|w| {
            let word = self.0[w];
            (word != 0).then(|| (w as u32 * 32 + 31 - word.leading_zeros()) as u8)
        })
    }
}

/// One local APIC.
#[derive(Debug, Clone)]
pub struct LocalApic {
    id: u8,
    tpr: u32,
    ldr: u32,
    dfr: u32,
    svr: u32,
    esr: u32,
    icr: u64,
    /// LVT entries 0x320..=0x370 (timer, thermal, PMC, LINT0, LINT1, error).
    lvt: [u32; 6],
    irr: Bits256,
    isr: Bits256,
    tmr: Bits256,
    timer: Timer,
}

/// The APIC timer, in TSC ticks.
#[derive(Debug, Clone, Copy, Default)]
struct Timer {
    initial: u32,
    divide_register: u32,
    /// When the current count period started (TSC), while counting.
    started: u64,
    /// The next expiry (TSC), if armed: count mode or TSC deadline.
    deadline: Option<u64>,
    /// IA32_TSC_DEADLINE as the guest wrote it.
    tsc_deadline: u64,
}

impl Timer {
    /// TSC ticks per count: the divide configuration (the APIC's bus runs at the TSC's
    /// rate here).
    fn divisor(&self) -> u64 {
        let code = (self.divide_register & 3) | ((self.divide_register >> 1) & 4);
        if code == 7 {
            1
        } else {
            2 << code
        }
    }
}

impl LocalApic {
    /// The APIC with `id`, in its reset state (software-disabled, every LVT masked).
    pub fn new(id: u8) -> Self {
        Self {
            id,
            tpr: 0,
            ldr: 0,
            dfr: u32::MAX,
            svr: 0xff,
            esr: 0,
            icr: 0,
            lvt: [MASKED; 6],
            irr: Bits256::default(),
            isr: Bits256::default(),
            tmr: Bits256::default(),
            timer: Timer::default(),
        }
    }

    /// This APIC's ID.
    pub fn id(&self) -> u8 {
        self.id
    }

    /// Whether a logical (flat-model) destination `mask` names this APIC.
    pub fn in_logical_destination(&self, mask: u8) -> bool {
        (self.ldr >> 24) as u8 & mask != 0
    }

    /// Requests interrupt `vector`; `level`: level-triggered (its EOI goes back to the
    /// IOAPIC). Vectors below 16 are illegal and dropped.
    pub fn request(&mut self, vector: u8, level: bool) {
        if vector >= 16 {
            self.irr.set(vector, true);
            self.tmr.set(vector, level);
        }
    }

    /// The processor priority: the higher of the task priority and the class of the
    /// highest interrupt in service.
    fn ppr(&self) -> u32 {
        let isr_class = self.isr.highest().map_or(0, |v| u32::from(v) & 0xf0);
        if self.tpr & 0xf0 >= isr_class {
            self.tpr & 0xff
        } else {
            isr_class
        }
    }

    /// The vector the CPU would take now, if any.
    pub fn pending(&self) -> Option<u8> {
        if self.svr & APIC_ENABLED == 0 {
            return None;
        }
        let v = self.irr.highest()?;
        (u32::from(v) & 0xf0 > self.ppr() & 0xf0).then_some(v)
    }

    /// The CPU takes the pending interrupt: it moves from requested to in service.
    pub fn take(&mut self) -> Option<u8> {
        let v = self.pending()?;
        self.irr.set(v, false);
        self.isr.set(v, true);
        Some(v)
    }

    /// Ends the highest interrupt in service; returns its vector if it was
    /// level-triggered (the IOAPIC must hear of it).
    fn eoi(&mut self) -> Option<u8> {
        let v = self.isr.highest()?;
        self.isr.set(v, false);
        self.tmr.get(v).then_some(v)
    }

    /// The timer's next expiry (TSC), if armed.
    pub fn timer_deadline(&self) -> Option<u64> {
        self.timer.deadline
    }

    /// Advances the timer to TSC `now`: an expiry requests the LVT timer's vector
    /// (unless masked) and a periodic timer re-arms.
    pub fn tick(&mut self, now: u64) {
        let Some(deadline) = self.timer.deadline else {
            return;
        };
        if now < deadline {
            return;
        }
        let lvt = self.lvt[0];
        if lvt & MASKED == 0 {
            self.request(lvt as u8, false);
        }
        self.timer.deadline = None;
        if lvt & TIMER_MODE == PERIODIC && self.timer.initial != 0 {
            let period = u64::from(self.timer.initial) * self.timer.divisor();
            // Missed periods are dropped, as a late timer on hardware would coalesce.
            let periods = (now - deadline) / period + 1;
            self.timer.started = deadline + (periods - 1) * period;
            self.timer.deadline = Some(deadline + periods * period);
        }
        if lvt & TIMER_MODE == TSC_DEADLINE {
            self.timer.tsc_deadline = 0;
        }
    }

    /// Writes IA32_TSC_DEADLINE (ignored unless the timer is in TSC-deadline mode).
    pub fn set_tsc_deadline(&mut self, value: u64) {
        if self.lvt[0] & TIMER_MODE != TSC_DEADLINE {
            return;
        }
        self.timer.tsc_deadline = value;
        self.timer.deadline = (value != 0).then_some(value);
    }

    /// Reads IA32_TSC_DEADLINE.
    pub fn tsc_deadline(&self) -> u64 {
        self.timer.tsc_deadline
    }

    fn current_count(&self, now: u64) -> u32 {
        match self.timer.deadline {
            Some(deadline) if self.lvt[0] & TIMER_MODE != TSC_DEADLINE && now < deadline => {
                ((deadline - now) / self.timer.divisor()) as u32
            }
            _ => 0,
        }
    }

    /// Reads the 32-bit register at `offset` at TSC `now`.
    pub fn read(&self, offset: u32, now: u64) -> u32 {
        let word = |bits: &Bits256| bits.0[((offset >> 4) & 7) as usize];
        match offset & !0xf {
            reg::ID => u32::from(self.id) << 24,
            // Version 0x14, six LVT entries (max LVT index 5), no EOI-broadcast suppression.
            reg::VERSION => 0x14 | (5 << 16),
            reg::TPR => self.tpr,
            reg::PPR => self.ppr(),
            reg::LDR => self.ldr,
            reg::DFR => self.dfr,
            reg::SVR => self.svr,
            o if (reg::ISR..reg::TMR).contains(&o) => word(&self.isr),
            o if (reg::TMR..reg::IRR).contains(&o) => word(&self.tmr),
            o if (reg::IRR..reg::ESR).contains(&o) => word(&self.irr),
            reg::ESR => self.esr,
            reg::ICR_LOW => self.icr as u32,
            reg::ICR_HIGH => (self.icr >> 32) as u32,
            o if (reg::LVT_TIMER..=reg::LVT_ERROR).contains(&o) => {
                self.lvt[((o - reg::LVT_TIMER) >> 4) as usize]
            }
            reg::TIMER_INITIAL => self.timer.initial,
            reg::TIMER_CURRENT => self.current_count(now),
            reg::TIMER_DIVIDE => self.timer.divide_register,
            _ => 0,
        }
    }

    /// Writes the 32-bit register at `offset` at TSC `now`. Returns what the platform
    /// must do: an IPI to route, or the vector of a level-triggered interrupt whose
    /// EOI the IOAPIC must hear.
    pub fn write(&mut self, offset: u32, value: u32, now: u64) -> Option<ApicAction> {
        match offset & !0xf {
            reg::TPR => self.tpr = value & 0xff,
            reg::EOI => return self.eoi().map(ApicAction::LevelEoi),
            reg::LDR => self.ldr = value & 0xff00_0000,
            reg::DFR => self.dfr = value | 0x0fff_ffff,
            reg::SVR => {
                self.svr = value & 0x3ff;
                if value & APIC_ENABLED == 0 {
                    // Software-disabling masks every LVT entry.
                    self.lvt.iter_mut().for_each(|l| *l |= MASKED);
                }
            }
            reg::ESR => self.esr = 0,
            reg::ICR_HIGH => self.icr = (self.icr & 0xffff_ffff) | (u64::from(value) << 32),
            reg::ICR_LOW => {
                // Delivery is immediate: the status bit (12) always reads idle.
                self.icr = (self.icr & !0xffff_ffff) | u64::from(value & !(1 << 12));
                return Some(ApicAction::Ipi(self.ipi()));
            }
            o if (reg::LVT_TIMER..=reg::LVT_ERROR).contains(&o) => {
                self.write_lvt(((o - reg::LVT_TIMER) >> 4) as usize, value);
            }
            reg::TIMER_INITIAL => self.start_count(value, now),
            reg::TIMER_DIVIDE => self.timer.divide_register = value & 0xb,
            _ => {}
        }
        None
    }

    fn write_lvt(&mut self, index: usize, value: u32) {
        let value = if self.svr & APIC_ENABLED == 0 {
            value | MASKED
        } else {
            value
        };
        if index == 0 && (value ^ self.lvt[0]) & TIMER_MODE != 0 {
            // A mode change disarms the timer.
            self.timer.deadline = None;
            self.timer.tsc_deadline = 0;
        }
        self.lvt[index] = value;
    }

    fn start_count(&mut self, initial: u32, now: u64) {
        if self.lvt[0] & TIMER_MODE == TSC_DEADLINE {
            return;
        }
        self.timer.initial = initial;
        self.timer.started = now;
        self.timer.deadline =
            (initial != 0).then(|| now + u64::from(initial) * self.timer.divisor());
    }

    fn ipi(&self) -> Ipi {
        let low = self.icr as u32;
        Ipi {
            vector: low as u8,
            mode: ((low >> 8) & 7) as u8,
            logical: low & (1 << 11) != 0,
            destination: (self.icr >> 56) as u8,
            shorthand: ((low >> 18) & 3) as u8,
            assert: low & (1 << 14) != 0,
        }
    }
}

/// What a register write asks of the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApicAction {
    /// Send this IPI.
    Ipi(Ipi),
    /// A level-triggered interrupt with this vector ended (EOI).
    LevelEoi(u8),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enabled() -> LocalApic {
        let mut apic = LocalApic::new(0);
        apic.write(reg::SVR, APIC_ENABLED | 0xff, 0);
        apic
    }

    #[test]
    fn test_priorities_isr_blocks_same_class_and_eoi_unblocks() {
        let mut apic = enabled();
        apic.request(0x41, false);
        assert_eq!(apic.take(), Some(0x41));
        apic.request(0x42, false);
        assert_eq!(
            apic.pending(),
            None,
            "same priority class as the one in service"
        );
        apic.request(0x51, false);
        assert_eq!(apic.take(), Some(0x51), "a higher class preempts");
        assert_eq!(apic.write(reg::EOI, 0, 0), None, "edge: no IOAPIC EOI");
        assert_eq!(
            apic.read(reg::ISR + 0x20, 0),
            1 << 1,
            "0x41 still in service"
        );
        apic.write(reg::EOI, 0, 0);
        assert_eq!(apic.take(), Some(0x42));
        apic.write(reg::TPR, 0x50, 0);
        apic.write(reg::EOI, 0, 0);
        apic.request(0x45, true);
        assert_eq!(apic.pending(), None, "below the task priority");
        apic.write(reg::TPR, 0, 0);
        assert_eq!(apic.take(), Some(0x45));
        assert_eq!(apic.write(reg::EOI, 0, 0), Some(ApicAction::LevelEoi(0x45)));
    }

    #[test]
    fn test_disabled_apic_delivers_nothing_and_masks_lvts() {
        let mut apic = LocalApic::new(3);
        apic.request(0x30, false);
        assert_eq!(apic.pending(), None);
        apic.write(reg::LVT_TIMER, 0x30, 0);
        assert_eq!(apic.read(reg::LVT_TIMER, 0) & MASKED, MASKED);
        assert_eq!(apic.read(reg::ID, 0), 3 << 24);
    }

    #[test]
    fn test_one_shot_and_periodic_timer_in_tsc_ticks() {
        let mut apic = enabled();
        apic.write(reg::TIMER_DIVIDE, 0xb, 0); // divide by 1
        apic.write(reg::LVT_TIMER, 0x20, 0);
        apic.write(reg::TIMER_INITIAL, 1000, 500);
        assert_eq!(apic.timer_deadline(), Some(1500));
        assert_eq!(apic.read(reg::TIMER_CURRENT, 1000), 500);
        apic.tick(1499);
        assert_eq!(apic.pending(), None);
        apic.tick(1500);
        assert_eq!(apic.take(), Some(0x20));
        assert_eq!(apic.timer_deadline(), None, "one-shot");
        apic.write(reg::EOI, 0, 0);
        apic.write(reg::LVT_TIMER, 0x21 | PERIODIC, 2000);
        apic.write(reg::TIMER_DIVIDE, 0x1, 2000); // divide by 4
        apic.write(reg::TIMER_INITIAL, 100, 2000);
        apic.tick(2950); // two periods missed: one interrupt, next on the grid
        assert_eq!(apic.take(), Some(0x21));
        assert_eq!(apic.timer_deadline(), Some(3200));
    }

    #[test]
    fn test_tsc_deadline_timer_fires_once_and_clears() {
        let mut apic = enabled();
        apic.set_tsc_deadline(5000);
        assert_eq!(apic.timer_deadline(), None, "not in TSC-deadline mode yet");
        apic.write(reg::LVT_TIMER, 0xec | TSC_DEADLINE, 0);
        apic.set_tsc_deadline(5000);
        apic.tick(4999);
        assert_eq!(apic.tsc_deadline(), 5000);
        apic.tick(5001);
        assert_eq!(apic.take(), Some(0xec));
        assert_eq!((apic.tsc_deadline(), apic.timer_deadline()), (0, None));
    }

    #[test]
    fn test_icr_write_asks_for_an_ipi() {
        let mut apic = enabled();
        apic.write(reg::ICR_HIGH, 2 << 24, 0);
        let action = apic.write(reg::ICR_LOW, 0x4600 | 0x9a, 0);
        let expected = Ipi {
            vector: 0x9a,
            mode: 6,
            logical: false,
            destination: 2,
            shorthand: 0,
            assert: true,
        };
        assert_eq!(action, Some(ApicAction::Ipi(expected)));
        apic.write(reg::LDR, 0x0400_0000, 0);
        assert!(apic.in_logical_destination(0x06));
        assert!(!apic.in_logical_destination(0x01));
    }
}
