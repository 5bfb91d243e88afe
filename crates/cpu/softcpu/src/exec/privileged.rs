//! System instructions: privilege checks, control and debug registers, MSRs,
//! descriptor tables, SYSCALL/SYSRET, IRETQ, INT n, interrupt flag, far return.
//! Each reads and checks everything before it changes any state, so a fault leaves
//! the system state as it was.

use iced_x86::{Code, Mnemonic, OpKind, Register};

use super::Exec;
use crate::cpu::{Exception, Exit};
use crate::flags::Flags;
use crate::memory::Access;
use crate::state::{Gpr, Segment};
use crate::system::paging::{canonical, Flush, PHYS_BITS};
use crate::system::segments::{code_segment, data_segment, load_task_register, set_code_segment};
use crate::system::{cr0, cr4, efer, msr};

/// RFLAGS: IOPL, NT, RF, VM, AC, VIF, VIP, ID.
const IOPL: u64 = 3 << 12;
const NT: u64 = 1 << 14;
const RF: u64 = 1 << 16;
const AC: u64 = 1 << 18;
const ID: u64 = 1 << 21;
/// RFLAGS bits POPF/IRET/SYSRET may set (VM and VIF/VIP stay clear: no virtual-8086).
const LOADABLE: u64 = Flags::ARITH | Flags::TF | Flags::IF | Flags::DF | IOPL | NT | AC | ID;

/// Whether `ins` is a MOV to or from a control, debug or segment register.
pub fn is_special_mov(ins: &iced_x86::Instruction) -> bool {
    (0..2).any(|i| {
        ins.op_kind(i) == OpKind::Register && {
            let r = ins.op_register(i);
            r.is_cr() || r.is_dr() || r.is_segment_register()
        }
    })
}

impl Exec<'_> {
    /// #GP(0) unless at CPL 0.
    fn kernel_only(&self) -> Result<(), Exception> {
        if self.st.sys.cpl == 0 {
            Ok(())
        } else {
            Err(Exception::GeneralProtection(0))
        }
    }

    fn iopl(&self) -> u8 {
        ((self.st.rflags & IOPL) >> 12) as u8
    }

    /// Loads RFLAGS from `value` as POPF and IRET do: IOPL only at CPL 0, IF only with
    /// CPL <= IOPL; RF, VM, VIF, VIP cleared.
    fn load_flags(&mut self, value: u64, cpl: u8) {
        let mut writable = LOADABLE;
        if cpl > 0 {
            writable &= !IOPL;
        }
        if cpl > self.iopl() {
            writable &= !Flags::IF;
        }
        self.st.rflags = (self.st.rflags & !writable & !RF) | (value & writable) | 2;
    }

    /// Tells the memory the control state changed.
    fn control_changed(&mut self, flush: Flush) {
        self.mem.control(self.st, flush);
    }
}

