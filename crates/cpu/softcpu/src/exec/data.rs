//! Data movement and bit instructions; anything unimplemented raises #UD.

use iced_x86::{Mnemonic, OpKind, Register};

use super::Exec;
use crate::cpu::Exception;
use crate::flags::{self, bit, mask, sign_extend, Flags};

/// MOV family, LEA, XCHG, CMPXCHG, XADD, sign extensions, bit ops, flag ops.
pub fn execute(cx: &mut Exec<'_>) -> Result<(), Exception> {
    use Mnemonic::*;
    match cx.ins.mnemonic() {
        Mov | Movnti => {
            let v = cx.read(1)?;
            cx.write(0, v)?;
        }
        Movzx => {
            let v = cx.read(1)?;
            cx.write(0, v)?;
        }
        Movsx | Movsxd => {
            let v = sign_extend(cx.read(1)?, cx.bits(1));
            cx.write(0, v & mask(cx.bits(0)))?;
        }
        Lea => {
            // The offset alone: a segment override does not apply to LEA.
            let offset = cx.d.ea.map_or_else(|| cx.ea(), |a| a.offset(cx.st));
            let v = offset & mask(cx.bits(0));
            cx.write(0, v)?;
        }
        Xchg => {
            let (a, b) = (cx.read(0)?, cx.read(1)?);
            cx.write(0, b)?;
            cx.write(1, a)?;
        }
        Xadd => {
            let bits = cx.bits(0);
            let (a, b) = (cx.read(0)?, cx.read(1)?);
            let (sum, f) = flags::add(a, b, false, bits);
            cx.set_flags(Flags::ARITH, f);
            cx.write(1, a)?;
            cx.write(0, sum)?;
        }
        Cmpxchg => cmpxchg(cx)?,
        Cmpxchg8b | Cmpxchg16b => cmpxchg_wide(cx)?,
        Cbw | Cwde | Cdqe | Cwd | Cdq | Cqo => sign_extension(cx),
        Bt | Bts | Btr | Btc => bit_test(cx)?,
        Bsf | Bsr | Tzcnt | Lzcnt | Popcnt => bit_scan(cx)?,
        Bswap => {
            let bits = cx.bits(0);
            let v = cx.read(0)?;
            cx.write(0, byte_swap(v, bits))?;
        }
        Cpuid | Rdtsc | Rdtscp => cpu_info(cx),
        // Memory here is coherent and uncached: nothing to write back, but the line's
        // address must be mapped, as for a read.
        Clflush => {
            let addr = cx.ea();
            cx.mem.probe(addr)?;
        }
        Clc => cx.set_flags(Flags::CF, 0),
        Stc => cx.set_flags(Flags::CF, Flags::CF),
        Cmc => cx.st.rflags ^= Flags::CF,
        Cld => cx.set_flags(Flags::DF, 0),
        Std => cx.set_flags(Flags::DF, Flags::DF),
        _ if super::x87::is_x87(cx.ins) => return super::x87::execute(cx),
        _ => return super::sse::execute(cx),
    }
    Ok(())
}

/// CBW, CWDE, CDQE (sign-extend the accumulator in place) and CWD, CDQ, CQO (into DX).
fn sign_extension(cx: &mut Exec<'_>) {
    use Mnemonic::*;
    match cx.ins.mnemonic() {
        Cbw | Cwde | Cdqe => {
            let (from, to) = match cx.ins.mnemonic() {
                Cbw => (Register::AL, Register::AX),
                Cwde => (Register::AX, Register::EAX),
                _ => (Register::EAX, Register::RAX),
            };
            let v = sign_extend(cx.reg(from), from.size() as u32 * 8);
            cx.set_reg(to, v);
        }
        // CWD, CDQ, CQO.
        _ => {
            let (src, dst) = match cx.ins.mnemonic() {
                Cwd => (Register::AX, Register::DX),
                Cdq => (Register::EAX, Register::EDX),
                _ => (Register::RAX, Register::RDX),
            };
            let bits = src.size() as u32 * 8;
            let fill = if flags::sign(cx.reg(src), bits) {
                u64::MAX
            } else {
                0
            };
            cx.set_reg(dst, fill);
        }
    }
}

