//! x87 instructions, FXSAVE/FXRSTOR and EMMS.
//!
//! Control instructions (FNINIT, FLDCW, FNSTSW, ...) run here; everything that computes
//! runs on the host's x87 unit ([`super::x87_host`]) against the guest's state.
//!
//! Exceptions: the host computes with every exception masked. The flags it raises are
//! merged into FSW, and one the guest left unmasked sets ES, so that the next waiting
//! x87 or MMX instruction raises #MF, as on hardware. (With an exception unmasked, the
//! destination then holds the masked response, where hardware would leave it; neither
//! Linux nor its programs unmask x87 exceptions.)

use iced_x86::{Code, Instruction, OpKind, Register};

use super::x87_host::{self, FxImage, Operand, OPERAND_LEN};
use super::Exec;
use crate::cpu::Exception;
use crate::flags::Flags;
use crate::memory::Access;
use crate::state::MXCSR_RESET;
use crate::x87::{le16, le32, loaded_fcw, X87State, FSW_EXCEPTIONS, FSW_PENDING, FXSAVE_LEN};

/// Whether `ins` is an x87 instruction, WAIT, FXSAVE/FXRSTOR or EMMS.
pub fn is_x87(ins: &Instruction) -> bool {
    // iced numbers the escape opcodes D8..DF contiguously.
    let escape = Code::Fadd_m32fp as u32..=Code::Fcomip_st0_sti as u32;
    escape.contains(&(ins.code() as u32))
        || matches!(
            ins.code(),
            Code::Wait
                | Code::Fxsave_m512byte
                | Code::Fxsave64_m512byte
                | Code::Fxrstor_m512byte
                | Code::Fxrstor64_m512byte
                | Code::Emms
        )
}

/// Instructions that do not first raise a pending unmasked exception (#MF).
fn is_non_waiting(code: Code) -> bool {
    matches!(
        code,
        Code::Fninit
            | Code::Fnclex
            | Code::Fnstcw_m2byte
            | Code::Fnstsw_m2byte
            | Code::Fnstsw_AX
            | Code::Fnstenv_m28byte
            | Code::Fnsave_m108byte
            | Code::Fneni
            | Code::Fndisi
            | Code::Fnsetpm
            | Code::Fxsave_m512byte
            | Code::Fxsave64_m512byte
            | Code::Fxrstor_m512byte
            | Code::Fxrstor64_m512byte
    )
}

/// Control instructions load or store the environment; they leave FIP and FDP alone.
fn is_control(code: Code) -> bool {
    is_non_waiting(code)
        || matches!(
            code,
            Code::Wait
                | Code::Finit
                | Code::Fclex
                | Code::Fldcw_m2byte
                | Code::Fstcw_m2byte
                | Code::Fstsw_m2byte
                | Code::Fstsw_AX
                | Code::Fldenv_m28byte
                | Code::Fstenv_m28byte
                | Code::Frstor_m108byte
                | Code::Fsave_m108byte
        )
}

/// Runs an x87 instruction (see [`is_x87`]).
pub fn execute(cx: &mut Exec<'_>) -> Result<(), Exception> {
    let code = cx.ins.code();
    if !is_non_waiting(code) && cx.st.x87.pending() {
        return Err(Exception::FloatingPoint);
    }
    match code {
        Code::Wait | Code::Fneni | Code::Feni | Code::Fndisi | Code::Fdisi => {}
        Code::Fnsetpm | Code::Fsetpm => {}
        // The registers keep their contents; they are only tagged empty.
        Code::Fninit | Code::Finit => {
            cx.st.x87 = X87State {
                regs: cx.st.x87.regs,
                ..X87State::default()
            }
        }
        Code::Fnclex | Code::Fclex => cx.st.x87.fsw &= !(FSW_PENDING | FSW_EXCEPTIONS | 0x40),
        Code::Fldcw_m2byte => {
            let fcw = cx.read(0)? as u16;
            cx.st.x87.fcw = loaded_fcw(fcw);
            cx.st.x87.summarize();
        }
        Code::Fnstcw_m2byte | Code::Fstcw_m2byte => cx.write(0, u64::from(cx.st.x87.fcw))?,
        Code::Fnstsw_m2byte | Code::Fstsw_m2byte | Code::Fnstsw_AX | Code::Fstsw_AX => {
            cx.write(0, u64::from(cx.st.x87.fsw))?
        }
        Code::Fxsave_m512byte | Code::Fxsave64_m512byte => fxsave(cx, code)?,
        Code::Fxrstor_m512byte | Code::Fxrstor64_m512byte => fxrstor(cx, code)?,
        Code::Emms => cx.st.x87.ftw = 0,
        _ => on_host(cx, code)?,
    }
    Ok(())
}

