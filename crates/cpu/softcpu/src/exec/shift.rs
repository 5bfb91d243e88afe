//! SHL/SAL, SHR, SAR, ROL, ROR, RCL, RCR, SHLD, SHRD.

use iced_x86::Mnemonic;

use super::Exec;
use crate::cpu::Exception;
use crate::flags::{bit, mask, sign, sign_extend, szp, Flags};

/// The masked shift count: 5 bits, 6 for 64-bit operands.
fn count(cx: &mut Exec<'_>, bits: u32) -> Result<u32, Exception> {
    let raw = if cx.ins.op_count() > 1 {
        cx.read(1)?
    } else {
        1
    };
    Ok((raw & if bits == 64 { 0x3f } else { 0x1f }) as u32)
}

/// Shifts and rotates by 1, CL or an immediate. A zero count changes no flags, but the
/// operand is still written: a 32-bit register's upper half is cleared, as on hardware.
pub fn execute(cx: &mut Exec<'_>) -> Result<(), Exception> {
    let bits = cx.bits(0);
    let n = count(cx, bits)?;
    let a = cx.read(0)?;
    if n == 0 {
        return cx.write(0, a);
    }
    let (result, flags, which) = result(cx.ins.mnemonic(), a, n, bits, cx.flag(Flags::CF));
    // AF is undefined after shifts with a non-zero count; real CPUs clear it.
    cx.set_flags(which, flags);
    cx.write(0, result)
}

/// A shift or rotate `mnemonic` of the `bits`-wide `a` by the masked, non-zero count
/// `n`, with `cf` in: the result, its flags, and which flags it sets.
#[inline(always)]
pub fn result(mnemonic: Mnemonic, a: u64, n: u32, bits: u32, cf: bool) -> (u64, u64, u64) {
    let m = mask(bits);
    match mnemonic {
        Mnemonic::Shl | Mnemonic::Sal => {
            let r = if n >= bits { 0 } else { (a << n) & m };
            let cf = n <= bits && (a >> (bits - n)) & 1 == 1;
            let of = sign(r, bits) != cf;
            (
                r,
                szp(r, bits) | bit(cf, Flags::CF) | bit(of, Flags::OF),
                Flags::ARITH,
            )
        }
        Mnemonic::Shr => {
            let r = if n >= bits { 0 } else { a >> n };
            let cf = n <= bits && (a >> (n - 1)) & 1 == 1;
            (
                r,
                szp(r, bits) | bit(cf, Flags::CF) | bit(sign(a, bits), Flags::OF),
                Flags::ARITH,
            )
        }
        Mnemonic::Sar => {
            let s = sign_extend(a, bits) as i64;
            let r = (s >> n.min(63)) as u64 & m;
            let cf = (s >> (n - 1).min(63)) & 1 == 1;
            (r, szp(r, bits) | bit(cf, Flags::CF), Flags::ARITH)
        }
        Mnemonic::Rol | Mnemonic::Ror => rotate(mnemonic, a, n, bits),
        _ => rotate_through_carry(mnemonic, a, n, bits, cf),
    }
}

/// ROL / ROR: only CF and OF change.
fn rotate(mnemonic: Mnemonic, a: u64, n: u32, bits: u32) -> (u64, u64, u64) {
    let m = mask(bits);
    let k = n % bits;
    let r = if k == 0 {
        a
    } else if mnemonic == Mnemonic::Rol {
        ((a << k) | (a >> (bits - k))) & m
    } else {
        ((a >> k) | (a << (bits - k))) & m
    };
    let (cf, of) = if mnemonic == Mnemonic::Rol {
        let cf = r & 1 == 1;
        (cf, sign(r, bits) != cf)
    } else {
        (sign(r, bits), sign(r, bits) != ((r >> (bits - 2)) & 1 == 1))
    };
    (
        r,
        bit(cf, Flags::CF) | bit(of, Flags::OF),
        Flags::CF | Flags::OF,
    )
}

/// RCL / RCR: rotate the (bits + 1)-bit value CF:operand.
fn rotate_through_carry(
    mnemonic: Mnemonic,
    a: u64,
    n: u32,
    bits: u32,
    cf: bool,
) -> (u64, u64, u64) {
    let width = bits + 1;
    let k = n % width;
    let wide = (u128::from(a) & u128::from(mask(bits))) | (u128::from(cf) << bits);
    let wmask = (1u128 << width) - 1;
    let rotated = if k == 0 {
        wide
    } else if mnemonic == Mnemonic::Rcl {
        ((wide << k) | (wide >> (width - k))) & wmask
    } else {
        ((wide >> k) | (wide << (width - k))) & wmask
    };
    let r = (rotated as u64) & mask(bits);
    let new_cf = (rotated >> bits) & 1 == 1;
    let of = if mnemonic == Mnemonic::Rcl {
        sign(r, bits) != new_cf
    } else {
        sign(r, bits) != ((r >> (bits - 2)) & 1 == 1)
    };
    (
        r,
        bit(new_cf, Flags::CF) | bit(of, Flags::OF),
        Flags::CF | Flags::OF,
    )
}

/// SHLD / SHRD dst, src, count: shift dst, filling from src.
pub fn double(cx: &mut Exec<'_>) -> Result<(), Exception> {
    let bits = cx.bits(0);
    let raw = cx.read(2)?;
    let n = (raw & if bits == 64 { 0x3f } else { 0x1f }) as u32;
    let (a, b) = (cx.read(0)?, cx.read(1)?);
    if n == 0 {
        return cx.write(0, a);
    }
    let wide = u128::from(a) | (u128::from(b) << bits);
    let (r, cf) = if cx.ins.mnemonic() == Mnemonic::Shld {
        let joined = (u128::from(a) << bits) | u128::from(b);
        let shifted = joined << n;
        (
            ((shifted >> bits) as u64) & mask(bits),
            (joined >> (2 * bits - n)) & 1 == 1,
        )
    } else {
        (
            ((wide >> n) as u64) & mask(bits),
            (wide >> (n - 1)) & 1 == 1,
        )
    };
    let of = sign(r, bits) != sign(a, bits);
    cx.set_flags(
        Flags::ARITH,
        szp(r, bits) | bit(cf, Flags::CF) | bit(of, Flags::OF),
    );
    cx.write(0, r)
}
