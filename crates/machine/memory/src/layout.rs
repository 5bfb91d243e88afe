//! The guest-physical memory map (x86-64). docs/ARCHITECTURE.md draws it.
//!
//! ```text
//! 0x0000_0500  boot GDT            0x0000_9000  boot page tables (PML4, PDPT, PD)
//! 0x0000_6000  PVH hvm_start_info  0x0002_0000  kernel command line
//! 0x0000_7000  zero page           0x0009_fc00  EBDA .. 1 MiB: reserved
//! 0x000e_0000  ACPI tables (RSDP first, where Linux scans for it)
//! 0x0010_0000  kernel, then RAM up to the MMIO hole
//! 0xc000_0000  32-bit MMIO hole: PCI BARs, ECAM 0xe000_0000, IOAPIC 0xfec0_0000, LAPIC 0xfee0_0000
//! 0x1_0000_0000  RAM above 4 GiB, when the guest has more than 3 GiB
//! ```

/// The boot GDT (null, code64, data, code32), written by the boot path.
pub const BOOT_GDT: u64 = 0x500;
/// A zeroed IDT limit: the guest installs its own before enabling interrupts.
pub const BOOT_IDT: u64 = 0x520;
/// PVH `hvm_start_info`.
pub const PVH_INFO: u64 = 0x6000;
/// PVH module list (the initrd), right after the start info.
pub const PVH_MODLIST: u64 = 0x6040;
/// PVH memory map entries.
pub const PVH_MEMMAP: u64 = 0x6100;
/// Room for PVH memory map entries before the zero page.
pub const PVH_MEMMAP_MAX_ENTRIES: usize = ((ZERO_PAGE - PVH_MEMMAP) / 24) as usize;
/// The Linux zero page (`boot_params`).
pub const ZERO_PAGE: u64 = 0x7000;
/// Initial stack pointer for the 64-bit entry.
pub const BOOT_STACK: u64 = 0x8ff0;
/// Identity-mapping page tables for the 64-bit entry: PML4, PDPT, then one PD.
pub const PML4: u64 = 0x9000;
/// Page-directory-pointer table.
pub const PDPT: u64 = 0xa000;
/// Page directory mapping the first GiB with 2 MiB pages.
pub const PD: u64 = 0xb000;
/// The kernel command line.
pub const CMDLINE: u64 = 0x20000;
/// Largest command line gasang writes (the kernel may accept less).
pub const CMDLINE_MAX: usize = 0x10000;
/// Start of the Extended BIOS Data Area: RAM below it is usable.
pub const EBDA: u64 = 0x9fc00;
/// ACPI tables live here, RSDP first: Linux scans 0xe0000..0x100000 for it.
pub const ACPI_TABLES: u64 = 0xe0000;
/// End of the ACPI table area.
pub const ACPI_TABLES_END: u64 = 0x100000;
/// Where the kernel loads and high memory begins.
pub const HIMEM: u64 = 0x100000;
/// Start of the 32-bit MMIO hole below 4 GiB.
pub const MMIO_HOLE: u64 = 0xc000_0000;
/// End of the MMIO hole: RAM resumes here.
pub const MMIO_HOLE_END: u64 = 0x1_0000_0000;
/// The PCI host bridge's 32-bit window for BARs, at the bottom of the MMIO hole.
pub const PCI_MMIO32: u64 = MMIO_HOLE;
/// End of the 32-bit BAR window.
pub const PCI_MMIO32_END: u64 = PCI_ECAM;
/// PCI Express ECAM for bus 0 (1 MiB).
pub const PCI_ECAM: u64 = 0xe000_0000;
/// Bytes of ECAM: one bus.
pub const PCI_ECAM_SIZE: u64 = 1 << 20;
/// Size of the 64-bit BAR window, which starts at the first GiB boundary above RAM.
pub const PCI_MMIO64_SIZE: u64 = 64 << 30;
/// The IOAPIC's registers.
pub const IOAPIC: u64 = 0xfec0_0000;
/// Every CPU's local APIC.
pub const LAPIC: u64 = 0xfee0_0000;
/// Smallest guest gasang runs: the kernel, its page tables and an initrd need room.
pub const MIN_MEMORY: u64 = 16 << 20;
