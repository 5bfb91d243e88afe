//! The bootstrap CPU's entry state: the boot GDT, identity page tables and registers.

use gasang_memory::layout::{BOOT_GDT, BOOT_IDT, BOOT_STACK, PD, PDPT, PML4, PVH_INFO, ZERO_PAGE};
use gasang_memory::GuestMemory;
use gasang_vcpu::{BootCpuState, Segment};
use vm_memory::{Bytes, GuestAddress};

use crate::BootError;

/// The boot GDT: null, 64-bit code, flat data, TSS, 32-bit code (for PVH).
const GDT: [u64; 5] = [
    0,
    0x00af_9b00_0000_ffff,
    0x00cf_9300_0000_ffff,
    0x0080_8b00_0000_0067,
    0x00cf_9b00_0000_ffff,
];
const CODE64_SELECTOR: u16 = 0x08;
const DATA_SELECTOR: u16 = 0x10;
const TSS_SELECTOR: u16 = 0x18;
const CODE32_SELECTOR: u16 = 0x20;

const CR0_PE: u64 = 1;
const CR0_ET: u64 = 1 << 4;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

/// Page-table entry flags: present, writable, (for PD entries) 2 MiB page.
const PTE_PRESENT_RW: u64 = 0x3;
const PDE_2M_PAGE: u64 = 0x83;

fn write_gdt(memory: &GuestMemory) -> Result<(), BootError> {
    for (i, entry) in GDT.iter().enumerate() {
        memory
            .write_obj(*entry, GuestAddress(BOOT_GDT + 8 * i as u64))
            .map_err(|source| BootError::Memory {
                what: "boot GDT",
                source,
            })?;
    }
    memory
        .write_obj(0u64, GuestAddress(BOOT_IDT))
        .map_err(|source| BootError::Memory {
            what: "boot IDT",
            source,
        })
}

/// Identity-maps the first GiB with 2 MiB pages: enough for the kernel to set up its own.
fn write_page_tables(memory: &GuestMemory) -> Result<(), BootError> {
    let err = |source| BootError::Memory {
        what: "boot page tables",
        source,
    };
    memory
        .write_obj(PDPT | PTE_PRESENT_RW, GuestAddress(PML4))
        .map_err(err)?;
    memory
        .write_obj(PD | PTE_PRESENT_RW, GuestAddress(PDPT))
        .map_err(err)?;
    for i in 0..512u64 {
        memory
            .write_obj((i << 21) | PDE_2M_PAGE, GuestAddress(PD + i * 8))
            .map_err(err)?;
    }
    Ok(())
}

fn common_state(entry: u64) -> BootCpuState {
    let gdt_limit = u16::try_from(GDT.len() * 8 - 1).expect("a 5-entry GDT");
    BootCpuState {
        rip: entry,
        rsp: BOOT_STACK,
        gdt: (BOOT_GDT, gdt_limit),
        idt: (BOOT_IDT, 7),
        data: Segment::from_gdt_entry(GDT[2], DATA_SELECTOR),
        tss: Segment::from_gdt_entry(GDT[3], TSS_SELECTOR),
        ..Default::default()
    }
}

/// Long mode with paging, RSI = zero page (Linux 64-bit boot protocol).
pub fn long_mode_state(memory: &GuestMemory, entry: u64) -> Result<BootCpuState, BootError> {
    write_gdt(memory)?;
    write_page_tables(memory)?;
    Ok(BootCpuState {
        rsi: ZERO_PAGE,
        cr0: CR0_PE | CR0_ET | CR0_PG,
        cr3: PML4,
        cr4: CR4_PAE,
        efer: EFER_LME | EFER_LMA,
        code: Segment::from_gdt_entry(GDT[1], CODE64_SELECTOR),
        ..common_state(entry)
    })
}

/// 32-bit protected mode, paging off, EBX = `hvm_start_info` (PVH).
pub fn pvh_state(memory: &GuestMemory, entry: u64) -> Result<BootCpuState, BootError> {
    write_gdt(memory)?;
    Ok(BootCpuState {
        rbx: PVH_INFO,
        cr0: CR0_PE | CR0_ET,
        code: Segment::from_gdt_entry(GDT[4], CODE32_SELECTOR),
        ..common_state(entry)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> GuestMemory {
        GuestMemory::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap()
    }

    #[test]
    fn test_long_mode_state_enables_paging_and_points_rsi_at_zero_page() {
        let mem = memory();
        let state = long_mode_state(&mem, 0x100200).unwrap();
        assert_eq!(
            (state.rip, state.rsi, state.cr3),
            (0x100200, ZERO_PAGE, PML4)
        );
        assert!(state.code.l && !state.code.db);
        assert_eq!(state.efer, EFER_LME | EFER_LMA);
        let pde: u64 = mem.read_obj(GuestAddress(PD + 8 * 511)).unwrap();
        assert_eq!(pde, (511 << 21) | PDE_2M_PAGE);
    }

    #[test]
    fn test_pvh_state_is_flat_32bit_protected_mode() {
        let state = pvh_state(&memory(), 0x1000000).unwrap();
        assert_eq!(
            (state.rbx, state.cr0 & CR0_PG, state.efer),
            (PVH_INFO, 0, 0)
        );
        assert!(state.code.db && !state.code.l);
        assert_eq!(state.code.selector, CODE32_SELECTOR);
        assert_eq!(state.tss.type_, 0xb);
    }
}
