//! MUL, IMUL (one, two and three operands), DIV, IDIV.

use iced_x86::{Mnemonic, Register};

use super::Exec;
use crate::cpu::Exception;
use crate::flags::{mask, sign_extend, szp, Flags};

/// The accumulator halves for a one-operand MUL/DIV of `bits`: (low, high).
fn accumulator(bits: u32) -> (Register, Register) {
    let high = match bits {
        8 => Register::AH,
        16 => Register::DX,
        32 => Register::EDX,
        _ => Register::RDX,
    };
    (super::operand::accumulator(bits), high)
}

/// MUL, IMUL, DIV, IDIV.
pub fn execute(cx: &mut Exec<'_>) -> Result<(), Exception> {
    match (cx.ins.mnemonic(), cx.ins.op_count()) {
        (Mnemonic::Imul, 2 | 3) => imul_truncating(cx),
        (Mnemonic::Mul | Mnemonic::Imul, _) => widening_multiply(cx),
        _ => divide(cx),
    }
}

/// IMUL r, r/m[, imm]: the low half, CF = OF = "the result did not fit".
fn imul_truncating(cx: &mut Exec<'_>) -> Result<(), Exception> {
    let bits = cx.bits(0);
    let (a, b) = if cx.ins.op_count() == 3 {
        (cx.read(1)?, cx.read(2)?)
    } else {
        (cx.read(0)?, cx.read(1)?)
    };
    let (result, flags) = imul(a, b, bits);
    cx.set_flags(Flags::ARITH, flags);
    cx.write(0, result)
}

/// The truncated signed product of `bits`-wide `a` and `b`, and its flags: CF = OF =
/// "the result did not fit".
pub fn imul(a: u64, b: u64, bits: u32) -> (u64, u64) {
    let full = i128::from(sign_extend(a, bits) as i64)
        * i128::from(sign_extend(b & mask(bits), bits) as i64);
    let result = (full as u64) & mask(bits);
    let overflow = i128::from(sign_extend(result, bits) as i64) != full;
    let flags = if overflow { Flags::CF | Flags::OF } else { 0 };
    // SF, ZF, PF are undefined; real CPUs set them from the result.
    (result, flags | szp(result, bits))
}

/// MUL / IMUL r/m: the double-width product in (E/R)DX:(E/R)AX (AH:AL for bytes).
fn widening_multiply(cx: &mut Exec<'_>) -> Result<(), Exception> {
    let bits = cx.bits(0);
    let (lo_reg, hi_reg) = accumulator(bits);
    let (a, b) = (cx.reg(lo_reg), cx.read(0)?);
    // Both products are exact in 128 bits.
    let (product, overflow) = if cx.ins.mnemonic() == Mnemonic::Mul {
        let p = u128::from(a) * u128::from(b);
        (p, p >> bits != 0)
    } else {
        let p = i128::from(sign_extend(a, bits) as i64) * i128::from(sign_extend(b, bits) as i64);
        let truncated = i128::from(sign_extend(p as u64 & mask(bits), bits) as i64);
        (p as u128, truncated != p)
    };
    let lo = (product as u64) & mask(bits);
    let hi = ((product >> bits) as u64) & mask(bits);
    if bits == 8 {
        cx.set_reg(Register::AX, (hi << 8) | lo);
    } else {
        cx.set_reg(lo_reg, lo);
        cx.set_reg(hi_reg, hi);
    }
    let flags = if overflow { Flags::CF | Flags::OF } else { 0 };
    // SF, ZF, AF, PF are undefined; these are what the result gives.
    cx.set_flags(Flags::ARITH, flags | szp(lo, bits));
    Ok(())
}

fn sign_extend_128(value: i128, bits: u32) -> i128 {
    let shift = 128 - bits;
    (value << shift) >> shift
}

/// DIV / IDIV r/m: (E/R)DX:(E/R)AX divided; #DE on zero or a quotient that does not fit.
fn divide(cx: &mut Exec<'_>) -> Result<(), Exception> {
    let bits = cx.bits(0);
    let (lo_reg, hi_reg) = accumulator(bits);
    let divisor = cx.read(0)?;
    if divisor == 0 {
        return Err(Exception::DivideError);
    }
    let dividend: u128 = if bits == 8 {
        u128::from(cx.reg(Register::AX))
    } else {
        (u128::from(cx.reg(hi_reg)) << bits) | u128::from(cx.reg(lo_reg))
    };
    let (quotient, remainder) = if cx.ins.mnemonic() == Mnemonic::Div {
        let q = dividend / u128::from(divisor);
        if q > u128::from(mask(bits)) {
            return Err(Exception::DivideError);
        }
        (q as u64, (dividend % u128::from(divisor)) as u64)
    } else {
        let n = sign_extend_128(dividend as i128, 2 * bits);
        let d = i128::from(sign_extend(divisor, bits) as i64);
        let q = n.checked_div(d).ok_or(Exception::DivideError)?;
        let limit = 1i128 << (bits - 1);
        if q >= limit || q < -limit {
            return Err(Exception::DivideError);
        }
        ((q as u64) & mask(bits), ((n % d) as u64) & mask(bits))
    };
    if bits == 8 {
        cx.set_reg(Register::AX, (remainder << 8) | quotient);
    } else {
        cx.set_reg(lo_reg, quotient);
        cx.set_reg(hi_reg, remainder);
    }
    // All arithmetic flags are undefined after DIV/IDIV: left unchanged.
    Ok(())
}
