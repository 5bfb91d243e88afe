//! The PCI host bridge as ACPI describes it: `\_SB.PCI0` with its windows and
//! interrupt routing, the ECAM area reserved as a motherboard resource, and the MCFG
//! table that points to it.

use acpi_tables::aml::{
    AddressSpace, AddressSpaceCacheable, Device, EISAName, Memory32Fixed, Name, Package,
    ResourceTemplate,
};
use acpi_tables::mcfg::MCFG;
use acpi_tables::Aml;

use crate::{bytes_of, OEM_ID, OEM_REVISION, OEM_TABLE_ID};

/// The host bridge's resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciHost {
    /// ECAM base (bus 0 only: 1 MiB).
    pub ecam: u64,
    /// The 32-bit memory window for BARs: start and end (exclusive).
    pub mmio32: (u64, u64),
    /// The 64-bit memory window above RAM: start and end (exclusive).
    pub mmio64: (u64, u64),
    /// The GSI of INTA for slot 0; pin P of slot S routes to `first_gsi + (S + P) % gsis`.
    pub first_gsi: u32,
    /// How many GSIs PCI interrupts share.
    pub gsis: u32,
}

/// Bytes of ECAM for one bus.
const ECAM_BUS: u64 = 1 << 20;

impl PciHost {
    /// The GSI that `slot`'s interrupt pin `pin` (0 = INTA) raises.
    pub fn gsi(&self, slot: u32, pin: u32) -> u32 {
        self.first_gsi + (slot + pin) % self.gsis
    }
}

/// `_PRT`: for every slot and pin, the GSI it raises (no link devices).
fn routing(host: &PciHost) -> Vec<u8> {
    /// Address (slot << 16 | 0xffff: any function), pin, GSI.
    struct Entry(u32, u32, u32);
    impl Aml for Entry {
        fn to_aml_bytes(&self, sink: &mut dyn acpi_tables::AmlSink) {
            Package::new(vec![&self.0, &self.1, &0u8, &self.2]).to_aml_bytes(sink);
        }
    }
    let entries: Vec<Entry> = (0..32u32)
        .flat_map(|slot| (0..4u32).map(move |pin| (slot, pin)))
        .map(|(slot, pin)| Entry(slot << 16 | 0xffff, pin, host.gsi(slot, pin)))
        .collect();
    let children: Vec<&dyn Aml> = entries.iter().map(|e| e as &dyn Aml).collect();
    bytes_of(&Name::new("_PRT".into(), &Package::new(children)))
}

/// `\_SB.PCI0` and the motherboard resource reserving ECAM, as AML bytes.
pub fn devices(host: &PciHost) -> Vec<u8> {
    let buses = AddressSpace::<u16>::new_bus_number(0, 0);
    let mmio32 = AddressSpace::<u32>::new_memory(
        AddressSpaceCacheable::NotCacheable,
        true,
        host.mmio32.0 as u32,
        (host.mmio32.1 - 1) as u32,
        None,
    );
    let mmio64 = AddressSpace::<u64>::new_memory(
        AddressSpaceCacheable::NotCacheable,
        true,
        host.mmio64.0,
        host.mmio64.1 - 1,
        None,
    );
    let crs = ResourceTemplate::new(vec![&buses, &mmio32, &mmio64]);
    let prt = Raw(routing(host));
    let mut bytes = bytes_of(&Device::new(
        "PCI0".into(),
        vec![
            &Name::new("_HID".into(), &EISAName::new("PNP0A08")),
            &Name::new("_CID".into(), &EISAName::new("PNP0A03")),
            &Name::new("_ADR".into(), &0u8),
            &Name::new("_SEG".into(), &0u8),
            &Name::new("_UID".into(), &0u8),
            &Name::new("_BBN".into(), &0u8),
            &Name::new("_CRS".into(), &crs),
            &prt,
        ],
    ));
    let ecam = Memory32Fixed::new(true, host.ecam as u32, ECAM_BUS as u32);
    bytes.extend(bytes_of(&Device::new(
        "RES0".into(),
        vec![
            &Name::new("_HID".into(), &EISAName::new("PNP0C02")),
            &Name::new("_UID".into(), &1u8),
            &Name::new("_CRS".into(), &ResourceTemplate::new(vec![&ecam])),
        ],
    )));
    bytes
}

/// The MCFG table: ECAM for segment 0, bus 0.
pub fn mcfg(host: &PciHost) -> Vec<u8> {
    let mut table = MCFG::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    table.add_ecam(host.ecam, 0, 0, 0);
    bytes_of(&table)
}

/// Raw AML, for nesting pre-built pieces.
pub(crate) struct Raw(pub Vec<u8>);

impl Aml for Raw {
    fn to_aml_bytes(&self, sink: &mut dyn acpi_tables::AmlSink) {
        sink.vec(&self.0);
    }
}
