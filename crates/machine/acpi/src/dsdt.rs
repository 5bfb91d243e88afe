//! The DSDT: the devices a guest cannot discover by probing, and the S5 sleep type.

use acpi_tables::aml::{
    Device, EISAName, Interrupt, Method, Name, Notify, Package, Path, ResourceTemplate, Scope, IO,
};
use acpi_tables::Aml;

use crate::pci::Raw;
use crate::{aml_table, bytes_of, AcpiMachine, IsaPort};

/// The notification a power button sends: "button pressed".
const NOTIFY_BUTTON_PRESSED: u8 = 0x80;

/// An ISA device `name` with hardware ID `hid` (an EISA ID such as "PNP0501", or a
/// string such as "QEMU0001"), unit `uid`, and `port`'s I/O range and IRQ.
fn isa_device(name: &str, hid: &dyn Aml, uid: u8, port: IsaPort) -> Vec<u8> {
    let io = IO::new(port.base, port.base, 1, port.len);
    let irq = port
        .irq
        .map(|n| Interrupt::new(true, true, false, false, u32::from(n)));
    let mut resources: Vec<&dyn Aml> = vec![&io];
    if let Some(irq) = &irq {
        resources.push(irq);
    }
    let crs = ResourceTemplate::new(resources);
    bytes_of(&Device::new(
        name.into(),
        vec![
            &Name::new("_HID".into(), hid),
            &Name::new("_UID".into(), &uid),
            &Name::new("_CRS".into(), &crs),
        ],
    ))
}

/// The `\_SB` scope: UARTs, RTC, power button, pvpanic.
fn system_bus(machine: &AcpiMachine) -> Vec<u8> {
    let mut devices: Vec<Raw> = machine
        .serial
        .iter()
        .enumerate()
        .map(|(i, port)| {
            let uid = u8::try_from(i).expect("a handful of UARTs");
            Raw(isa_device(
                &format!("COM{}", i + 1),
                &EISAName::new("PNP0501"),
                uid,
                *port,
            ))
        })
        .collect();
    devices.push(Raw(isa_device(
        "RTC0",
        &EISAName::new("PNP0B00"),
        0,
        machine.rtc,
    )));
    devices.push(Raw(isa_device("PEVT", &"QEMU0001", 0, machine.pvpanic)));
    devices.push(Raw(bytes_of(&Device::new(
        "PWRB".into(),
        vec![
            &Name::new("_HID".into(), &EISAName::new("PNP0C0C")),
            &Name::new("_UID".into(), &0u8),
        ],
    ))));
    if let Some(host) = &machine.pci {
        devices.push(Raw(crate::pci::devices(host)));
    }
    let children: Vec<&dyn Aml> = devices.iter().map(|d| d as &dyn Aml).collect();
    bytes_of(&Scope::new("_SB_".into(), children))
}

/// `\_GPE._Exx`: the power button's GPE notifies the button device.
fn gpe_handlers(machine: &AcpiMachine) -> Vec<u8> {
    let target = Path::new("\\_SB_.PWRB");
    let notify = Notify::new(&target, &NOTIFY_BUTTON_PRESSED);
    let method = format!("_E{:02X}", machine.pm.power_button_gpe);
    let handler = Method::new(method.as_str().into(), 0, false, vec![&notify]);
    bytes_of(&Scope::new("_GPE".into(), vec![&handler]))
}

/// The DSDT for `machine`, as bytes.
pub fn build(machine: &AcpiMachine) -> Vec<u8> {
    let slp = machine.pm.s5_slp_typ;
    let s5 = Name::new("_S5_".into(), &Package::new(vec![&slp, &slp, &0u8, &0u8]));
    let mut body = bytes_of(&s5);
    body.extend(system_bus(machine));
    body.extend(gpe_handlers(machine));
    aml_table(*b"DSDT", &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{checksum_ok, machine};

    #[test]
    fn test_dsdt_is_checksummed_and_names_its_devices() {
        let bytes = build(&machine(1));
        assert_eq!(&bytes[..4], b"DSDT");
        assert!(checksum_ok(&bytes));
        let len = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
        assert_eq!(len, bytes.len());
        let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
        for name in [
            &b"_S5_"[..],
            b"COM1",
            b"RTC0",
            b"PWRB",
            b"PEVT",
            b"QEMU0001",
            b"_E00",
        ] {
            assert!(has(name), "{}", String::from_utf8_lossy(name));
        }
    }
}