/// Runs a system instruction; `None` if `cx.ins` is not one.
pub fn execute(cx: &mut Exec<'_>) -> Option<Result<Option<Exit>, Exception>> {
    use Mnemonic::*;
    let result = match cx.ins.mnemonic() {
        Cli | Sti => interrupt_flag(cx),
        Hlt => return Some(cx.kernel_only().map(|()| Some(Exit::Halt))),
        Pushf | Pushfd | Pushfq => {
            let bits = match cx.ins.code() {
                Code::Pushfw => 16,
                Code::Pushfd => 32,
                _ => 64,
            };
            cx.push(cx.st.rflags & !(RF | (1 << 17)), bits)
        }
        Popf | Popfd | Popfq => {
            let bits = match cx.ins.code() {
                Code::Popfw => 16,
                Code::Popfd => 32,
                _ => 64,
            };
            cx.pop(bits).map(|v| {
                let v = if bits == 16 {
                    (cx.st.rflags & !0xffff) | v
                } else {
                    v
                };
                cx.load_flags(v, cx.st.sys.cpl)
            })
        }
        Int => Err(Exception::SoftwareInterrupt(cx.ins.immediate(0) as u8)),
        Int3 => Err(Exception::Breakpoint),
        Iretq => iretq(cx),
        Retf => far_return(cx),
        Jmp => far_jump(cx),
        Syscall if cx.kernel => syscall(cx),
        Syscall => return Some(Ok(Some(Exit::Syscall))),
        Sysret | Sysretq => sysret(cx),
        Swapgs => cx.kernel_only().map(|()| {
            let sys = &mut cx.st.sys;
            std::mem::swap(&mut cx.st.seg[5].base, &mut sys.msr.kernel_gs_base);
        }),
        Rdmsr | Wrmsr => model_specific(cx),
        Lgdt | Lidt | Sgdt | Sidt => descriptor_table(cx),
        Ltr => cx.kernel_only().and_then(|()| {
            let selector = cx.read(0)? as u16;
            load_task_register(cx.st, cx.mem, selector)
        }),
        Lldt => cx.kernel_only().and_then(|()| lldt(cx)),
        Str => cx.write(0, u64::from(cx.st.sys.tr.selector)),
        Sldt => cx.write(0, u64::from(cx.st.sys.ldtr.selector)),
        Invlpg => cx.kernel_only().map(|()| {
            let page = cx.ea();
            cx.control_changed(Flush::Page(page));
        }),
        Wbinvd | Invd => cx.kernel_only(),
        Clts => cx.kernel_only().map(|()| cx.st.sys.cr0 &= !cr0::TS),
        Mov if is_special_mov(cx.ins) => special_mov(cx),
        _ => return super::io::execute(cx).map(|result| result.map(|()| None)),
    };
    Some(result.map(|()| None))
}

/// LLDT: only the null selector (no LDT is ever used in 64-bit kernels).
fn lldt(cx: &mut Exec<'_>) -> Result<(), Exception> {
    match cx.read(0)? as u16 & !3 {
        0 => {
            cx.st.sys.ldtr = Segment::default();
            Ok(())
        }
        selector => Err(Exception::GeneralProtection(u32::from(selector))),
    }
}

/// CLI, STI (STI holds interrupts off for one more instruction).
fn interrupt_flag(cx: &mut Exec<'_>) -> Result<(), Exception> {
    if cx.st.sys.cpl > cx.iopl() {
        return Err(Exception::GeneralProtection(0));
    }
    if cx.ins.mnemonic() == Mnemonic::Sti {
        if cx.st.rflags & Flags::IF == 0 {
            cx.st.sys.interrupt_shadow = true;
        }
        cx.st.rflags |= Flags::IF;
    } else {
        cx.st.rflags &= !Flags::IF;
    }
    Ok(())
}

/// IRETQ: pops RIP, CS, RFLAGS, RSP, SS; may return to an outer privilege level. It
/// ends the blocking of NMIs that an NMI's delivery began.
fn iretq(cx: &mut Exec<'_>) -> Result<(), Exception> {
    if cx.ins.code() != Code::Iretq {
        return Err(Exception::InvalidOpcode);
    }
    let rsp = cx.st.reg(Gpr::Rsp);
    let mut frame = [0u64; 5];
    for (i, slot) in frame.iter_mut().enumerate() {
        *slot = cx.load(rsp.wrapping_add(8 * i as u64), 64)?;
    }
    let [rip, cs, rflags, new_rsp, ss] = frame;
    let cpl = cx.st.sys.cpl;
    let new_cpl = (cs & 3) as u8;
    if new_cpl < cpl || !canonical(rip) {
        return Err(Exception::GeneralProtection((cs & 0xfffc) as u32));
    }
    let code = code_segment(cx.st, cx.mem, cs as u16)?;
    let stack = if new_cpl == 0 && ss & !3 == 0 {
        Segment {
            selector: ss as u16,
            ..Segment::default()
        }
    } else {
        data_segment(cx.st, cx.mem, ss as u16, true)?
    };
    cx.load_flags(rflags, cpl);
    set_code_segment(cx.st, code, new_cpl);
    cx.st.seg[2] = stack;
    cx.st.rip = rip;
    cx.st.set_reg(Gpr::Rsp, new_rsp);
    cx.st.sys.nmi_blocked = false;
    cx.control_changed(Flush::None);
    Ok(())
}

