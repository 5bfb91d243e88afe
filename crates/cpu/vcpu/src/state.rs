//! The CPU state a boot protocol requires at the kernel's entry point.

/// A segment register as the CPU caches it (base, limit, attributes from the GDT).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Segment {
    /// Linear base address.
    pub base: u64,
    /// Limit in bytes (already scaled by granularity).
    pub limit: u32,
    /// The selector loaded into the register.
    pub selector: u16,
    /// Type field (e.g. 0xb execute/read accessed, 0x3 read/write accessed).
    pub type_: u8,
    /// Present.
    pub present: bool,
    /// Descriptor privilege level.
    pub dpl: u8,
    /// Default operation size (32-bit when set).
    pub db: bool,
    /// Code/data (set) versus system segment.
    pub s: bool,
    /// 64-bit code segment.
    pub l: bool,
    /// 4 KiB granularity.
    pub g: bool,
}

impl Segment {
    /// The cached form of GDT `entry` when loaded with `selector`.
    pub fn from_gdt_entry(entry: u64, selector: u16) -> Self {
        let base = ((entry >> 16) & 0xff_ffff) | ((entry >> 32) & 0xff00_0000);
        let raw_limit = ((entry & 0xffff) | ((entry >> 32) & 0xf_0000)) as u32;
        let g = (entry >> 55) & 1 == 1;
        Self {
            base,
            limit: if g {
                (raw_limit << 12) | 0xfff
            } else {
                raw_limit
            },
            selector,
            type_: ((entry >> 40) & 0xf) as u8,
            present: (entry >> 47) & 1 == 1,
            dpl: ((entry >> 45) & 3) as u8,
            db: (entry >> 54) & 1 == 1,
            s: (entry >> 44) & 1 == 1,
            l: (entry >> 53) & 1 == 1,
            g,
        }
    }
}

/// Registers of the bootstrap processor at the kernel's entry point.
///
/// The boot path fills this in (and writes the GDT and page tables it refers to into
/// guest memory); each backend only copies it into its vCPU.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BootCpuState {
    /// Entry point.
    pub rip: u64,
    /// Stack pointer.
    pub rsp: u64,
    /// Linux 64-bit boot protocol: the zero page.
    pub rsi: u64,
    /// PVH: the `hvm_start_info` address.
    pub rbx: u64,
    /// CR0 (protection, paging).
    pub cr0: u64,
    /// CR3: the page-table root when paging is on.
    pub cr3: u64,
    /// CR4 (PAE for long mode).
    pub cr4: u64,
    /// EFER (LME/LMA for long mode).
    pub efer: u64,
    /// GDT base and limit.
    pub gdt: (u64, u16),
    /// IDT base and limit.
    pub idt: (u64, u16),
    /// CS.
    pub code: Segment,
    /// DS, ES, FS, GS and SS.
    pub data: Segment,
    /// TR: hardware-assisted backends require a usable TSS to enter the guest.
    pub tss: Segment,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_segment_from_gdt_entry_decodes_flat_64bit_code() {
        let seg = Segment::from_gdt_entry(0x00af_9b00_0000_ffff, 0x8);
        assert_eq!(seg.base, 0);
        assert_eq!(seg.limit, 0xffff_ffff);
        assert_eq!(seg.type_, 0xb);
        assert!(seg.present && seg.s && seg.l && seg.g && !seg.db);
        assert_eq!(seg.dpl, 0);
    }

    #[test]
    fn test_segment_from_gdt_entry_decodes_flat_32bit_data() {
        let seg = Segment::from_gdt_entry(0x00cf_9300_0000_ffff, 0x10);
        assert_eq!(seg.type_, 0x3);
        assert!(seg.db && !seg.l);
        assert_eq!(seg.selector, 0x10);
    }
}
