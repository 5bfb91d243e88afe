//! A hostile guest's port I/O: every legacy device on one bus, driven by arbitrary
//! reads and writes of any width at any port. Nothing may panic or hang.

#![no_main]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use gasang_bus::{Bus, NoIrq};
use gasang_legacy::acpi_pm::AcpiPm;
use gasang_legacy::ports::*;
use gasang_legacy::{Clock, Cmos, DebugExit, PowerControl, PowerEvent, PvPanic, Serial, I8042};
use libfuzzer_sys::fuzz_target;

struct Ignore;

impl PowerControl for Ignore {
    fn power_event(&self, _: PowerEvent) {}
}

struct FixedClock;

impl Clock for FixedClock {
    fn wall_seconds(&self) -> i64 {
        1_795_442_709
    }
    fn monotonic(&self) -> Duration {
        Duration::from_millis(1234)
    }
}

fn machine() -> Bus {
    let bus = Bus::new();
    let power: Arc<dyn PowerControl> = Arc::new(Ignore);
    let serial = Serial::new(Box::new(NoIrq), Box::new(std::io::sink()));
    let cmos = Cmos::new(Box::new(FixedClock), 256 << 20, 1 << 30);
    let pm = AcpiPm::new(Box::new(NoIrq), power.clone(), Box::new(FixedClock));
    let devices: [(Arc<Mutex<dyn gasang_bus::BusDevice>>, u16, u16); 6] = [
        (Arc::new(Mutex::new(serial)), SERIAL_PORT, SERIAL_LEN),
        (
            Arc::new(Mutex::new(I8042::new(power.clone()))),
            I8042_PORT,
            I8042_LEN,
        ),
        (Arc::new(Mutex::new(cmos)), CMOS_PORT, CMOS_LEN),
        (
            Arc::new(Mutex::new(DebugExit::new(power.clone()))),
            DEBUG_EXIT_PORT,
            DEBUG_EXIT_LEN,
        ),
        (
            Arc::new(Mutex::new(PvPanic::new(power))),
            PVPANIC_PORT,
            PVPANIC_LEN,
        ),
        (Arc::new(Mutex::new(pm)), ACPI_PM_PORT, ACPI_PM_LEN),
    ];
    for (device, base, len) in devices {
        bus.insert(device, base.into(), len.into())
            .expect("the device map does not overlap");
    }
    bus
}

/// Ports worth hitting: each device's range, a little beyond it.
const TARGETS: [u16; 6] = [
    SERIAL_PORT,
    I8042_PORT,
    CMOS_PORT,
    DEBUG_EXIT_PORT,
    PVPANIC_PORT,
    ACPI_PM_PORT,
];

fuzz_target!(|data: &[u8]| {
    let bus = machine();
    // Each access: [device+write bit, offset, size, value...].
    for op in data.chunks(7) {
        let [selector, offset, size, rest @ ..] = op else {
            break;
        };
        let port = TARGETS[usize::from(selector & 0x7f) % TARGETS.len()] + u16::from(offset & 0x3f);
        let width = [1, 2, 4][usize::from(*size) % 3].min(rest.len().max(1));
        if selector & 0x80 != 0 {
            bus.write(port.into(), &rest[..width.min(rest.len())]);
        } else {
            let mut buf = [0u8; 4];
            bus.read(port.into(), &mut buf[..width]);
        }
    }
});