/// RETF: pops RIP and CS (8-byte slots with REX.W, 4-byte ones by default, 2-byte with
/// an operand-size prefix) and releases its immediate's bytes, at the same privilege
/// level (outer-level far returns are not implemented).
fn far_return(cx: &mut Exec<'_>) -> Result<(), Exception> {
    let slot = match cx.ins.code() {
        Code::Retfq | Code::Retfq_imm16 => 8,
        Code::Retfw | Code::Retfw_imm16 => 2,
        _ => 4,
    };
    let release = if cx.ins.op_count() == 1 {
        cx.ins.immediate(0)
    } else {
        0
    };
    let rsp = cx.st.reg(Gpr::Rsp);
    let rip = cx.load(rsp, slot * 8)?;
    let cs = cx.load(rsp.wrapping_add(u64::from(slot)), 16)? as u16;
    let new_cpl = (cs & 3) as u8;
    if new_cpl != cx.st.sys.cpl || !canonical(rip) {
        // Outer-level far returns are not used by 64-bit kernels.
        return Err(Exception::GeneralProtection(u32::from(cs & !3)));
    }
    let code = code_segment(cx.st, cx.mem, cs)?;
    set_code_segment(cx.st, code, new_cpl);
    cx.st.rip = rip;
    let pop = 2 * u64::from(slot) + release;
    cx.st.set_reg(Gpr::Rsp, rsp.wrapping_add(pop));
    Ok(())
}

/// JMP ptr16:32 and JMP m16:32/m16:64 (the only far jumps [`super::classify`] sends
/// here): to a code segment at the same privilege, switching between compatibility
/// and 64-bit mode with its L bit.
fn far_jump(cx: &mut Exec<'_>) -> Result<(), Exception> {
    let (selector, offset) = if cx.ins.op0_kind() == OpKind::Memory {
        let addr = cx.ea();
        let width = cx.ins.memory_size().size() - 2;
        let offset = cx.load(addr, width as u32 * 8)?;
        let selector = cx.load(addr.wrapping_add(width as u64), 16)?;
        (selector as u16, offset)
    } else {
        let offset = if cx.ins.op0_kind() == OpKind::FarBranch16 {
            u32::from(cx.ins.far_branch16())
        } else {
            cx.ins.far_branch32()
        };
        (cx.ins.far_branch_selector(), u64::from(offset))
    };
    if cx.st.sys.cr0 & cr0::PE == 0 {
        // Real mode: the selector is the base's paragraph; no descriptor.
        cx.st.seg[1] = Segment {
            selector,
            base: u64::from(selector) << 4,
            limit: 0xffff,
            attr: 0x9b,
        };
        cx.st.rip = offset & 0xffff_ffff;
        cx.control_changed(Flush::None);
        return Ok(());
    }
    let code = code_segment(cx.st, cx.mem, selector)?;
    let cpl = cx.st.sys.cpl;
    if code.dpl() != cpl {
        return Err(Exception::GeneralProtection(u32::from(selector & !3)));
    }
    set_code_segment(cx.st, code, cpl);
    cx.st.rip = if cx.st.long_mode {
        offset
    } else {
        offset & 0xffff_ffff
    };
    cx.control_changed(Flush::None);
    Ok(())
}

/// A flat 64-bit segment with `selector` and `attr` (SYSCALL/SYSRET load fixed ones).
fn flat(selector: u16, attr: u16) -> Segment {
    Segment {
        selector,
        base: 0,
        limit: u32::MAX,
        attr,
    }
}