/// The FXSAVE area's address: 16-byte aligned, or #GP.
fn fxsave_area(cx: &Exec<'_>) -> Result<u64, Exception> {
    let addr = cx.ea();
    if addr.is_multiple_of(16) {
        Ok(addr)
    } else {
        Err(Exception::GeneralProtection(0))
    }
}

/// FXSAVE: x87, MXCSR and the XMM registers (XMM0..7 outside 64-bit mode).
fn fxsave(cx: &mut Exec<'_>, code: Code) -> Result<(), Exception> {
    let addr = fxsave_area(cx)?;
    let mut area = [0u8; FXSAVE_LEN];
    cx.st.x87.save(&mut area, code == Code::Fxsave64_m512byte);
    area[24..28].copy_from_slice(&cx.st.mxcsr.to_le_bytes());
    area[28..32].copy_from_slice(&super::sse_float::MXCSR_MASK.to_le_bytes());
    let xmms = if cx.st.long_mode { 16 } else { 8 };
    for (i, x) in cx.st.xmm.iter().take(xmms).enumerate() {
        area[160 + 16 * i..176 + 16 * i].copy_from_slice(&x.to_le_bytes());
    }
    // Bytes past the registers are reserved or for software: left as they are.
    cx.mem.write(addr, &area[..160 + 16 * xmms])?;
    Ok(())
}

/// FXRSTOR: the inverse of FXSAVE; reserved MXCSR bits raise #GP.
fn fxrstor(cx: &mut Exec<'_>, code: Code) -> Result<(), Exception> {
    let addr = fxsave_area(cx)?;
    let xmms = if cx.st.long_mode { 16 } else { 8 };
    let mut area = [0u8; FXSAVE_LEN];
    cx.mem
        .read(addr, &mut area[..160 + 16 * xmms], Access::Read)?;
    let mxcsr = u32::from_le_bytes([area[24], area[25], area[26], area[27]]);
    if mxcsr & !super::sse_float::MXCSR_MASK != 0 {
        return Err(Exception::GeneralProtection(0));
    }
    let mut x87 = X87State::restore(&area, code == Code::Fxrstor64_m512byte);
    x87.fcw = loaded_fcw(x87.fcw);
    x87.summarize();
    cx.st.x87 = x87;
    cx.st.mxcsr = mxcsr;
    for (i, x) in cx.st.xmm.iter_mut().take(xmms).enumerate() {
        let mut b = [0u8; 16];
        b.copy_from_slice(&area[160 + 16 * i..176 + 16 * i]);
        *x = u128::from_le_bytes(b);
    }
    Ok(())
}

/// Instructions that store to their memory operand (the rest read it).
fn stores(code: Code) -> bool {
    use Code::*;
    matches!(
        code,
        Fst_m32fp
            | Fstp_m32fp
            | Fst_m64fp
            | Fstp_m64fp
            | Fstp_m80fp
            | Fist_m16int
            | Fistp_m16int
            | Fisttp_m16int
            | Fist_m32int
            | Fistp_m32int
            | Fisttp_m32int
            | Fistp_m64int
            | Fisttp_m64int
            | Fbstp_m80bcd
            | Fnstenv_m28byte
            | Fstenv_m28byte
            | Fnsave_m108byte
            | Fsave_m108byte
    )
}

/// The host image of the guest's state: exceptions masked, no summary, MXCSR at reset
/// (x87 instructions do not use it).
fn image(x87: &X87State) -> FxImage {
    let mut image = FxImage([0; FXSAVE_LEN]);
    let mut masked = *x87;
    masked.fcw |= FSW_EXCEPTIONS;
    masked.fsw &= !FSW_PENDING;
    masked.save(&mut image.0, true);
    image.0[24..28].copy_from_slice(&MXCSR_RESET.to_le_bytes());
    image
}

