//! ACPI tables for a gasang machine, built with the `acpi_tables` crate.
//!
//! Stock distribution kernels (Debian's, for one) have no MP-table support: they learn
//! the CPUs, the IOAPIC, the power-management registers, and how to power off and
//! reboot, from these tables alone.
//!
//! Layout from [`ACPI_TABLES`]: RSDP first (where Linux scans for it), then FACS, DSDT,
//! FADT, MADT, MCFG (with PCI) and XSDT.

mod dsdt;
mod fadt;
mod madt;
mod pci;

pub use pci::PciHost;

use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use acpi_tables::Aml;
use gasang_memory::layout::{ACPI_TABLES, ACPI_TABLES_END};
use gasang_memory::GuestMemory;
use gasang_vcpu::CpuTopology;
use vm_memory::{Bytes, GuestAddress};

/// OEM ID in every table header.
pub const OEM_ID: [u8; 6] = *b"GASANG";
/// OEM table ID in every table header.
pub const OEM_TABLE_ID: [u8; 8] = *b"GASANGVM";
/// OEM revision in every table header.
pub const OEM_REVISION: u32 = 1;

/// The ACPI power-management register block (port I/O), as the PM device decodes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PmBlock {
    /// PM1a event block (status + enable, 4 bytes).
    pub pm1_evt: u16,
    /// PM1a control block (2 bytes).
    pub pm1_cnt: u16,
    /// PM timer (4 bytes, 24- or 32-bit counter at 3.579545 MHz).
    pub pm_tmr: u16,
    /// GPE0 block (status + enable, 4 bytes: 16 GPEs).
    pub gpe0: u16,
    /// Reset register (1 byte).
    pub reset: u16,
    /// The value that resets the machine when written to `reset`.
    pub reset_value: u8,
    /// SLP_TYP meaning S5 (soft off) in PM1 control.
    pub s5_slp_typ: u8,
    /// The SCI's IRQ (level-triggered, active high).
    pub sci_irq: u8,
    /// GPE number the power button raises.
    pub power_button_gpe: u8,
}

/// An ISA device with one I/O range and, optionally, an IRQ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IsaPort {
    /// First port.
    pub base: u16,
    /// Number of ports.
    pub len: u8,
    /// ISA IRQ, if it has one.
    pub irq: Option<u8>,
}

/// What the tables describe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcpiMachine {
    /// CPUs (one LAPIC each in the MADT).
    pub topology: CpuTopology,
    /// Power management.
    pub pm: PmBlock,
    /// 16550 UARTs (PNP0501).
    pub serial: Vec<IsaPort>,
    /// The CMOS RTC (PNP0B00).
    pub rtc: IsaPort,
    /// The pvpanic device (QEMU0001).
    pub pvpanic: IsaPort,
    /// The PCI host bridge, if the machine has PCI devices.
    pub pci: Option<PciHost>,
}

/// The tables could not be written.
#[derive(Debug, thiserror::Error)]
pub enum AcpiError {
    /// More tables than the area reserved for them.
    #[error("the ACPI tables ({0} bytes) do not fit in their reserved area")]
    TooLarge(u64),
    /// The write into guest memory failed.
    #[error("cannot write the ACPI tables into guest memory")]
    Memory(#[source] vm_memory::GuestMemoryError),
}

/// Places tables one after another, each aligned.
struct Cursor<'a> {
    memory: &'a GuestMemory,
    next: u64,
}

impl Cursor<'_> {
    fn place(&mut self, bytes: &[u8], align: u64) -> Result<u64, AcpiError> {
        let addr = self.next.next_multiple_of(align);
        let end = addr + bytes.len() as u64;
        if end > ACPI_TABLES_END {
            return Err(AcpiError::TooLarge(end - ACPI_TABLES));
        }
        self.memory
            .write_slice(bytes, GuestAddress(addr))
            .map_err(AcpiError::Memory)?;
        self.next = end;
        Ok(addr)
    }
}

