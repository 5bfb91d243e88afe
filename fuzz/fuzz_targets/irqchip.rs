//! A hostile guest's interrupt-controller and timer traffic (the software backend's
//! LAPIC, I/O APIC and PIT): arbitrary register reads and writes, interrupt lines,
//! acknowledgements and time steps, in any order. Nothing may panic or hang.

#![no_main]

use gasang_irqchip::{IoApic, LocalApic, Pit};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (mut apic, mut ioapic, mut pit) = (LocalApic::new(0), IoApic::new(1), Pit::new());
    let mut now: u64 = 0;
    for op in data.chunks(7) {
        let [kind, a, b, c, d, e, f] = <[u8; 7]>::try_from(op).unwrap_or([0; 7]);
        let value = u32::from_le_bytes([c, d, e, f]);
        let offset = u32::from(a) << 4 | u32::from(b & 0xf);
        match kind % 10 {
            0 => drop(apic.read(offset & 0xfff, now)),
            1 => drop(apic.write(offset & 0xfff, value, now)),
            2 => apic.request(a, b & 1 != 0),
            3 => drop(apic.take()),
            4 => apic.set_tsc_deadline(u64::from(value)),
            5 => drop(ioapic.write(u64::from(a & 0x10), value)),
            6 => drop(ioapic.set_level(usize::from(a), b & 1 != 0)),
            7 => drop(ioapic.eoi(a)),
            8 => match b % 3 {
                0 => pit.write(0x40 + u16::from(a % 4), c, now),
                1 => pit.write(0x61, c, now),
                _ => drop(pit.read(0x40 + u16::from(a % 4), now) ^ pit.read(0x61, now)),
            },
            _ => {
                now = now.saturating_add(u64::from(value) << (b % 24));
                apic.tick(now);
                (0..4).for_each(|_| drop(pit.tick(now)));
                drop(ioapic.read(u64::from(a & 0x10)));
            }
        }
    }
});
