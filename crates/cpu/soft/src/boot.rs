//! The boot protocol's entry state as the software CPU's registers.

use gasang_softcpu::system::{efer, Table};
use gasang_softcpu::{CpuState, Gpr, Segment};
use gasang_vcpu::BootCpuState;

/// MXCSR after reset: every exception masked.
const MXCSR_RESET: u32 = 0x1f80;

/// A cached segment register in the CPU's attribute layout (the descriptor's bits
/// 40..56: type, S, DPL, P, then AVL, L, D/B, G).
fn segment(s: &gasang_vcpu::Segment) -> Segment {
    let attr = u16::from(s.type_ & 0xf)
        | (u16::from(s.s) << 4)
        | (u16::from(s.dpl & 3) << 5)
        | (u16::from(s.present) << 7)
        | (u16::from(s.l) << 13)
        | (u16::from(s.db) << 14)
        | (u16::from(s.g) << 15);
    Segment {
        selector: s.selector,
        base: s.base,
        limit: s.limit,
        attr,
    }
}

/// The bootstrap processor's registers at the kernel's entry point.
pub fn cpu_state(boot: &BootCpuState) -> CpuState {
    let mut st = CpuState {
        rip: boot.rip,
        rflags: 0x2,
        mxcsr: MXCSR_RESET,
        ..CpuState::default()
    };
    st.set_reg(Gpr::Rsp, boot.rsp);
    st.set_reg(Gpr::Rsi, boot.rsi);
    st.set_reg(Gpr::Rbx, boot.rbx);
    let data = segment(&boot.data);
    st.seg = [data, segment(&boot.code), data, data, data, data];
    let sys = &mut st.sys;
    sys.cpl = 0;
    (sys.cr0, sys.cr3, sys.cr4, sys.efer) = (boot.cr0, boot.cr3, boot.cr4, boot.efer);
    sys.gdtr = Table {
        base: boot.gdt.0,
        limit: boot.gdt.1,
    };
    sys.idtr = Table {
        base: boot.idt.0,
        limit: boot.idt.1,
    };
    sys.tr = segment(&boot.tss);
    sys.dr[6] = 0xffff_0ff0;
    sys.dr[7] = 0x400;
    sys.msr = gasang_softcpu::system::Msrs::reset();
    st.long_mode = boot.code.l && boot.efer & efer::LMA != 0;
    st
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_flat_64_bit_code_segment_matches_the_cpu_layout() {
        let code = gasang_vcpu::Segment::from_gdt_entry(0x00af_9b00_0000_ffff, 0x10);
        let data = gasang_vcpu::Segment::from_gdt_entry(0x00cf_9300_0000_ffff, 0x18);
        assert_eq!(segment(&code).attr, 0xa09b);
        assert_eq!(segment(&data).attr, 0xc093);
        let boot = BootCpuState {
            rip: 0x100_0200,
            rsi: 0x7000,
            code,
            data,
            efer: efer::LME | efer::LMA,
            ..BootCpuState::default()
        };
        let st = cpu_state(&boot);
        assert!(st.long_mode);
        assert_eq!((st.rip, st.reg(Gpr::Rsi)), (0x100_0200, 0x7000));
        assert_eq!(st.seg[1].selector, 0x10);
    }
}