fn bytes_of(table: &dyn Aml) -> Vec<u8> {
    let mut bytes = Vec::new();
    table.to_aml_bytes(&mut bytes);
    bytes
}

/// Writes all tables and returns the RSDP's address.
pub fn write_tables(memory: &GuestMemory, machine: &AcpiMachine) -> Result<u64, AcpiError> {
    let rsdp_len = Rsdp::len() as u64;
    let mut cursor = Cursor {
        memory,
        next: ACPI_TABLES + rsdp_len,
    };
    let facs = cursor.place(&bytes_of(&acpi_tables::facs::FACS::new()), 64)?;
    let dsdt = cursor.place(&dsdt::build(machine), 16)?;
    let fadt = cursor.place(&bytes_of(&fadt::build(&machine.pm, facs, dsdt)), 16)?;
    let madt = cursor.place(&madt::build(machine), 16)?;
    let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    xsdt.add_entry(fadt);
    xsdt.add_entry(madt);
    if let Some(host) = &machine.pci {
        xsdt.add_entry(cursor.place(&pci::mcfg(host), 16)?);
    }
    let xsdt = cursor.place(&bytes_of(&xsdt), 16)?;
    let rsdp = Rsdp::new(OEM_ID, xsdt);
    memory
        .write_slice(&bytes_of(&rsdp), GuestAddress(ACPI_TABLES))
        .map_err(AcpiError::Memory)?;
    Ok(ACPI_TABLES)
}

/// An SDT with AML `body` (the DSDT).
fn aml_table(signature: [u8; 4], body: &[u8]) -> Vec<u8> {
    let mut sdt = Sdt::new(signature, 36, 2, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    sdt.append_slice(body);
    sdt.as_slice().to_vec()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn machine(vcpus: u32) -> AcpiMachine {
        AcpiMachine {
            topology: CpuTopology::new(vcpus).unwrap(),
            pm: PmBlock {
                pm1_evt: 0x600,
                pm1_cnt: 0x604,
                pm_tmr: 0x608,
                gpe0: 0x60c,
                reset: 0x610,
                reset_value: 1,
                s5_slp_typ: 5,
                sci_irq: 9,
                power_button_gpe: 0,
            },
            serial: vec![IsaPort {
                base: 0x3f8,
                len: 8,
                irq: Some(4),
            }],
            rtc: IsaPort {
                base: 0x70,
                len: 2,
                irq: None,
            },
            pvpanic: IsaPort {
                base: 0x505,
                len: 1,
                irq: None,
            },
            pci: None,
        }
    }

    pub fn checksum_ok(bytes: &[u8]) -> bool {
        bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)) == 0
    }

    fn read(memory: &GuestMemory, addr: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        memory.read_slice(&mut buf, GuestAddress(addr)).unwrap();
        buf
    }

    #[test]
    fn test_write_tables_rsdp_points_to_xsdt_listing_fadt_and_madt() {
        let memory = GuestMemory::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap();
        let rsdp = write_tables(&memory, &machine(2)).unwrap();
        let rsdp = read(&memory, rsdp, 36);
        assert_eq!(&rsdp[..8], b"RSD PTR ");
        assert!(checksum_ok(&rsdp[..20]) && checksum_ok(&rsdp));
        let xsdt_addr = u64::from_le_bytes(rsdp[24..32].try_into().unwrap());
        let xsdt = read(&memory, xsdt_addr, 36 + 16);
        assert_eq!(&xsdt[..4], b"XSDT");
        assert!(checksum_ok(&xsdt));
        let entries: Vec<String> = xsdt[36..]
            .chunks(8)
            .map(|e| u64::from_le_bytes(e.try_into().unwrap()))
            .map(|a| String::from_utf8(read(&memory, a, 4)).unwrap())
            .collect();
        assert_eq!(entries, ["FACP", "APIC"]);
    }
}
