//! RFLAGS bits and the arithmetic flags of integer results.

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
pub fn mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1 << bits) - 1
    }
}

/// The sign bit of a `bits`-wide value.
pub fn sign(value: u64, bits: u32) -> bool {
    (value >> (bits - 1)) & 1 == 1
}

/// `value` (of `bits` bits) sign-extended to 64 bits.
pub fn sign_extend(value: u64, bits: u32) -> u64 {
    if bits >= 64 {
        value
    } else {
        let shift = 64 - bits;
        (((value << shift) as i64) >> shift) as u64
    }
}

/// `flag` if `set`, else 0.
pub(crate) fn bit(set: bool, flag: u64) -> u64 {
    if set {
        flag
    } else {
        0
    }
}

/// SF, ZF and PF of a result.
pub fn szp(result: u64, bits: u32) -> u64 {
    let result = result & mask(bits);
    bit(sign(result, bits), Flags::SF)
        | bit(result == 0, Flags::ZF)
        | bit((result as u8).count_ones().is_multiple_of(2), Flags::PF)
}

/// `a + b + carry` and its flags.
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
pub fn logic(result: u64, bits: u32) -> u64 {
    szp(result, bits)
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
    fn test_sign_extend() {
        assert_eq!(sign_extend(0x80, 8), 0xffff_ffff_ffff_ff80);
        assert_eq!(sign_extend(0x7fff, 16), 0x7fff);
    }
}
