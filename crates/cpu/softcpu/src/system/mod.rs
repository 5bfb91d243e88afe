//! System state and behaviour: control registers, MSRs, descriptor tables, paging with
//! a software TLB, and delivery of exceptions and interrupts through the IDT.

pub mod deliver;
pub mod paging;
pub mod ram;
pub mod segments;

use crate::state::Segment;

/// CR0 bits.
pub mod cr0 {
    /// Protection enable.
    pub const PE: u64 = 1;
    /// Monitor coprocessor.
    pub const MP: u64 = 1 << 1;
    /// x87 emulation by software: x87 instructions raise #NM.
    pub const EM: u64 = 1 << 2;
    /// Task switched: the next x87/MMX/SSE instruction raises #NM.
    pub const TS: u64 = 1 << 3;
    /// Extension type (always one).
    pub const ET: u64 = 1 << 4;
    /// Numeric error reporting.
    pub const NE: u64 = 1 << 5;
    /// Write protect: supervisor writes honour read-only pages.
    pub const WP: u64 = 1 << 16;
    /// Alignment mask.
    pub const AM: u64 = 1 << 18;
    /// Not write-through, cache disable (kept, no effect).
    pub const NW_CD: u64 = (1 << 29) | (1 << 30);
    /// Paging.
    pub const PG: u64 = 1 << 31;
}

/// CR4 bits this CPU accepts (others are reserved: #GP).
pub mod cr4 {
    /// Debugging extensions.
    pub const DE: u64 = 1 << 3;
    /// Page size extensions (implied by PAE).
    pub const PSE: u64 = 1 << 4;
    /// Physical address extension (required for long mode).
    pub const PAE: u64 = 1 << 5;
    /// Machine check enable.
    pub const MCE: u64 = 1 << 6;
    /// Global pages: survive CR3 writes.
    pub const PGE: u64 = 1 << 7;
    /// FXSAVE/FXRSTOR and SSE enabled by the OS.
    pub const OSFXSR: u64 = 1 << 9;
    /// Unmasked SIMD exceptions raise #XM.
    pub const OSXMMEXCPT: u64 = 1 << 10;
    /// The bits CR4 may hold.
    pub const SUPPORTED: u64 = DE | PSE | PAE | MCE | PGE | OSFXSR | OSXMMEXCPT;
}

/// EFER bits.
pub mod efer {
    /// SYSCALL/SYSRET enable.
    pub const SCE: u64 = 1;
    /// Long mode enable.
    pub const LME: u64 = 1 << 8;
    /// Long mode active.
    pub const LMA: u64 = 1 << 10;
    /// No-execute enable.
    pub const NXE: u64 = 1 << 11;
    /// The bits EFER may hold.
    pub const SUPPORTED: u64 = SCE | LME | LMA | NXE;
}

/// MSR numbers this CPU implements.
pub mod msr {
    /// Time-stamp counter.
    pub const TSC: u32 = 0x10;
    /// Page attribute table.
    pub const PAT: u32 = 0x277;
    /// SYSENTER (kept; SYSENTER itself is not used in 64-bit mode).
    pub const SYSENTER_CS: u32 = 0x174;
    /// SYSENTER stack.
    pub const SYSENTER_ESP: u32 = 0x175;
    /// SYSENTER target.
    pub const SYSENTER_EIP: u32 = 0x176;
    /// Miscellaneous enables.
    pub const MISC_ENABLE: u32 = 0x1a0;
    /// IA32_PLATFORM_ID (read-only): the platform microcode matches; 0 here.
    pub const PLATFORM_ID: u32 = 0x17;
    /// IA32_BIOS_SIGN_ID: the microcode revision, read after writing 0 and running
    /// CPUID (Linux does both, without an exception fixup, on every Intel CPU).
    pub const UCODE_REV: u32 = 0x8b;
    /// IA32_ARCH_CAPABILITIES (read-only): which speculative-execution flaws the CPU
    /// does not have.
    pub const ARCH_CAPABILITIES: u32 = 0x10a;
    /// Extended features.
    pub const EFER: u32 = 0xc000_0080;
    /// SYSCALL/SYSRET selectors.
    pub const STAR: u32 = 0xc000_0081;
    /// 64-bit SYSCALL target.
    pub const LSTAR: u32 = 0xc000_0082;
    /// Compatibility-mode SYSCALL target.
    pub const CSTAR: u32 = 0xc000_0083;
    /// RFLAGS bits SYSCALL clears.
    pub const SFMASK: u32 = 0xc000_0084;
    /// FS base.
    pub const FS_BASE: u32 = 0xc000_0100;
    /// GS base.
    pub const GS_BASE: u32 = 0xc000_0101;
    /// The GS base SWAPGS exchanges with.
    pub const KERNEL_GS_BASE: u32 = 0xc000_0102;
    /// RDTSCP's auxiliary value.
    pub const TSC_AUX: u32 = 0xc000_0103;
}