/// SYSCALL into the guest kernel: CS and SS from STAR, RIP from LSTAR, RFLAGS masked.
fn syscall(cx: &mut Exec<'_>) -> Result<(), Exception> {
    let sys = &cx.st.sys;
    if sys.efer & efer::SCE == 0 || !cx.st.long_mode {
        return Err(Exception::InvalidOpcode);
    }
    let selector = ((sys.msr.star >> 32) & 0xfffc) as u16;
    let (lstar, mask) = (sys.msr.lstar, sys.msr.sfmask);
    cx.st.set_reg(Gpr::Rcx, cx.st.rip);
    cx.st.set_reg(Gpr::R11, cx.st.rflags & !RF);
    cx.st.rflags &= !(mask | RF);
    // 64-bit code DPL 0 (type 0xb, S, P, L, G) and data DPL 0 (type 3, S, P, D/B, G).
    set_code_segment(cx.st, flat(selector, 0xa09b), 0);
    cx.st.seg[2] = flat(selector + 8, 0xc093);
    cx.st.rip = lstar;
    cx.control_changed(Flush::None);
    Ok(())
}

/// SYSRET to 64-bit user mode (with REX.W) or compatibility mode.
fn sysret(cx: &mut Exec<'_>) -> Result<(), Exception> {
    let sys = &cx.st.sys;
    if sys.efer & efer::SCE == 0 {
        return Err(Exception::InvalidOpcode);
    }
    cx.kernel_only()?;
    let wide = cx.ins.code() == Code::Sysretq;
    let rip = cx.st.reg(Gpr::Rcx);
    if wide && !canonical(rip) {
        return Err(Exception::GeneralProtection(0));
    }
    let base = ((sys.msr.star >> 48) & 0xfffc) as u16;
    let (cs, attr) = if wide {
        (base + 16, 0xa0fb)
    } else {
        (base, 0xc0fb)
    };
    let flags = cx.st.reg(Gpr::R11);
    cx.load_flags(flags, 0);
    set_code_segment(cx.st, flat(cs | 3, attr), 3);
    cx.st.seg[2] = flat((base + 8) | 3, 0xc0f3);
    cx.st.rip = if wide { rip } else { rip & 0xffff_ffff };
    cx.control_changed(Flush::None);
    Ok(())
}

/// RDMSR, WRMSR (EDX:EAX, MSR number in ECX); an unknown MSR or a reserved bit is #GP.
fn model_specific(cx: &mut Exec<'_>) -> Result<(), Exception> {
    cx.kernel_only()?;
    let number = cx.reg(Register::ECX) as u32;
    let gp = Exception::GeneralProtection(0);
    if cx.ins.mnemonic() == Mnemonic::Rdmsr {
        let value = match read_msr(cx, number) {
            Some(value) => value,
            None => cx.with_platform(|p| p.msr_read(number)).ok_or(gp)?,
        };
        cx.set_reg(Register::EAX, value & 0xffff_ffff);
        cx.set_reg(Register::EDX, value >> 32);
        return Ok(());
    }
    let value = (cx.reg(Register::EDX) << 32) | cx.reg(Register::EAX);
    match write_msr(cx, number, value) {
        Some(()) => Ok(()),
        None => cx.with_platform(|p| p.msr_write(number, value)).ok_or(gp),
    }
}

fn read_msr(cx: &Exec<'_>, number: u32) -> Option<u64> {
    let (st, m) = (&*cx.st, &cx.st.sys.msr);
    Some(match number {
        msr::TSC => crate::host_tsc().wrapping_add(m.tsc_offset),
        msr::PAT => m.pat,
        msr::SYSENTER_CS => m.sysenter[0],
        msr::SYSENTER_ESP => m.sysenter[1],
        msr::SYSENTER_EIP => m.sysenter[2],
        msr::MISC_ENABLE => m.misc_enable,
        msr::PLATFORM_ID => 0,
        // Revision 1, in the high half: no microcode was ever loaded or needed.
        msr::UCODE_REV => 1 << 32,
        msr::ARCH_CAPABILITIES => crate::cpuid::ARCH_CAPABILITIES,
        msr::EFER => st.sys.efer,
        msr::STAR => m.star,
        msr::LSTAR => m.lstar,
        msr::CSTAR => m.cstar,
        msr::SFMASK => m.sfmask,
        msr::FS_BASE => st.seg[4].base,
        msr::GS_BASE => st.seg[5].base,
        msr::KERNEL_GS_BASE => m.kernel_gs_base,
        msr::TSC_AUX => m.tsc_aux,
        _ => return None,
    })
}

