//! The FADT: where the power-management registers are, and how to reset.

use acpi_tables::fadt::{FADTBuilder, Flags, PmProfile, FADT};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};

use crate::{PmBlock, OEM_ID, OEM_REVISION, OEM_TABLE_ID};

/// IA-PC boot architecture flags: legacy ISA devices present. The 8042 flag stays clear
/// so that Linux skips a slow keyboard-controller probe; reset via the 8042 still works.
const IAPC_LEGACY_DEVICES: u16 = 1;
/// CMOS register holding the century.
const CMOS_CENTURY: u8 = 0x32;

fn io_gas(port: u16, bytes: u8) -> GAS {
    GAS::new(
        AddressSpace::SystemIo,
        bytes * 8,
        0,
        AccessSize::Undefined,
        u64::from(port),
    )
}

/// The FADT pointing at `facs` and `dsdt`.
pub fn build(pm: &PmBlock, facs: u64, dsdt: u64) -> FADT {
    let mut b = FADTBuilder::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION)
        .firmware_ctrl_64(facs)
        .dsdt_64(dsdt)
        .preferred_pm_profile(PmProfile::EnterpriseServer)
        // No fixed-feature buttons: the power button is a control-method device (DSDT).
        .flag(Flags::PwrButton)
        .flag(Flags::SlpButton)
        .flag(Flags::Wbinvd)
        .flag(Flags::ProcC1)
        .flag(Flags::TmrValExt)
        .flag(Flags::ResetRegSup)
        .gpe_info(u32::from(pm.gpe0), 0, 4, 0, 0);
    b.sci_int = u16::from(pm.sci_irq).into();
    // No SMI command port: the machine is always in ACPI mode (SCI_EN reads as set).
    b.smi_cmd = 0.into();
    b.pm1a_evt_blk = u32::from(pm.pm1_evt).into();
    b.pm1a_cnt_blk = u32::from(pm.pm1_cnt).into();
    b.pm_tmr_blk = u32::from(pm.pm_tmr).into();
    (b.pm1_evt_len, b.pm1_cnt_len, b.pm_tmr_len) = (4, 2, 4);
    b.x_pm1a_evt_blk = io_gas(pm.pm1_evt, 4);
    b.x_pm1a_cnt_blk = io_gas(pm.pm1_cnt, 2);
    b.x_pm_tmr_blk = io_gas(pm.pm_tmr, 4);
    b.x_gpe0_blk = io_gas(pm.gpe0, 4);
    b.reset_reg = GAS::new(
        AddressSpace::SystemIo,
        8,
        0,
        AccessSize::ByteAccess,
        pm.reset.into(),
    );
    b.reset_value = pm.reset_value;
    b.century = CMOS_CENTURY;
    b.iapc_boot_arch = IAPC_LEGACY_DEVICES.into();
    b.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bytes_of;
    use crate::tests::{checksum_ok, machine};

    #[test]
    fn test_fadt_has_pm_ports_sci_and_reset_register() {
        let bytes = bytes_of(&build(&machine(1).pm, 0xe0040, 0xe0080));
        let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]);
        let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap());
        assert_eq!(&bytes[..4], b"FACP");
        assert!(checksum_ok(&bytes));
        assert_eq!(u16_at(46), 9, "SCI_INT");
        assert_eq!(u32_at(48), 0, "SMI_CMD");
        assert_eq!(
            (u32_at(56), u32_at(64), u32_at(76), u32_at(80)),
            (0x600, 0x604, 0x608, 0x60c)
        );
        assert_eq!((bytes[88], bytes[89], bytes[91], bytes[92]), (4, 2, 4, 4));
        assert_eq!(bytes[108], 0x32, "century register");
        let flags = u32_at(112);
        assert_ne!(flags & (1 << 10), 0, "RESET_REG_SUP");
        assert_ne!(flags & (1 << 4), 0, "no fixed power button");
        assert_eq!(bytes[116], 1, "reset register in I/O space");
        assert_eq!(u16::from_le_bytes([bytes[120], bytes[121]]), 0x610);
        assert_eq!(bytes[128], 1, "reset value");
    }
}