/// GDTR or IDTR.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Table {
    /// Linear base address.
    pub base: u64,
    /// Limit (size - 1).
    pub limit: u16,
}

/// The MSRs kept in the CPU (FS and GS bases live in the segment registers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Msrs {
    /// IA32_PAT.
    pub pat: u64,
    /// SYSENTER_CS, SYSENTER_ESP, SYSENTER_EIP.
    pub sysenter: [u64; 3],
    /// IA32_MISC_ENABLE.
    pub misc_enable: u64,
    /// STAR.
    pub star: u64,
    /// LSTAR.
    pub lstar: u64,
    /// CSTAR.
    pub cstar: u64,
    /// SFMASK.
    pub sfmask: u64,
    /// KERNEL_GS_BASE.
    pub kernel_gs_base: u64,
    /// TSC_AUX.
    pub tsc_aux: u64,
    /// Added to the host TSC to give the guest's.
    pub tsc_offset: u64,
}

/// The PAT after reset.
pub const PAT_RESET: u64 = 0x0007_0406_0007_0406;
/// IA32_MISC_ENABLE after reset: fast strings on (0; Linux keeps REP MOVS/STOS for its
/// page copies and clears only then), branch trace (11) and PEBS (12) unavailable.
pub const MISC_ENABLE_RESET: u64 = 1 | (1 << 11) | (1 << 12);

impl Msrs {
    /// The MSRs after reset.
    pub fn reset() -> Self {
        Self {
            pat: PAT_RESET,
            misc_enable: MISC_ENABLE_RESET,
            ..Self::default()
        }
    }
}

/// System registers of one CPU.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SystemState {
    /// Current privilege level (0 kernel .. 3 user).
    pub cpl: u8,
    /// CR0.
    pub cr0: u64,
    /// CR2: the last page-fault address.
    pub cr2: u64,
    /// CR3: the page-table root.
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// CR8: task priority.
    pub cr8: u64,
    /// EFER.
    pub efer: u64,
    /// GDTR.
    pub gdtr: Table,
    /// IDTR.
    pub idtr: Table,
    /// LDTR.
    pub ldtr: Segment,
    /// TR: the task-state segment.
    pub tr: Segment,
    /// DR0..DR7 (DR4 and DR5 alias DR6 and DR7).
    pub dr: [u64; 8],
    /// The MSRs.
    pub msr: Msrs,
    /// Interrupts are held off until after the next instruction (STI, MOV SS).
    pub interrupt_shadow: bool,
    /// An NMI is being handled: further NMIs wait until the next IRETQ.
    pub nmi_blocked: bool,
}

impl SystemState {
    /// Long mode with paging, as a 64-bit kernel runs: CPL 0, CR3 = `cr3`.
    pub fn long_mode_kernel(cr3: u64) -> Self {
        Self {
            cpl: 0,
            cr0: cr0::PE | cr0::ET | cr0::NE | cr0::WP | cr0::PG,
            cr3,
            cr4: cr4::PAE | cr4::PGE | cr4::OSFXSR | cr4::OSXMMEXCPT,
            efer: efer::SCE | efer::LME | efer::LMA | efer::NXE,
            dr: [0, 0, 0, 0, 0xffff_0ff0, 0x400, 0xffff_0ff0, 0x400],
            msr: Msrs::reset(),
            ..Self::default()
        }
    }

    /// 32-bit protected mode with paging off, CPL 0: the PVH entry's state.
    pub fn protected_mode() -> Self {
        Self {
            cpl: 0,
            cr0: cr0::PE | cr0::ET,
            dr: [0, 0, 0, 0, 0xffff_0ff0, 0x400, 0xffff_0ff0, 0x400],
            msr: Msrs::reset(),
            ..Self::default()
        }
    }

    /// User mode without a kernel (`user-run`): CPL 3, no paging unit in the CPU.
    pub fn user() -> Self {
        Self {
            cpl: 3,
            msr: Msrs::reset(),
            ..Self::default()
        }
    }
}