/// CPUID (gasang's model) and RDTSC/RDTSCP (the host's counter).
fn cpu_info(cx: &mut Exec<'_>) {
    use Mnemonic::*;
    match cx.ins.mnemonic() {
        Cpuid => {
            let leaf = cx.reg(Register::EAX) as u32;
            let sub = cx.reg(Register::ECX) as u32;
            let model = crate::cpuid::cpuid(leaf, sub);
            let [a, b, c, d] = cx.with_platform(|p| p.cpuid(leaf, sub, model));
            for (reg, value) in [
                (Register::EAX, a),
                (Register::EBX, b),
                (Register::ECX, c),
                (Register::EDX, d),
            ] {
                cx.set_reg(reg, u64::from(value));
            }
        }
        _ => {
            // The host's counter plus the offset a guest's TSC write set.
            let tsc = crate::host_tsc().wrapping_add(cx.st.sys.msr.tsc_offset);
            cx.set_reg(Register::EAX, tsc & 0xffff_ffff);
            cx.set_reg(Register::EDX, tsc >> 32);
            if cx.ins.mnemonic() == Rdtscp {
                cx.set_reg(Register::ECX, cx.st.sys.msr.tsc_aux);
            }
        }
    }
}

/// CMPXCHG r/m, r: compare the accumulator with r/m; equal -> store r, else load it.
fn cmpxchg(cx: &mut Exec<'_>) -> Result<(), Exception> {
    let bits = cx.bits(0);
    let acc = super::operand::accumulator(bits);
    let (dest, expected) = (cx.read(0)?, cx.reg(acc));
    let (_, f) = flags::sub(expected, dest, false, bits);
    cx.set_flags(Flags::ARITH, f);
    if dest == expected {
        let v = cx.read(1)?;
        cx.write(0, v)
    } else {
        // The destination is written back unchanged (a locked cycle on hardware).
        cx.write(0, dest)?;
        cx.set_reg(acc, dest);
        Ok(())
    }
}

/// The address of the operand-sized unit holding bit `offset` (a signed register) of the
/// bit string at the memory operand.
pub(super) fn bit_string_address(cx: &Exec<'_>, offset: Register) -> u64 {
    let bits = cx.bits(0);
    let signed = sign_extend(cx.reg(offset), bits) as i64;
    let unit = i64::from(bits / 8);
    cx.ea()
        .wrapping_add((signed.div_euclid(i64::from(bits)) * unit) as u64)
}

/// CMPXCHG8B and CMPXCHG16B: compare EDX:EAX (RDX:RAX) with the memory operand; if
/// equal, store ECX:EBX (RCX:RBX), else load the operand into EDX:EAX (RDX:RAX).
fn cmpxchg_wide(cx: &mut Exec<'_>) -> Result<(), Exception> {
    let wide = cx.ins.mnemonic() == Mnemonic::Cmpxchg16b;
    let addr = cx.ea();
    if wide && !addr.is_multiple_of(16) {
        return Err(Exception::GeneralProtection(0));
    }
    let (len, half) = if wide { (16, 64) } else { (8, 32) };
    let pair = |hi: Register, lo: Register, cx: &Exec<'_>| {
        (u128::from(cx.reg(hi)) << half) | u128::from(cx.reg(lo))
    };
    let (expected, replacement) = if wide {
        (
            pair(Register::RDX, Register::RAX, cx),
            pair(Register::RCX, Register::RBX, cx),
        )
    } else {
        (
            pair(Register::EDX, Register::EAX, cx),
            pair(Register::ECX, Register::EBX, cx),
        )
    };
    let dest = cx.load_wide(addr, len)?;
    if dest == expected {
        cx.store_wide(addr, len, replacement)?;
        cx.set_flags(Flags::ZF, Flags::ZF);
    } else {
        // The operand is written back unchanged (a locked cycle on hardware).
        cx.store_wide(addr, len, dest)?;
        let (hi, lo) = if wide {
            (Register::RDX, Register::RAX)
        } else {
            (Register::EDX, Register::EAX)
        };
        cx.set_reg(lo, dest as u64);
        cx.set_reg(hi, (dest >> half) as u64);
        cx.set_flags(Flags::ZF, 0);
    }
    Ok(())
}