fn write_msr(cx: &mut Exec<'_>, number: u32, value: u64) -> Option<()> {
    let address = |v: u64| canonical(v).then_some(v);
    let st = &mut *cx.st;
    let m = &mut st.sys.msr;
    match number {
        msr::TSC => m.tsc_offset = value.wrapping_sub(crate::host_tsc()),
        msr::PAT => m.pat = value,
        msr::SYSENTER_CS => m.sysenter[0] = value,
        msr::SYSENTER_ESP => m.sysenter[1] = address(value)?,
        msr::SYSENTER_EIP => m.sysenter[2] = address(value)?,
        msr::MISC_ENABLE => m.misc_enable = value,
        // Writing 0 prepares the revision read; there is nothing to load.
        msr::UCODE_REV => {}
        msr::STAR => m.star = value,
        msr::LSTAR => m.lstar = address(value)?,
        msr::CSTAR => m.cstar = address(value)?,
        msr::SFMASK => m.sfmask = value & 0xffff_ffff,
        msr::FS_BASE => st.seg[4].base = address(value)?,
        msr::GS_BASE => st.seg[5].base = address(value)?,
        msr::KERNEL_GS_BASE => m.kernel_gs_base = address(value)?,
        msr::TSC_AUX => m.tsc_aux = value & 0xffff_ffff,
        msr::EFER => {
            if value & !efer::SUPPORTED != 0 {
                return None;
            }
            // LMA is the processor's: long mode is active while LME and paging are on.
            let lma = st.sys.efer & efer::LMA;
            st.sys.efer = (value & !efer::LMA) | lma;
            cx.control_changed(Flush::All);
        }
        _ => return None,
    }
    Some(())
}

/// LGDT, LIDT (CPL 0), SGDT, SIDT: a 2-byte limit and an 8-byte base (4 bytes outside
/// 64-bit mode).
fn descriptor_table(cx: &mut Exec<'_>) -> Result<(), Exception> {
    use Mnemonic::*;
    let addr = cx.ea();
    let m = cx.ins.mnemonic();
    let len = if cx.st.long_mode { 10 } else { 6 };
    if matches!(m, Lgdt | Lidt) {
        cx.kernel_only()?;
        let mut raw = [0u8; 10];
        cx.mem.read(addr, &mut raw[..len], Access::Read)?;
        let table = crate::system::Table {
            limit: u16::from_le_bytes([raw[0], raw[1]]),
            base: u64::from_le_bytes(raw[2..].try_into().expect("8 bytes")),
        };
        if m == Lgdt {
            cx.st.sys.gdtr = table;
        } else {
            cx.st.sys.idtr = table;
        }
        return Ok(());
    }
    let table = if m == Sgdt {
        cx.st.sys.gdtr
    } else {
        cx.st.sys.idtr
    };
    let mut raw = table.limit.to_le_bytes().to_vec();
    raw.extend(table.base.to_le_bytes());
    cx.mem.write(addr, &raw[..len])?;
    Ok(())
}

/// MOV to or from CR0, CR2, CR3, CR4, CR8, DR0-7 and the segment registers.
fn special_mov(cx: &mut Exec<'_>) -> Result<(), Exception> {
    let (dst, src) = (cx.ins.op_register(0), cx.ins.op_register(1));
    if src.is_segment_register() {
        let selector = cx.st.seg[src.number()].selector;
        return cx.write(0, u64::from(selector));
    }
    if dst.is_segment_register() {
        return load_segment(cx, dst);
    }
    cx.kernel_only()?;
    if src.is_cr() || src.is_dr() {
        let value = if src.is_cr() {
            read_cr(cx, src)?
        } else {
            cx.st.sys.dr[src.number()]
        };
        cx.set_reg(dst, value);
        return Ok(());
    }
    let value = cx.reg(src);
    if dst.is_dr() {
        cx.st.sys.dr[dst.number()] = value;
        return Ok(());
    }
    write_cr(cx, dst, value)
}

