//! RFLAGS bits, the arithmetic flags of integer results, and conditions on them.

use iced_x86::{ConditionCode, Mnemonic};

/// RFLAGS bits.
#[derive(Debug)]
pub struct Flags;

impl Flags {
    /// Carry.
    pub const CF: u64 = 1 << 0;
    /// Parity of the low byte (set when even).
    pub const PF: u64 = 1 << 2;
    /// Auxiliary carry out of bit 3.
    pub const AF: u64 = 1 << 4;
    /// Zero.
    pub const ZF: u64 = 1 << 6;
    /// Sign.
    pub const SF: u64 = 1 << 7;
    /// Trap.
    pub const TF: u64 = 1 << 8;
    /// Interrupts enabled.
    pub const IF: u64 = 1 << 9;
    /// Direction (string instructions count down).
    pub const DF: u64 = 1 << 10;
    /// Overflow.
    pub const OF: u64 = 1 << 11;
    /// The six arithmetic flags.
    pub const ARITH: u64 = Self::CF | Self::PF | Self::AF | Self::ZF | Self::SF | Self::OF;
}

/// All ones in the low `bits` bits.
#[inline(always)]
pub fn mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1 << bits) - 1
    }
}

/// The sign bit of a `bits`-wide value.
#[inline(always)]
pub fn sign(value: u64, bits: u32) -> bool {
    (value >> (bits - 1)) & 1 == 1
}

/// `value` (of `bits` bits) sign-extended to 64 bits.
#[inline(always)]
pub fn sign_extend(value: u64, bits: u32) -> u64 {
    if bits >= 64 {
        value
    } else {
        let shift = 64 - bits;
        (((value << shift) as i64) >> shift) as u64
    }
}

/// `flag` if `set`, else 0.
#[inline(always)]
pub(crate) fn bit(set: bool, flag: u64) -> u64 {
    if set {
        flag
    } else {
        0
    }
}

/// SF, ZF and PF of a result.
#[inline(always)]
pub fn szp(result: u64, bits: u32) -> u64 {
    let result = result & mask(bits);
    bit(sign(result, bits), Flags::SF) | bit(result == 0, Flags::ZF) | parity(result as u8)
}

/// PF for a result whose low byte is `low`: set when it has an even number of ones.
/// (A nibble lookup: the baseline x86-64 target has no POPCNT.)
#[inline(always)]
fn parity(low: u8) -> u64 {
    let nibble = (low ^ (low >> 4)) & 0xf;
    ((0x9669u64 >> nibble) & 1) << 2
}

/// `a + b + carry` and its flags.
#[inline(always)]
pub fn add(a: u64, b: u64, carry: bool, bits: u32) -> (u64, u64) {
    let m = mask(bits);
    let (a, b, c) = (a & m, b & m, u64::from(carry));
    let wide = u128::from(a) + u128::from(b) + u128::from(c);
    let result = (wide as u64) & m;
    let flags = szp(result, bits)
        | bit(wide > u128::from(m), Flags::CF)
        | bit(sign((a ^ result) & (b ^ result), bits), Flags::OF)
        | ((a ^ b ^ result) & Flags::AF);
    (result, flags)
}

/// `a - b - borrow` and its flags.
#[inline(always)]
pub fn sub(a: u64, b: u64, borrow: bool, bits: u32) -> (u64, u64) {
    let m = mask(bits);
    let (a, b, c) = (a & m, b & m, u64::from(borrow));
    let result = a.wrapping_sub(b).wrapping_sub(c) & m;
    let flags = szp(result, bits)
        | bit(u128::from(a) < u128::from(b) + u128::from(c), Flags::CF)
        | bit(sign((a ^ b) & (a ^ result), bits), Flags::OF)
        | ((a ^ b ^ result) & Flags::AF);
    (result, flags)
}

/// Flags of a logical result (AND, OR, XOR, TEST): CF and OF clear.
#[inline(always)]
pub fn logic(result: u64, bits: u32) -> u64 {
    szp(result, bits)
}

/// The two-operand ALU group's `a op b` (`op`: ADD, OR, ADC, SBB, AND, SUB, XOR, CMP or
/// TEST) with `carry` in, and the arithmetic flags. CMP and TEST return what SUB and AND
/// would; their callers do not store it.
#[inline(always)]
pub fn alu(op: Mnemonic, a: u64, b: u64, carry: bool, bits: u32) -> (u64, u64) {
    match op {
        Mnemonic::Add => add(a, b, false, bits),
        Mnemonic::Adc => add(a, b, carry, bits),
        Mnemonic::Sub | Mnemonic::Cmp => sub(a, b, false, bits),
        Mnemonic::Sbb => sub(a, b, carry, bits),
        Mnemonic::And | Mnemonic::Test => (a & b, logic(a & b, bits)),
        Mnemonic::Or => (a | b, logic(a | b, bits)),
        _ => (a ^ b, logic(a ^ b, bits)),
    }
}

/// Whether condition `cc` holds for `rflags`.
#[inline(always)]
pub fn condition(cc: ConditionCode, rflags: u64) -> bool {
    let flag = |f: u64| rflags & f != 0;
    let (cf, zf, sf, of) = (
        flag(Flags::CF),
        flag(Flags::ZF),
        flag(Flags::SF),
        flag(Flags::OF),
    );
    match cc {
        ConditionCode::None => true,
        ConditionCode::o => of,
        ConditionCode::no => !of,
        ConditionCode::b => cf,
        ConditionCode::ae => !cf,
        ConditionCode::e => zf,
        ConditionCode::ne => !zf,
        ConditionCode::be => cf || zf,
        ConditionCode::a => !cf && !zf,
        ConditionCode::s => sf,
        ConditionCode::ns => !sf,
        ConditionCode::p => flag(Flags::PF),
        ConditionCode::np => !flag(Flags::PF),
        ConditionCode::l => sf != of,
        ConditionCode::ge => sf == of,
        ConditionCode::le => zf || sf != of,
        ConditionCode::g => !zf && sf == of,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_add_signed_overflow_and_carry() {
        assert_eq!(
            add(0x7f, 1, false, 8),
            (0x80, Flags::OF | Flags::SF | Flags::AF)
        );
        assert_eq!(
            add(0xff, 1, false, 8),
            (0, Flags::CF | Flags::ZF | Flags::PF | Flags::AF)
        );
        assert_eq!(add(u64::MAX, 0, true, 64).1 & Flags::CF, Flags::CF);
    }

    #[test]
    fn test_sub_borrow_and_overflow() {
        assert_eq!(sub(0, 1, false, 32).0, 0xffff_ffff);
        assert_eq!(
            sub(0, 1, false, 32).1 & (Flags::CF | Flags::SF),
            Flags::CF | Flags::SF
        );
        assert_eq!(sub(0x80, 1, false, 8).1 & Flags::OF, Flags::OF);
        assert_eq!(sub(5, 5, false, 16).1 & Flags::ZF, Flags::ZF);
    }

    #[test]
    fn test_parity_matches_a_bit_count() {
        for low in 0..=255u8 {
            let even = low.count_ones() % 2 == 0;
            assert_eq!(parity(low) == Flags::PF, even, "{low:#x}");
        }
    }

    #[test]
    fn test_sign_extend() {
        assert_eq!(sign_extend(0x80, 8), 0xffff_ffff_ffff_ff80);
        assert_eq!(sign_extend(0x7fff, 16), 0x7fff);
    }
}
