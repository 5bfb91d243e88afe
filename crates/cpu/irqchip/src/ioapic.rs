//! An I/O APIC (82093AA register layout, 24 inputs): routes interrupt lines to local
//! APICs by its redirection table, with level-triggered lines held until their EOI.
//!
//! A pure state machine: deliveries come out of [`IoApic::set_level`] and
//! [`IoApic::eoi`] for the platform to hand to the local APICs.

/// Inputs (GSIs 0..24).
pub const PINS: usize = 24;

/// Redirection entry bits.
const MASKED: u64 = 1 << 16;
const LEVEL: u64 = 1 << 15;
const REMOTE_IRR: u64 = 1 << 14;
const LOGICAL: u64 = 1 << 11;

/// An interrupt for the local APICs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// The vector.
    pub vector: u8,
    /// Delivery mode: 0 fixed, 1 lowest priority (delivered as fixed to the first
    /// APIC named), others as the entry says.
    pub mode: u8,
    /// Logical (flat) destination rather than physical.
    pub logical: bool,
    /// The destination field.
    pub destination: u8,
    /// Level-triggered: the local APIC reports its EOI back.
    pub level: bool,
}

/// The I/O APIC.
#[derive(Debug, Clone)]
pub struct IoApic {
    id: u8,
    /// IOREGSEL.
    select: u8,
    redirection: [u64; PINS],
    /// Each input's current level (edge inputs: set while high).
    levels: u32,
}

impl IoApic {
    /// An I/O APIC with `id`, every entry masked.
    pub fn new(id: u8) -> Self {
        Self {
            id,
            select: 0,
            redirection: [MASKED; PINS],
            levels: 0,
        }
    }

    fn delivery(entry: u64) -> Delivery {
        Delivery {
            vector: entry as u8,
            mode: ((entry >> 8) & 7) as u8,
            logical: entry & LOGICAL != 0,
            destination: (entry >> 56) as u8,
            level: entry & LEVEL != 0,
        }
    }

    /// Input `pin` goes to `high`. Returns the interrupt to deliver, if any: on a rising
    /// edge, or while a level input is high and not already being serviced.
    pub fn set_level(&mut self, pin: usize, high: bool) -> Option<Delivery> {
        let entry = *self.redirection.get(pin)?;
        let was_high = self.levels & (1 << pin) != 0;
        if high {
            self.levels |= 1 << pin;
        } else {
            self.levels &= !(1 << pin);
        }
        let fire = if entry & LEVEL != 0 {
            high && entry & REMOTE_IRR == 0
        } else {
            high && !was_high
        };
        self.fire(pin, fire)
    }

    fn fire(&mut self, pin: usize, fire: bool) -> Option<Delivery> {
        let entry = self.redirection[pin];
        if !fire || entry & MASKED != 0 {
            return None;
        }
        if entry & LEVEL != 0 {
            self.redirection[pin] |= REMOTE_IRR;
        }
        Some(Self::delivery(entry))
    }

    /// A local APIC ended level-triggered `vector`: its inputs take interrupts again,
    /// and one still high fires again.
    pub fn eoi(&mut self, vector: u8) -> Vec<Delivery> {
        let mut again = Vec::new();
        for pin in 0..PINS {
            let entry = self.redirection[pin];
            if entry & REMOTE_IRR != 0 && entry as u8 == vector {
                self.redirection[pin] &= !REMOTE_IRR;
                let high = self.levels & (1 << pin) != 0;
                again.extend(self.fire(pin, high));
            }
        }
        again
    }

    /// Reads the 32-bit register at `offset` from the base (IOREGSEL at 0, IOWIN at
    /// 0x10).
    pub fn read(&self, offset: u64) -> u32 {
        if offset != 0x10 {
            return if offset == 0 {
                u32::from(self.select)
            } else {
                0
            };
        }
        match self.select {
            0 => u32::from(self.id) << 24,
            // Version 0x20, maximum redirection entry 23.
            1 => 0x20 | ((PINS as u32 - 1) << 16),
            2 => u32::from(self.id) << 24,
            i @ 0x10..=0x3f => {
                let entry = self.redirection[usize::from(i - 0x10) / 2];
                if i % 2 == 0 {
                    entry as u32
                } else {
                    (entry >> 32) as u32
                }
            }
            _ => 0,
        }
    }

    /// Writes the 32-bit register at `offset`. Unmasking a level input that is high
    /// delivers it.
    pub fn write(&mut self, offset: u64, value: u32) -> Option<Delivery> {
        match offset {
            0 => self.select = value as u8,
            0x10 => match self.select {
                0 => self.id = ((value >> 24) & 0xf) as u8,
                i @ 0x10..=0x3f => {
                    let pin = usize::from(i - 0x10) / 2;
                    let entry = &mut self.redirection[pin];
                    // Delivery status (12) and remote IRR (14) are read-only.
                    let keep = (1 << 12) | REMOTE_IRR;
                    *entry = if i % 2 == 0 {
                        (*entry & (!0xffff_ffff | keep)) | (u64::from(value) & !keep)
                    } else {
                        (*entry & 0xffff_ffff) | (u64::from(value) << 32)
                    };
                    let high = self.levels & (1 << pin) != 0;
                    let level = *entry & LEVEL != 0 && *entry & REMOTE_IRR == 0;
                    return self.fire(pin, high && level);
                }
                _ => {}
            },
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program(io: &mut IoApic, pin: u8, low: u32, high: u32) {
        io.write(0, u32::from(0x10 + 2 * pin));
        io.write(0x10, low);
        io.write(0, u32::from(0x11 + 2 * pin));
        io.write(0x10, high);
    }

    #[test]
    fn test_edge_input_fires_on_rising_edges_only() {
        let mut io = IoApic::new(0);
        assert_eq!(io.set_level(4, true), None, "masked after reset");
        io.set_level(4, false);
        program(&mut io, 4, 0x24, 1 << 24);
        let d = io.set_level(4, true).unwrap();
        assert_eq!((d.vector, d.destination, d.level), (0x24, 1, false));
        assert_eq!(io.set_level(4, true), None, "no edge");
        io.set_level(4, false);
        assert!(io.set_level(4, true).is_some());
    }

    #[test]
    fn test_level_input_waits_for_eoi_and_fires_again_while_high() {
        let mut io = IoApic::new(0);
        program(&mut io, 9, 0x39 | LEVEL as u32, 0);
        assert!(io.set_level(9, true).is_some());
        assert_eq!(io.set_level(9, true), None, "remote IRR set");
        io.write(0, 0x10 + 2 * 9);
        assert_ne!(io.read(0x10) & REMOTE_IRR as u32, 0);
        let again = io.eoi(0x39);
        assert_eq!(again.len(), 1, "still high");
        io.set_level(9, false);
        assert!(io.eoi(0x39).is_empty());
        assert!(io.set_level(9, true).is_some());
    }

    #[test]
    fn test_version_and_id_registers() {
        let mut io = IoApic::new(0);
        io.write(0, 1);
        assert_eq!(io.read(0x10), 0x0017_0020);
        io.write(0, 0);
        io.write(0x10, 5 << 24);
        assert_eq!(io.read(0x10), 5 << 24);
    }
}
