//! Just enough ACPI to check gasang's tables: RSDP -> XSDT -> MADT and FADT -> DSDT.

use crate::{phys, port};

/// Table header offsets.
const LENGTH: u64 = 4;
const HEADER_LEN: u64 = 36;

fn checksum_ok(addr: u64, len: u64) -> bool {
    (0..len).fold(0u8, |a, i| a.wrapping_add(phys::<u8>(addr + i))) == 0
}

fn signature(addr: u64) -> u32 {
    phys(addr)
}

fn sig(name: &[u8; 4]) -> u32 {
    u32::from_le_bytes(*name)
}

fn length(table: u64) -> u64 {
    u64::from(phys::<u32>(table + LENGTH))
}

/// Validated tables.
pub struct Tables {
    rsdp: u64,
    xsdt: u64,
}

impl Tables {
    /// Checks the RSDP at `rsdp` and the XSDT it points to.
    pub fn find(rsdp: u64) -> Option<Self> {
        if rsdp == 0 || phys::<u64>(rsdp) != u64::from_le_bytes(*b"RSD PTR ") {
            return None;
        }
        if !checksum_ok(rsdp, 20) {
            return None;
        }
        let xsdt: u64 = phys(rsdp + 24);
        (signature(xsdt) == sig(b"XSDT") && checksum_ok(xsdt, length(xsdt)))
            .then_some(Self { rsdp, xsdt })
    }

    /// Prints the OEM ID from the RSDP.
    pub fn print_oem_id(&self) {
        for i in 0..6 {
            port::putc(phys(self.rsdp + 9 + i));
        }
    }

    /// The table with `name`, checksum verified.
    fn table(&self, name: &[u8; 4]) -> Option<u64> {
        let entries = (length(self.xsdt) - HEADER_LEN) / 8;
        (0..entries)
            .map(|i| phys::<u64>(self.xsdt + HEADER_LEN + i * 8))
            .find(|&t| signature(t) == sig(name))
            .filter(|&t| checksum_ok(t, length(t)))
    }

    /// Enabled processor-local-APIC entries in the MADT.
    pub fn enabled_cpus(&self) -> u32 {
        let Some(madt) = self.table(b"APIC") else {
            return 0;
        };
        let end = madt + length(madt);
        let (mut at, mut cpus) = (madt + 44, 0);
        while at + 2 <= end {
            let (kind, len) = (phys::<u8>(at), phys::<u8>(at + 1));
            if kind == 0 && phys::<u32>(at + 4) & 1 == 1 {
                cpus += 1;
            }
            if len == 0 {
                break;
            }
            at += u64::from(len);
        }
        cpus
    }

    /// SLP_TYPa of `\_S5` from the DSDT's AML.
    fn s5_sleep_type(dsdt: u64) -> Option<u16> {
        let at = (HEADER_LEN..length(dsdt) - 4).find(|&o| signature(dsdt + o) == sig(b"_S5_"))?;
        // NameOp "_S5_" PackageOp PkgLength NumElements, then the first element.
        let first = dsdt + at + 4 + 3;
        match phys::<u8>(first) {
            0x00 => Some(0),
            0x01 => Some(1),
            0x0a => Some(u16::from(phys::<u8>(first + 1))),
            _ => None,
        }
    }

    /// Writes the FADT's reset value to its reset register (an I/O port).
    pub fn reset(&self) {
        let Some(fadt) = self.table(b"FACP") else {
            return;
        };
        let port = phys::<u64>(fadt + 120) as u16;
        port::outb(port, phys(fadt + 128));
    }

    /// Writes SLP_TYP(S5) | SLP_EN to PM1a control, as an OS does to power off.
    pub fn power_off(&self) {
        let Some(fadt) = self.table(b"FACP") else {
            return;
        };
        let pm1a_cnt = phys::<u32>(fadt + 64) as u16;
        let dsdt: u64 = phys(fadt + 140);
        if let Some(slp_typ) = Self::s5_sleep_type(dsdt) {
            port::outw(pm1a_cnt, (slp_typ << 10) | (1 << 13));
        }
    }
}
