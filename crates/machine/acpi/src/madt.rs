//! The MADT: one local APIC per vCPU, the IOAPIC, the SCI's override and LINT1 as NMI.

use acpi_tables::madt::{
    EnabledStatus, IoApic, LocalInterruptController, ProcessorLocalApic, MADT,
};
use acpi_tables::{Aml, AmlSink};
use gasang_memory::layout::{IOAPIC, LAPIC};
use zerocopy::{Immutable, IntoBytes};

use crate::{bytes_of, AcpiMachine, OEM_ID, OEM_REVISION, OEM_TABLE_ID};

/// MADT flag: the machine also has dual 8259 PICs.
const PCAT_COMPAT: u32 = 1;
/// MPS INTI flags: active high (01), level triggered (11 << 2).
const LEVEL_ACTIVE_HIGH: u16 = 0b1101;

/// Interrupt Source Override (MADT structure type 2): ISA IRQ `source` is GSI `gsi`.
#[repr(C, packed)]
#[derive(Clone, Copy, IntoBytes, Immutable)]
struct InterruptSourceOverride {
    kind: u8,
    length: u8,
    bus: u8,
    source: u8,
    gsi: u32,
    flags: u16,
}

impl Aml for InterruptSourceOverride {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        sink.vec(self.as_bytes());
    }
}

/// Local APIC NMI (MADT structure type 4): which LINT pin carries NMI.
#[repr(C, packed)]
#[derive(Clone, Copy, IntoBytes, Immutable)]
struct LocalApicNmi {
    kind: u8,
    length: u8,
    processor_uid: u8,
    flags: u16,
    lint: u8,
}

impl Aml for LocalApicNmi {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        sink.vec(self.as_bytes());
    }
}

/// Offset of the MADT's flags, and of every table's checksum byte.
const FLAGS_OFFSET: usize = 40;
const CHECKSUM_OFFSET: usize = 9;

/// The MADT for `machine`, as bytes.
pub fn build(machine: &AcpiMachine) -> Vec<u8> {
    let mut bytes = bytes_of(&structures(machine));
    // `acpi_tables` has no setter for the MADT flags: set PCAT_COMPAT and re-checksum.
    bytes[FLAGS_OFFSET..FLAGS_OFFSET + 4].copy_from_slice(&PCAT_COMPAT.to_le_bytes());
    bytes[CHECKSUM_OFFSET] = 0;
    let sum = bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b));
    bytes[CHECKSUM_OFFSET] = sum.wrapping_neg();
    bytes
}

fn structures(machine: &AcpiMachine) -> MADT {
    let lapic = u32::try_from(LAPIC).expect("the LAPIC is below 4 GiB");
    let mut madt = MADT::new(
        OEM_ID,
        OEM_TABLE_ID,
        OEM_REVISION,
        LocalInterruptController::Address(lapic),
    );
    for index in 0..machine.topology.vcpus() {
        let id = u8::try_from(machine.topology.apic_id(index)).expect("at most 254 vCPUs");
        let uid = u8::try_from(index).expect("at most 254 vCPUs");
        madt.add_structure(ProcessorLocalApic::new(uid, id, EnabledStatus::Enabled));
    }
    let ioapic = u32::try_from(IOAPIC).expect("the IOAPIC is below 4 GiB");
    madt.add_structure(IoApic::new(0, ioapic, 0));
    let sci = machine.pm.sci_irq;
    madt.add_structure(InterruptSourceOverride {
        kind: 2,
        length: 10,
        bus: 0,
        source: sci,
        gsi: u32::from(sci),
        flags: LEVEL_ACTIVE_HIGH,
    });
    madt.add_structure(LocalApicNmi {
        kind: 4,
        length: 6,
        processor_uid: 0xff,
        flags: 0,
        lint: 1,
    });
    madt
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{checksum_ok, machine};

    #[test]
    fn test_madt_lists_one_enabled_lapic_per_vcpu() {
        let bytes = build(&machine(3));
        assert_eq!(&bytes[..4], b"APIC");
        assert!(checksum_ok(&bytes));
        assert_eq!(bytes[FLAGS_OFFSET], 1, "PCAT_COMPAT");
        let mut kinds = Vec::new();
        let mut offset = 44;
        while offset < bytes.len() {
            kinds.push((bytes[offset], bytes[offset + 3]));
            offset += usize::from(bytes[offset + 1]);
        }
        assert_eq!(kinds.iter().filter(|k| k.0 == 0).count(), 3);
        assert_eq!(kinds[2], (0, 2), "LAPIC with APIC ID 2");
        assert!(kinds.iter().any(|k| k.0 == 1), "an IOAPIC");
        assert!(kinds.iter().any(|k| k.0 == 2), "the SCI override");
    }
}