fn read_cr(cx: &Exec<'_>, cr: Register) -> Result<u64, Exception> {
    let sys = &cx.st.sys;
    Ok(match cr {
        Register::CR0 => sys.cr0,
        Register::CR2 => sys.cr2,
        Register::CR3 => sys.cr3,
        Register::CR4 => sys.cr4,
        Register::CR8 => sys.cr8,
        _ => return Err(Exception::InvalidOpcode),
    })
}

fn write_cr(cx: &mut Exec<'_>, cr: Register, value: u64) -> Result<(), Exception> {
    let gp = Exception::GeneralProtection(0);
    let sys = &mut cx.st.sys;
    let flush = match cr {
        Register::CR0 => {
            let long = sys.efer & efer::LME != 0;
            let paging = value & cr0::PG != 0;
            if value >> 32 != 0
                || (paging && value & cr0::PE == 0)
                || (paging && sys.cr4 & cr4::PAE == 0)
            {
                return Err(gp);
            }
            if (paging && !long) || (sys.efer & efer::LMA != 0 && !paging) {
                // Only long-mode paging is implemented: 32-bit and PAE paging without
                // long mode, and leaving long mode, are not (Linux does neither).
                static WARNED: std::sync::Once = std::sync::Once::new();
                WARNED.call_once(|| {
                    tracing::warn!("software CPU: paging outside long mode is not implemented (#GP; logged once)");
                });
                return Err(gp);
            }
            sys.cr0 = value | cr0::ET;
            if paging {
                // Long mode activates with paging (in compatibility mode until a far
                // jump loads a 64-bit code segment).
                sys.efer |= efer::LMA;
            }
            Flush::All
        }
        Register::CR2 => {
            sys.cr2 = value;
            Flush::None
        }
        Register::CR3 => {
            if value >> PHYS_BITS != 0 {
                return Err(gp);
            }
            sys.cr3 = value;
            Flush::NonGlobal
        }
        Register::CR4 => {
            let paging = sys.cr0 & cr0::PG != 0;
            if value & !cr4::SUPPORTED != 0 || (paging && value & cr4::PAE == 0) {
                return Err(gp);
            }
            sys.cr4 = value;
            Flush::All
        }
        Register::CR8 => {
            if value > 15 {
                return Err(gp);
            }
            sys.cr8 = value;
            Flush::None
        }
        _ => return Err(Exception::InvalidOpcode),
    };
    cx.control_changed(flush);
    Ok(())
}

/// MOV to DS, ES, FS, GS or SS (MOV SS holds interrupts off for one instruction).
fn load_segment(cx: &mut Exec<'_>, reg: Register) -> Result<(), Exception> {
    if reg == Register::CS {
        return Err(Exception::InvalidOpcode);
    }
    let selector = cx.read(1)? as u16;
    let stack = reg == Register::SS;
    let mut seg = if cx.st.sys.cr0 & cr0::PE == 0 {
        // Real mode: the base is the selector's paragraph; the rest stays cached.
        Segment {
            selector,
            base: u64::from(selector) << 4,
            ..cx.st.seg[reg.number()]
        }
    } else {
        data_segment(cx.st, cx.mem, selector, stack)?
    };
    let index = reg.number();
    if matches!(reg, Register::FS | Register::GS) {
        // The descriptor's 32-bit base (zero-extended): MSRs set wider ones.
        seg.base &= 0xffff_ffff;
    }
    cx.st.seg[index] = seg;
    if stack {
        cx.st.sys.interrupt_shadow = true;
    }
    Ok(())
}
