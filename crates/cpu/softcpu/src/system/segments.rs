//! Segment descriptors from the GDT, as long mode uses them: code segments set the
//! mode and privilege, data segments matter only for FS and GS bases, and the TSS holds
//! the interrupt stacks.

use crate::cpu::Exception;
use crate::memory::{Access, Memory};
use crate::state::{CpuState, Segment};

/// Descriptor type bit: code (not data).
const CODE: u16 = 1 << 3;
/// Descriptor bit S: code or data (not a system descriptor).
const NON_SYSTEM: u16 = 1 << 4;
/// Descriptor bit P.
const PRESENT: u16 = 1 << 7;
/// System descriptor types: an available and a busy 64-bit TSS.
const TSS_AVAILABLE: u16 = 0x9;
const TSS_BUSY: u16 = 0xb;

/// Reads the descriptor `selector` names; system descriptors are 16 bytes in long mode.
/// A null selector, an LDT selector (no LDT here) or one past the limit is #GP.
pub fn descriptor(
    st: &CpuState,
    mem: &mut dyn Memory,
    selector: u16,
) -> Result<(Segment, u64), Exception> {
    let index = u64::from(selector & !7);
    let gp = Exception::GeneralProtection(u32::from(selector & !3));
    if index == 0 || selector & 4 != 0 || index + 7 > u64::from(st.sys.gdtr.limit) {
        return Err(gp);
    }
    let at = st.sys.gdtr.base.wrapping_add(index);
    let mut raw = [0u8; 16];
    mem.read(at, &mut raw[..8], Access::System)?;
    let lo = u64::from_le_bytes(raw[..8].try_into().expect("8 bytes"));
    let attr = (((lo >> 40) & 0xff) | (((lo >> 52) & 0xf) << 12)) as u16;
    let mut limit = ((lo & 0xffff) | (((lo >> 48) & 0xf) << 16)) as u32;
    if attr & (1 << 15) != 0 {
        limit = (limit << 12) | 0xfff;
    }
    let mut base = ((lo >> 16) & 0xff_ffff) | (((lo >> 56) & 0xff) << 24);
    if attr & NON_SYSTEM == 0 {
        if index + 15 > u64::from(st.sys.gdtr.limit) {
            return Err(gp);
        }
        mem.read(at + 8, &mut raw[8..], Access::System)?;
        base |= u64::from(u32::from_le_bytes(raw[8..12].try_into().expect("4 bytes"))) << 32;
    }
    let segment = Segment {
        selector,
        base,
        limit,
        attr,
    };
    Ok((segment, at))
}

/// A code segment for CS: present, code, 64-bit (L) or 32-bit (D).
pub fn code_segment(
    st: &CpuState,
    mem: &mut dyn Memory,
    selector: u16,
) -> Result<Segment, Exception> {
    let (seg, _) = descriptor(st, mem, selector)?;
    let gp = Exception::GeneralProtection(u32::from(selector & !3));
    // 64-bit or 32-bit code (16-bit code is not implemented).
    if seg.attr & (NON_SYSTEM | CODE) != NON_SYSTEM | CODE || !(seg.long() || seg.big()) {
        return Err(gp);
    }
    if seg.attr & PRESENT == 0 {
        return Err(Exception::SegmentNotPresent(u32::from(selector & !3)));
    }
    Ok(seg)
}

/// A data segment for DS, ES, FS, GS or SS; a null selector gives an unusable segment
/// (allowed in 64-bit mode, for SS only below CPL 3).
pub fn data_segment(
    st: &CpuState,
    mem: &mut dyn Memory,
    selector: u16,
    stack: bool,
) -> Result<Segment, Exception> {
    if selector & !3 == 0 {
        if stack && st.sys.cpl == 3 {
            return Err(Exception::GeneralProtection(0));
        }
        return Ok(Segment {
            selector,
            ..Segment::default()
        });
    }
    let (seg, _) = descriptor(st, mem, selector)?;
    let gp = Exception::GeneralProtection(u32::from(selector & !3));
    let writable_data = seg.attr & (CODE | 2) == 2;
    let readable_code = seg.attr & (CODE | 2) == CODE | 2;
    if seg.attr & NON_SYSTEM == 0 || (stack && !writable_data) || !(writable_data || readable_code)
    {
        return Err(gp);
    }
    if seg.attr & PRESENT == 0 {
        let code = u32::from(selector & !3);
        return Err(if stack {
            Exception::StackFault(code)
        } else {
            Exception::SegmentNotPresent(code)
        });
    }
    Ok(seg)
}

/// LTR: loads an available 64-bit TSS and marks it busy.
pub fn load_task_register(
    st: &mut CpuState,
    mem: &mut dyn Memory,
    selector: u16,
) -> Result<(), Exception> {
    let (seg, at) = descriptor(st, mem, selector)?;
    if seg.attr & (NON_SYSTEM | 0xf) != TSS_AVAILABLE {
        return Err(Exception::GeneralProtection(u32::from(selector & !3)));
    }
    if seg.attr & PRESENT == 0 {
        return Err(Exception::SegmentNotPresent(u32::from(selector & !3)));
    }
    let mut byte = [0u8];
    mem.read(at + 5, &mut byte, Access::System)?;
    byte[0] = (byte[0] & !0xf) | TSS_BUSY as u8;
    mem.write(at + 5, &byte)?;
    st.sys.tr = Segment {
        attr: (seg.attr & !0xf) | TSS_BUSY,
        ..seg
    };
    Ok(())
}

/// Reads the 64-bit TSS field at `offset` (RSPn at 4 + 8n, ISTn at 0x1c + 8n).
pub fn tss_field(st: &CpuState, mem: &mut dyn Memory, offset: u64) -> Result<u64, Exception> {
    let tr = st.sys.tr;
    if offset + 7 > u64::from(tr.limit) {
        return Err(Exception::GeneralProtection(u32::from(tr.selector & !3)));
    }
    let mut b = [0u8; 8];
    mem.read(tr.base.wrapping_add(offset), &mut b, Access::System)?;
    Ok(u64::from_le_bytes(b))
}

/// Makes `cs` the code segment: CPL, and 64-bit mode from its L bit while long mode is
/// active (compatibility mode otherwise).
pub fn set_code_segment(st: &mut CpuState, cs: Segment, cpl: u8) {
    st.seg[1] = Segment {
        selector: (cs.selector & !3) | u16::from(cpl),
        ..cs
    };
    st.sys.cpl = cpl;
    st.long_mode = cs.long() && st.sys.efer & crate::system::efer::LMA != 0;
}
