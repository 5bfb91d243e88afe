//! The legacy devices on the port bus, and the ACPI description of them.

use std::io::Write;
use std::sync::{Arc, Mutex};

use gasang_acpi::{AcpiMachine, IsaPort, PciHost, PmBlock};
use gasang_bus::{Bus, BusError};
use gasang_legacy::acpi_pm::{self, AcpiPm};
use gasang_legacy::ports::*;
use gasang_legacy::{Cmos, DebugExit, HostClock, PowerControl, PvPanic, Serial, I8042};
use gasang_memory::layout::MMIO_HOLE;
use gasang_memory::MemorySize;
use gasang_vcpu::{AccelVm, CpuTopology};

/// Devices the VMM thread drives after boot.
#[derive(Debug)]
pub struct LegacyDevices {
    /// COM1: the console.
    pub serial: Arc<Mutex<Serial>>,
    /// The ACPI PM block, whose power button the control socket presses.
    pub acpi_pm: Arc<Mutex<AcpiPm>>,
}

/// Creates the legacy devices and places them on `pio`.
pub fn attach(
    pio: &Bus,
    vm: &dyn AccelVm,
    power: Arc<dyn PowerControl>,
    console_out: Box<dyn Write + Send>,
    memory: MemorySize,
) -> Result<LegacyDevices, BusError> {
    let serial = Arc::new(Mutex::new(Serial::new(
        vm.irq_line(u32::from(SERIAL_IRQ)),
        console_out,
    )));
    pio.insert_named(
        "serial",
        serial.clone(),
        SERIAL_PORT.into(),
        SERIAL_LEN.into(),
    )?;
    let i8042 = Arc::new(Mutex::new(I8042::new(power.clone())));
    pio.insert_named("i8042", i8042, I8042_PORT.into(), I8042_LEN.into())?;
    let below_4g = memory.bytes().min(MMIO_HOLE);
    let cmos = Cmos::new(
        Box::new(HostClock::default()),
        below_4g,
        memory.bytes() - below_4g,
    );
    pio.insert_named(
        "cmos",
        Arc::new(Mutex::new(cmos)),
        CMOS_PORT.into(),
        CMOS_LEN.into(),
    )?;
    let debug_exit = Arc::new(Mutex::new(DebugExit::new(power.clone())));
    pio.insert_named(
        "debug-exit",
        debug_exit,
        DEBUG_EXIT_PORT.into(),
        DEBUG_EXIT_LEN.into(),
    )?;
    let pvpanic = Arc::new(Mutex::new(PvPanic::new(power.clone())));
    pio.insert_named("pvpanic", pvpanic, PVPANIC_PORT.into(), PVPANIC_LEN.into())?;
    let sci = vm.irq_line(u32::from(SCI_IRQ));
    let acpi_pm = Arc::new(Mutex::new(AcpiPm::new(
        sci,
        power,
        Box::new(HostClock::default()),
    )));
    pio.insert_named(
        "acpi-pm",
        acpi_pm.clone(),
        ACPI_PM_PORT.into(),
        ACPI_PM_LEN.into(),
    )?;
    Ok(LegacyDevices { serial, acpi_pm })
}

/// An ISA device of the device map, as ACPI describes it.
fn isa(base: u16, len: u16, irq: Option<u8>) -> IsaPort {
    let len = u8::try_from(len).expect("legacy devices span a few ports");
    IsaPort { base, len, irq }
}

/// The ACPI description of gasang's machine: its CPUs, the devices above, and the PCI
/// host bridge if there is one.
pub fn acpi_machine(topology: CpuTopology, pci: Option<PciHost>) -> AcpiMachine {
    let pm = |offset: u16| ACPI_PM_PORT + offset;
    AcpiMachine {
        topology,
        pm: PmBlock {
            pm1_evt: pm(acpi_pm::PM1_EVT),
            pm1_cnt: pm(acpi_pm::PM1_CNT),
            pm_tmr: pm(acpi_pm::PM_TMR),
            gpe0: pm(acpi_pm::GPE0),
            reset: pm(acpi_pm::RESET),
            reset_value: acpi_pm::RESET_VALUE,
            s5_slp_typ: acpi_pm::S5_SLP_TYP,
            sci_irq: SCI_IRQ,
            power_button_gpe: acpi_pm::POWER_BUTTON_GPE,
        },
        serial: vec![isa(SERIAL_PORT, SERIAL_LEN, Some(SERIAL_IRQ))],
        rtc: isa(CMOS_PORT, CMOS_LEN, None),
        pvpanic: isa(PVPANIC_PORT, PVPANIC_LEN, None),
        pci,
    }
}