/// BT, BTS, BTR, BTC. A register bit offset into memory addresses a bit string.
fn bit_test(cx: &mut Exec<'_>) -> Result<(), Exception> {
    let bits = cx.bits(0);
    let offset = cx.read(1)?;
    let (value, index, addr) =
        if cx.ins.op_kind(0) == OpKind::Memory && cx.ins.op_kind(1) == OpKind::Register {
            let signed = sign_extend(offset, bits) as i64;
            let addr = bit_string_address(cx, cx.ins.op_register(1));
            (
                cx.load(addr, bits)?,
                signed.rem_euclid(i64::from(bits)) as u32,
                Some(addr),
            )
        } else {
            (cx.read(0)?, (offset % u64::from(bits)) as u32, None)
        };
    let set = (value >> index) & 1 == 1;
    cx.set_flags(Flags::CF, bit(set, Flags::CF));
    let new = match cx.ins.mnemonic() {
        Mnemonic::Bts => value | (1 << index),
        Mnemonic::Btr => value & !(1 << index),
        Mnemonic::Btc => value ^ (1 << index),
        _ => return Ok(()),
    };
    match addr {
        Some(addr) => cx.store(addr, bits, new),
        None => cx.write(0, new),
    }
}

/// BSF, BSR (destination unchanged on a zero source), TZCNT, LZCNT, POPCNT.
fn bit_scan(cx: &mut Exec<'_>) -> Result<(), Exception> {
    let bits = cx.bits(0);
    let src = cx.read(1)? & mask(bits);
    let zero = src == 0;
    match cx.ins.mnemonic() {
        Mnemonic::Bsf | Mnemonic::Bsr => {
            cx.set_flags(Flags::ZF, bit(zero, Flags::ZF));
            if !zero {
                let index = if cx.ins.mnemonic() == Mnemonic::Bsf {
                    src.trailing_zeros()
                } else {
                    63 - src.leading_zeros()
                };
                cx.write(0, u64::from(index))?;
            }
        }
        Mnemonic::Popcnt => {
            cx.set_flags(Flags::ARITH, bit(zero, Flags::ZF));
            cx.write(0, u64::from(src.count_ones()))?;
        }
        mnemonic => {
            let count = if mnemonic == Mnemonic::Tzcnt {
                if zero {
                    bits
                } else {
                    src.trailing_zeros()
                }
            } else {
                src.leading_zeros() - (64 - bits)
            };
            let flags = bit(zero, Flags::CF) | bit(count == 0, Flags::ZF);
            cx.set_flags(Flags::CF | Flags::ZF, flags);
            cx.write(0, u64::from(count))?;
        }
    }
    Ok(())
}

/// BSWAP of a `bits`-wide register (32 or 64; 16 is undefined and zeroes it here).
pub(super) fn byte_swap(v: u64, bits: u32) -> u64 {
    if bits == 64 {
        v.swap_bytes()
    } else {
        u64::from((v as u32).swap_bytes())
    }
}

/// CMOVcc: a 32-bit CMOV zero-extends the destination even when the condition is false.
pub fn cmovcc(cx: &mut Exec<'_>) -> Result<(), Exception> {
    let value = if cx.condition() {
        cx.read(1)?
    } else {
        cx.read(0)?
    };
    cx.write(0, value)
}

/// SETcc r/m8.
pub fn setcc(cx: &mut Exec<'_>) -> Result<(), Exception> {
    let value = u64::from(cx.condition());
    cx.write(0, value)
}
