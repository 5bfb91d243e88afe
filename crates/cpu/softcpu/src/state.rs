//! The architectural state of one CPU.

use crate::system::SystemState;
use crate::x87::X87State;

/// General-purpose register numbers, in encoding order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Gpr {
    /// RAX.
    Rax,
    /// RCX.
    Rcx,
    /// RDX.
    Rdx,
    /// RBX.
    Rbx,
    /// RSP.
    Rsp,
    /// RBP.
    Rbp,
    /// RSI.
    Rsi,
    /// RDI.
    Rdi,
    /// R8.
    R8,
    /// R9.
    R9,
    /// R10.
    R10,
    /// R11.
    R11,
    /// R12.
    R12,
    /// R13.
    R13,
    /// R14.
    R14,
    /// R15.
    R15,
}

/// MXCSR at reset: all exceptions masked, round to nearest.
pub const MXCSR_RESET: u32 = 0x1f80;

/// A segment register with its cached descriptor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Segment {
    /// Selector.
    pub selector: u16,
    /// Base address (FS and GS bases in 64-bit mode live here).
    pub base: u64,
    /// Limit in bytes.
    pub limit: u32,
    /// Attributes, as VMX packs them: type (bits 0-3), S (4), DPL (5-6), P (7),
    /// AVL (12), L (13), D/B (14), G (15).
    pub attr: u16,
}

impl Segment {
    /// A 64-bit code segment's L bit.
    pub fn long(&self) -> bool {
        self.attr & (1 << 13) != 0
    }

    /// The D/B bit: a 32-bit code segment, or a stack segment with a 32-bit pointer.
    pub fn big(&self) -> bool {
        self.attr & (1 << 14) != 0
    }

    /// The descriptor privilege level.
    pub fn dpl(&self) -> u8 {
        ((self.attr >> 5) & 3) as u8
    }
}

/// Registers of one x86-64 CPU.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuState {
    /// RAX..R15, indexed by [`Gpr`].
    pub gpr: [u64; 16],
    /// Instruction pointer.
    pub rip: u64,
    /// RFLAGS.
    pub rflags: u64,
    /// ES, CS, SS, DS, FS, GS, in encoding order.
    pub seg: [Segment; 6],
    /// 64-bit mode (long mode with a 64-bit code segment).
    pub long_mode: bool,
    /// XMM0..XMM15.
    pub xmm: [u128; 16],
    /// SSE control and status.
    pub mxcsr: u32,
    /// The x87 unit and the MMX registers it holds.
    pub x87: X87State,
    /// Control registers, MSRs, descriptor tables, privilege.
    pub sys: SystemState,
}

impl CpuState {
    /// A CPU in 64-bit user mode (CPL 3) at `rip`, flags at their reset value, as a
    /// process starts (`user-run`).
    pub fn long_mode(rip: u64) -> Self {
        Self {
            rip,
            rflags: 0x2,
            long_mode: true,
            mxcsr: MXCSR_RESET,
            sys: SystemState::user(),
            ..Default::default()
        }
    }

    /// A CPU in 32-bit protected mode at `rip`, paging off, with flat 4 GiB code and
    /// data segments (selectors 0x08 and 0x10), as a PVH kernel is entered.
    pub fn protected_mode(rip: u64) -> Self {
        let flat = |selector, attr| Segment {
            selector,
            base: 0,
            limit: u32::MAX,
            attr,
        };
        let data = flat(0x10, 0xc093);
        Self {
            rip,
            rflags: 0x2,
            seg: [data, flat(0x08, 0xc09b), data, data, data, data],
            long_mode: false,
            mxcsr: MXCSR_RESET,
            sys: SystemState::protected_mode(),
            ..Default::default()
        }
    }

    /// A CPU in real mode as a start-up IPI with `vector` leaves it: CS = `vector` *
    /// 256 (base `vector` * 4096), IP = 0, caches disabled, everything else at reset.
    pub fn startup_ipi(vector: u8) -> Self {
        let real = |selector: u16, attr| Segment {
            selector,
            base: u64::from(selector) << 4,
            limit: 0xffff,
            attr,
        };
        let data = real(0, 0x93);
        let mut sys = crate::system::SystemState::protected_mode();
        sys.cr0 = crate::system::cr0::ET | crate::system::cr0::NW_CD;
        Self {
            rip: 0,
            rflags: 0x2,
            seg: [
                data,
                real(u16::from(vector) << 8, 0x9b),
                data,
                data,
                data,
                data,
            ],
            long_mode: false,
            mxcsr: MXCSR_RESET,
            sys,
            ..Default::default()
        }
    }

    /// The linear address of the code at instruction pointer `ip`: `ip` itself in
    /// 64-bit mode, plus CS's base (within 4 GiB) outside it.
    pub fn code_address(&self, ip: u64) -> u64 {
        if self.long_mode {
            ip
        } else {
            ip.wrapping_add(self.seg[1].base) & 0xffff_ffff
        }
    }

    /// The code size: 64 in 64-bit mode, else 32 or 16 by CS's D bit (real mode's CS
    /// has it clear).
    pub fn code_bits(&self) -> u32 {
        if self.long_mode {
            64
        } else if self.seg[1].big() {
            32
        } else {
            16
        }
    }

    /// Register `r`.
    pub fn reg(&self, r: Gpr) -> u64 {
        self.gpr[r as usize]
    }

    /// Sets register `r`.
    pub fn set_reg(&mut self, r: Gpr, value: u64) {
        self.gpr[r as usize] = value;
    }
}
