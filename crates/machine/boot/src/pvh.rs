//! The PVH boot protocol's `hvm_start_info`, memory map and module list.

use gasang_memory::layout::{CMDLINE, PVH_INFO, PVH_MEMMAP, PVH_MEMMAP_MAX_ENTRIES, PVH_MODLIST};
use gasang_memory::GuestMemory;
use linux_loader::configurator::pvh::PvhBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use vm_memory::GuestAddress;

use crate::{BootError, BootInfo};

/// `hvm_start_info.magic`: "xEn3" with the high bit set.
const XEN_HVM_START_MAGIC: u32 = 0x336e_c578;
/// Version 1 has the memory map fields.
const START_INFO_VERSION: u32 = 1;

/// Writes `hvm_start_info` at [`PVH_INFO`], with the memory map and the initrd module.
pub fn write_start_info(memory: &GuestMemory, boot: &BootInfo<'_>) -> Result<(), BootError> {
    if boot.ranges.len() > PVH_MEMMAP_MAX_ENTRIES {
        return Err(BootError::TooManyRanges(boot.ranges.len()));
    }
    let memmap: Vec<hvm_memmap_table_entry> = boot
        .ranges
        .iter()
        .map(|r| hvm_memmap_table_entry {
            addr: r.start,
            size: r.len,
            type_: r.kind.e820_type(),
            reserved: 0,
        })
        .collect();
    let modules: Vec<hvm_modlist_entry> = boot
        .initrd
        .iter()
        .map(|i| hvm_modlist_entry {
            paddr: i.addr,
            size: i.size,
            ..Default::default()
        })
        .collect();
    let start_info = hvm_start_info {
        magic: XEN_HVM_START_MAGIC,
        version: START_INFO_VERSION,
        nr_modules: u32::try_from(modules.len()).expect("at most one module"),
        modlist_paddr: if modules.is_empty() { 0 } else { PVH_MODLIST },
        cmdline_paddr: CMDLINE,
        rsdp_paddr: boot.firmware.rsdp,
        memmap_paddr: PVH_MEMMAP,
        memmap_entries: u32::try_from(memmap.len()).expect("checked above"),
        ..Default::default()
    };
    let mut params = BootParams::new(&start_info, GuestAddress(PVH_INFO));
    params.set_sections(&memmap, GuestAddress(PVH_MEMMAP));
    if !modules.is_empty() {
        params.set_modules(&modules, GuestAddress(PVH_MODLIST));
    }
    PvhBootConfigurator::write_bootparams(&params, memory).map_err(|source| BootError::Configure {
        what: "PVH start info",
        source,
    })
}
