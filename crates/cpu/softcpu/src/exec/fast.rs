//! The fast path: the common integer instructions (see [`Fast`]), run straight from
//! their decoded operands. They share their arithmetic with the general executor
//! ([`crate::flags`], [`super::shift::result`], [`super::muldiv::imul`]) and differ
//! only in how operands are reached: no per-instruction context, no rollback (each
//! faults, if at all, before it changes anything).

use iced_x86::Mnemonic;

use crate::cpu::Exception;
use crate::decoded::{gpr_get, gpr_set, Decoded, Fast, Operand};
use crate::flags::{self, mask, sign_extend, Flags};
use crate::memory::{Access, Memory};
use crate::state::{CpuState, Gpr};

/// Runs `d`, whose form is not [`Fast::No`], with RIP already past it.
#[inline(always)]
pub(crate) fn execute<M: Memory>(
    st: &mut CpuState,
    mem: &mut M,
    d: &Decoded,
) -> Result<(), Exception> {
    let [dst, src] = d.operands;
    match d.fast {
        Fast::No | Fast::Nop => {}
        Fast::Mov => {
            let v = read(st, mem, d, src)?;
            write(st, mem, d, dst, v)?;
        }
        Fast::Movzx => {
            let v = read(st, mem, d, src)?;
            write(st, mem, d, dst, v)?;
        }
        Fast::Movsx => {
            let v = sign_extend(read(st, mem, d, src)?, bits(src));
            write(st, mem, d, dst, v & mask(bits(dst)))?;
        }
        Fast::Lea => {
            let v = d.ea.map_or(0, |a| a.offset(st)) & mask(bits(dst));
            write(st, mem, d, dst, v)?;
        }
        Fast::Add => alu(st, mem, d, Mnemonic::Add)?,
        Fast::Or => alu(st, mem, d, Mnemonic::Or)?,
        Fast::Adc => alu(st, mem, d, Mnemonic::Adc)?,
        Fast::Sbb => alu(st, mem, d, Mnemonic::Sbb)?,
        Fast::And => alu(st, mem, d, Mnemonic::And)?,
        Fast::Sub => alu(st, mem, d, Mnemonic::Sub)?,
        Fast::Xor => alu(st, mem, d, Mnemonic::Xor)?,
        Fast::Cmp => alu(st, mem, d, Mnemonic::Cmp)?,
        Fast::Test => alu(st, mem, d, Mnemonic::Test)?,
        Fast::IncDec(dec) => {
            let n = bits(dst);
            let a = read(st, mem, d, dst)?;
            let (r, f) = if dec {
                flags::sub(a, 1, false, n)
            } else {
                flags::add(a, 1, false, n)
            };
            write(st, mem, d, dst, r)?;
            set_flags(st, Flags::ARITH & !Flags::CF, f);
        }
        Fast::Not => {
            let v = !read(st, mem, d, dst)?;
            write(st, mem, d, dst, v)?;
        }
        Fast::Neg => {
            let a = read(st, mem, d, dst)?;
            let (r, f) = flags::sub(0, a, false, bits(dst));
            write(st, mem, d, dst, r)?;
            set_flags(st, Flags::ARITH, f);
        }
        Fast::Bswap => {
            let v = super::data::byte_swap(read(st, mem, d, dst)?, bits(dst));
            write(st, mem, d, dst, v)?;
        }
        Fast::Shl => shift(st, mem, d, Mnemonic::Shl)?,
        Fast::Shr => shift(st, mem, d, Mnemonic::Shr)?,
        Fast::Sar => shift(st, mem, d, Mnemonic::Sar)?,
        Fast::Rol => shift(st, mem, d, Mnemonic::Rol)?,
        Fast::Ror => shift(st, mem, d, Mnemonic::Ror)?,
        Fast::Imul => {
            let n = bits(dst);
            let (a, b) = (read(st, mem, d, dst)?, read(st, mem, d, src)?);
            let (r, f) = super::muldiv::imul(a, b, n);
            write(st, mem, d, dst, r)?;
            set_flags(st, Flags::ARITH, f);
        }
        Fast::Cmov(cc) => {
            let v = if flags::condition(cc, st.rflags) {
                read(st, mem, d, src)?
            } else {
                read(st, mem, d, dst)?
            };
            write(st, mem, d, dst, v)?;
        }
        Fast::Setcc(cc) => {
            let v = u64::from(flags::condition(cc, st.rflags));
            write(st, mem, d, dst, v)?;
        }
        Fast::Jcc(cc, target) => {
            if flags::condition(cc, st.rflags) {
                st.rip = target;
            }
        }
        Fast::Jmp(target) => st.rip = target,
        Fast::Call(target) => {
            push(st, mem, st.rip)?;
            st.rip = target;
        }
        Fast::CallIndirect => {
            let target = read(st, mem, d, dst)?;
            push(st, mem, st.rip)?;
            st.rip = target;
        }
        Fast::JmpIndirect => st.rip = read(st, mem, d, dst)?,
        Fast::Ret => {
            let rsp = st.reg(Gpr::Rsp);
            st.rip = mem.load(rsp, 8, Access::Read)?;
            st.set_reg(Gpr::Rsp, rsp.wrapping_add(8));
        }
        Fast::Push => {
            let v = read(st, mem, d, dst)?;
            push(st, mem, v)?;
        }
        Fast::Pop => {
            let rsp = st.reg(Gpr::Rsp);
            let v = mem.load(rsp, 8, Access::Read)?;
            // A memory destination addressed through RSP sees the incremented RSP.
            st.set_reg(Gpr::Rsp, rsp.wrapping_add(8));
            if let Err(e) = write(st, mem, d, dst, v) {
                st.set_reg(Gpr::Rsp, rsp);
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Pushes 8 bytes: RSP moves only once the store succeeded.
#[inline(always)]
fn push<M: Memory>(st: &mut CpuState, mem: &mut M, value: u64) -> Result<(), Exception> {
    let rsp = st.reg(Gpr::Rsp).wrapping_sub(8);
    mem.store(rsp, 8, value)?;
    st.set_reg(Gpr::Rsp, rsp);
    Ok(())
}

/// The ALU group: `dst op= src`, flags; CMP and TEST store nothing.
#[inline(always)]
fn alu<M: Memory>(
    st: &mut CpuState,
    mem: &mut M,
    d: &Decoded,
    op: Mnemonic,
) -> Result<(), Exception> {
    let [dst, src] = d.operands;
    let n = bits(dst);
    let a = read(st, mem, d, dst)?;
    let b = read(st, mem, d, src)? & mask(n);
    let (r, f) = flags::alu(op, a, b, st.rflags & Flags::CF != 0, n);
    if !matches!(op, Mnemonic::Cmp | Mnemonic::Test) {
        write(st, mem, d, dst, r)?;
    }
    set_flags(st, Flags::ARITH, f);
    Ok(())
}

/// SHL, SHR, SAR, ROL, ROR by an immediate or CL. A zero count changes no flags but
/// still writes the operand (a 32-bit register's upper half is cleared).
#[inline(always)]
fn shift<M: Memory>(
    st: &mut CpuState,
    mem: &mut M,
    d: &Decoded,
    op: Mnemonic,
) -> Result<(), Exception> {
    let [dst, src] = d.operands;
    let n = bits(dst);
    let count = (read(st, mem, d, src)? & if n == 64 { 0x3f } else { 0x1f }) as u32;
    let a = read(st, mem, d, dst)?;
    if count == 0 {
        return write(st, mem, d, dst, a);
    }
    let (r, f, which) = super::shift::result(op, a, count, n, st.rflags & Flags::CF != 0);
    write(st, mem, d, dst, r)?;
    set_flags(st, which, f);
    Ok(())
}

/// An operand's width in bits.
fn bits(op: Operand) -> u32 {
    match op {
        Operand::Gpr { bits, .. } | Operand::Memory { bits } | Operand::Immediate { bits, .. } => {
            bits.into()
        }
        Operand::Other => 64,
    }
}

/// An operand's value, zero-extended.
#[inline(always)]
fn read<M: Memory>(st: &CpuState, mem: &mut M, d: &Decoded, op: Operand) -> Result<u64, Exception> {
    match op {
        Operand::Gpr { index, shift, bits } => Ok(gpr_get(st, index, shift, bits)),
        Operand::Immediate { value, .. } => Ok(value),
        Operand::Memory { bits } => {
            let addr = d.ea.map_or(0, |a| a.linear(st));
            Ok(mem.load(addr, usize::from(bits / 8), Access::Read)?)
        }
        // The fast forms have no such operands.
        Operand::Other => Err(Exception::InvalidOpcode),
    }
}

/// Writes a register or memory operand.
#[inline(always)]
fn write<M: Memory>(
    st: &mut CpuState,
    mem: &mut M,
    d: &Decoded,
    op: Operand,
    value: u64,
) -> Result<(), Exception> {
    match op {
        Operand::Gpr { index, shift, bits } => {
            gpr_set(st, index, shift, bits, value);
            Ok(())
        }
        Operand::Memory { bits } => {
            let addr = d.ea.map_or(0, |a| a.linear(st));
            Ok(mem.store(addr, usize::from(bits / 8), value)?)
        }
        Operand::Immediate { .. } | Operand::Other => Err(Exception::InvalidOpcode),
    }
}

/// Replaces the flags in `which` with those in `value`.
fn set_flags(st: &mut CpuState, which: u64, value: u64) {
    st.rflags = (st.rflags & !which) | (value & which);
}