/// Writes the guest's control and status words and error pointers into a 28-byte
/// protected-mode environment the host stored (FNSTENV, FNSAVE's header): the host's
/// own are the stub's, and vendors differ in what they keep there. As gasang's model
/// (an Intel CPU with CPUID.(7,0):EBX[13]) does: 32-bit FIP and FDP, FOP, and zero
/// FCS and FDS.
fn store_environment(env: &mut [u8], x87: &X87State) {
    env[0..2].copy_from_slice(&x87.fcw.to_le_bytes());
    env[4..6].copy_from_slice(&x87.fsw.to_le_bytes());
    env[12..16].copy_from_slice(&(x87.fip as u32).to_le_bytes());
    env[16..18].fill(0);
    env[18..20].copy_from_slice(&(x87.fop & 0x7ff).to_le_bytes());
    env[20..24].copy_from_slice(&(x87.fdp as u32).to_le_bytes());
    env[24..26].fill(0);
}

/// FIP, FDP and FOP of a 28-byte protected-mode environment.
fn environment_pointers(env: &[u8]) -> (u64, u64, u16) {
    let fip = u64::from(le32(env, 12));
    (fip, u64::from(le32(env, 20)), le16(env, 18) & 0x7ff)
}

/// Runs a computing instruction on the host (see the module comment).
fn on_host(cx: &mut Exec<'_>, code: Code) -> Result<(), Exception> {
    let sti = (0..cx.ins.op_count())
        .map(|i| cx.ins.op_register(i))
        .find(|r| (Register::ST1..=Register::ST7).contains(r))
        .map_or(0, |r| r as usize - Register::ST0 as usize);
    let stub = x87_host::stub(code, sti).ok_or(Exception::InvalidOpcode)?;
    let memory = (0..cx.ins.op_count()).any(|i| cx.ins.op_kind(i) == OpKind::Memory);
    let (addr, len) = (cx.ea(), cx.ins.memory_size().size().min(OPERAND_LEN));
    let mut operand: Operand = [0; OPERAND_LEN];
    if memory && !stores(code) {
        cx.mem.read(addr, &mut operand[..len], Access::Read)?;
    }
    let old = cx.st.x87;
    let mut image = image(&old);
    let flags = stub(&mut image, &mut operand, (cx.st.rflags as u16 & 0xd5) << 8) >> 8;
    let mut new = X87State::restore(&image.0, true);
    // The environment instructions load the control word; the rest keep the guest's.
    let loads_control = matches!(
        code,
        Code::Fldenv_m28byte
            | Code::Frstor_m108byte
            | Code::Fnstenv_m28byte
            | Code::Fstenv_m28byte
            | Code::Fnsave_m108byte
            | Code::Fsave_m108byte
    );
    if !loads_control {
        new.fcw = old.fcw;
    }
    new.summarize();
    (new.fip, new.fdp, new.fop) = match code {
        // The loaded environment's pointers: the guest's own, whatever the host keeps.
        Code::Fldenv_m28byte | Code::Frstor_m108byte => environment_pointers(&operand),
        // FNSAVE ends as FNINIT does, which clears them.
        Code::Fnsave_m108byte | Code::Fsave_m108byte => (0, 0, 0),
        _ if is_control(code) || loads_control => (old.fip, old.fdp, old.fop),
        _ => (cx.ins.ip(), if memory { addr } else { old.fdp }, 0),
    };
    if memory && stores(code) {
        if matches!(
            code,
            Code::Fnstenv_m28byte
                | Code::Fstenv_m28byte
                | Code::Fnsave_m108byte
                | Code::Fsave_m108byte
        ) {
            store_environment(&mut operand, &old);
        }
        cx.mem.write(addr, &operand[..len])?;
    }
    if matches!(
        code,
        Code::Fcomi_st0_sti | Code::Fcomip_st0_sti | Code::Fucomi_st0_sti | Code::Fucomip_st0_sti
    ) {
        let zf_pf_cf = u64::from(flags) & (Flags::ZF | Flags::PF | Flags::CF);
        cx.set_flags(Flags::ARITH, zf_pf_cf);
    }
    cx.st.x87 = new;
    Ok(())
}
