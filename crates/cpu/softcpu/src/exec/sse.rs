//! SSE/SSE2 integer and data-movement instructions on XMM registers.
//!
//! Each instruction reads all its operands before it writes its destination, so a fault
//! (a memory operand) leaves the registers as they were.

use iced_x86::{Code, Mnemonic, OpKind, Register};

use super::Exec;
use crate::cpu::Exception;

/// The value of lane `i` (of `bits` bits) in `v`.
pub(super) fn lane(v: u128, bits: u32, i: u32) -> u64 {
    ((v >> (i * bits)) & ((1u128 << bits) - 1)) as u64
}

/// Builds a vector from `f(lane index)` for lanes of `bits` bits.
fn build(bits: u32, f: impl Fn(u32) -> u64) -> u128 {
    (0..128 / bits).fold(0, |v, i| {
        let m = if bits == 64 {
            u64::MAX
        } else {
            (1u64 << bits) - 1
        };
        v | (u128::from(f(i) & m) << (i * bits))
    })
}

/// Lane-wise `f(a, b)` for lanes of `bits` bits.
fn map2(a: u128, b: u128, bits: u32, f: impl Fn(u64, u64) -> u64) -> u128 {
    build(bits, |i| f(lane(a, bits, i), lane(b, bits, i)))
}

/// `v` as a signed lane of `bits` bits.
fn signed(v: u64, bits: u32) -> i64 {
    crate::flags::sign_extend(v, bits) as i64
}

fn saturate_signed(v: i64, bits: u32) -> u64 {
    let (lo, hi) = (-(1i64 << (bits - 1)), (1i64 << (bits - 1)) - 1);
    v.clamp(lo, hi) as u64
}

fn saturate_unsigned(v: i64, bits: u32) -> u64 {
    v.clamp(0, (1i64 << bits) - 1) as u64
}

fn all_ones(cond: bool) -> u64 {
    if cond {
        u64::MAX
    } else {
        0
    }
}

impl Exec<'_> {
    /// XMM0..XMM15 (legacy encodings name no others; checked all the same).
    fn xmm_index(&self, reg: Register) -> Result<usize, Exception> {
        Some(reg.number())
            .filter(|n| *n < self.st.xmm.len())
            .ok_or(Exception::InvalidOpcode)
    }

    /// Operand `i` as a 128-bit value: an XMM register, or memory of the operand's size
    /// (zero-extended). `aligned` demands a 16-byte-aligned address (#GP otherwise).
    pub(super) fn xmm_value(&mut self, i: u32, aligned: bool) -> Result<u128, Exception> {
        match self.ins.op_kind(i) {
            OpKind::Register if self.ins.op_register(i).is_xmm() => {
                Ok(self.st.xmm[self.xmm_index(self.ins.op_register(i))?])
            }
            OpKind::Register => Ok(u128::from(self.read(i)?)),
            OpKind::Memory => {
                let addr = self.ea();
                if aligned && !addr.is_multiple_of(16) {
                    return Err(Exception::GeneralProtection(0));
                }
                let size = self.ins.memory_size().size();
                let mut buf = [0u8; 16];
                self.mem
                    .read(addr, &mut buf[..size.min(16)], crate::Access::Read)?;
                Ok(u128::from_le_bytes(buf))
            }
            _ => Ok(u128::from(self.ins.immediate(i))),
        }
    }

    /// Writes operand `i`: an XMM register (all 128 bits), a general register, or memory
    /// of the operand's size.
    pub(super) fn xmm_store(
        &mut self,
        i: u32,
        value: u128,
        aligned: bool,
    ) -> Result<(), Exception> {
        match self.ins.op_kind(i) {
            OpKind::Register if self.ins.op_register(i).is_xmm() => {
                let index = self.xmm_index(self.ins.op_register(i))?;
                self.st.xmm[index] = value;
                Ok(())
            }
            OpKind::Register => self.write(i, value as u64),
            _ => {
                let addr = self.ea();
                if aligned && !addr.is_multiple_of(16) {
                    return Err(Exception::GeneralProtection(0));
                }
                let size = self.ins.memory_size().size().min(16);
                self.mem.write(addr, &value.to_le_bytes()[..size])?;
                Ok(())
            }
        }
    }
}

/// Runs an SSE/SSE2 instruction, or raises #UD for anything not implemented.
pub fn execute(cx: &mut Exec<'_>) -> Result<(), Exception> {
    use Mnemonic::*;
    let m = cx.ins.mnemonic();
    if super::mmx::is_mmx(cx) {
        return super::mmx::execute(cx);
    }
    match m {
        Movdqa | Movaps | Movapd | Movntdq | Movntps | Movntpd => {
            let v = cx.xmm_value(1, true)?;
            cx.xmm_store(0, v, true)
        }
        Movdqu | Movups | Movupd | Lddqu => {
            let v = cx.xmm_value(1, false)?;
            cx.xmm_store(0, v, false)
        }
        // To an XMM register: zero-extended; to a register or memory: the low part.
        Movd | Movq => {
            let v = cx.xmm_value(1, false)?;
            let bits = if m == Movd { 32 } else { 64 };
            cx.xmm_store(0, v & ((1u128 << bits) - 1), false)
        }
        Pmovmskb | Movmskps | Movmskpd => {
            let v = cx.xmm_value(1, false)?;
            let bits = match m {
                Pmovmskb => 8,
                Movmskps => 32,
                _ => 64,
            };
            let mask =
                (0..128 / bits).fold(0u64, |acc, i| acc | ((lane(v, bits, i) >> (bits - 1)) << i));
            cx.write(0, mask)
        }
        Pextrw if cx.ins.code() != Code::Pextrw_r32m16_xmm_imm8 => {
            let v = cx.xmm_value(1, false)?;
            let imm = (cx.ins.immediate(2) & 7) as u32;
            cx.write(0, lane(v, 16, imm))
        }
        Pinsrw => {
            let (a, w) = (cx.xmm_value(0, false)?, cx.xmm_value(1, false)? & 0xffff);
            let at = 16 * (cx.ins.immediate(2) & 7);
            cx.xmm_store(0, (a & !(0xffff << at)) | (w << at), false)
        }
        Maskmovdqu => mask_move(cx),
        _ => match super::sse_float::execute(cx, m) {
            Some(result) => result,
            None => binary(cx, m),
        },
    }
}

/// MASKMOVDQU: stores the bytes of the first register whose mask byte (in the second)
/// has its top bit set, at DS:rDI.
fn mask_move(cx: &mut Exec<'_>) -> Result<(), Exception> {
    let (data, mask) = (cx.xmm_value(1, false)?, cx.xmm_value(2, false)?);
    cx.masked_store(data, mask, 16)
}

impl Exec<'_> {
    /// The store of MASKMOVQ/MASKMOVDQU: byte `i` of `data` (of `len`) goes to DS:rDI + i
    /// if the top bit of mask byte `i` is set.
    pub(super) fn masked_store(
        &mut self,
        data: u128,
        mask: u128,
        len: u64,
    ) -> Result<(), Exception> {
        let di = match self.ins.op_kind(0) {
            OpKind::MemorySegEDI => self.reg(Register::EDI),
            _ => self.reg(Register::RDI),
        };
        // DS, or an override: FS and GS have bases in 64-bit mode.
        let base = match self.ins.memory_segment() {
            Register::FS => self.st.seg[4].base,
            Register::GS => self.st.seg[5].base,
            _ => 0,
        };
        for i in 0..len {
            if (mask >> (8 * i + 7)) & 1 != 0 {
                let byte = [(data >> (8 * i)) as u8];
                self.mem
                    .write(base.wrapping_add(di).wrapping_add(i), &byte)?;
            }
        }
        Ok(())
    }
}

/// Two-operand (and immediate) vector operations: `dst = f(dst, src)`.
fn binary(cx: &mut Exec<'_>, m: Mnemonic) -> Result<(), Exception> {
    let a = cx.xmm_value(0, false)?;
    // Legacy SSE 128-bit memory operands must be 16-byte aligned.
    let aligned = cx.ins.op_kind(1) == OpKind::Memory && cx.ins.memory_size().size() == 16;
    let b = cx.xmm_value(1, aligned)?;
    let imm = if cx.ins.op_count() > 2 {
        cx.ins.immediate(2) as u32
    } else {
        0
    };
    let r = arithmetic(m, a, b)
        .or_else(|| rearrange(m, a, b, imm))
        .ok_or(Exception::InvalidOpcode)?;
    cx.xmm_store(0, r, false)
}

/// Lane-wise logic, arithmetic and compares.
pub(super) fn arithmetic(m: Mnemonic, a: u128, b: u128) -> Option<u128> {
    use Mnemonic::*;
    Some(match m {
        Pxor | Xorps | Xorpd => a ^ b,
        Por | Orps | Orpd => a | b,
        Pand | Andps | Andpd => a & b,
        Pandn | Andnps | Andnpd => !a & b,
        Paddb | Paddw | Paddd | Paddq | Psubb | Psubw | Psubd | Psubq => add_sub(m, a, b),
        Paddusb | Paddusw | Psubusb | Psubusw | Paddsb | Paddsw | Psubsb | Psubsw => {
            saturating(m, a, b)
        }
        Pcmpeqb => map2(a, b, 8, |x, y| all_ones(x == y)),
        Pcmpeqw => map2(a, b, 16, |x, y| all_ones(x == y)),
        Pcmpeqd => map2(a, b, 32, |x, y| all_ones(x == y)),
        Pcmpgtb => map2(a, b, 8, |x, y| all_ones(signed(x, 8) > signed(y, 8))),
        Pcmpgtw => map2(a, b, 16, |x, y| all_ones(signed(x, 16) > signed(y, 16))),
        Pcmpgtd => map2(a, b, 32, |x, y| all_ones(signed(x, 32) > signed(y, 32))),
        Pminub => map2(a, b, 8, u64::min),
        Pmaxub => map2(a, b, 8, u64::max),
        Pminsw => map2(
            a,
            b,
            16,
            |x, y| if signed(x, 16) < signed(y, 16) { x } else { y },
        ),
        Pmaxsw => map2(
            a,
            b,
            16,
            |x, y| if signed(x, 16) > signed(y, 16) { x } else { y },
        ),
        Pavgb => map2(a, b, 8, |x, y| (x + y + 1) >> 1),
        Pavgw => map2(a, b, 16, |x, y| (x + y + 1) >> 1),
        Pmullw => map2(a, b, 16, |x, y| (signed(x, 16) * signed(y, 16)) as u64),
        Pmulhw => map2(a, b, 16, |x, y| {
            ((signed(x, 16) * signed(y, 16)) >> 16) as u64
        }),
        Pmulhuw => map2(a, b, 16, |x, y| (x * y) >> 16),
        Pmaddwd => build(32, |i| {
            let product = |j| signed(lane(a, 16, j), 16) * signed(lane(b, 16, j), 16);
            (product(2 * i) + product(2 * i + 1)) as u64
        }),
        Pmuludq => build(64, |i| {
            (lane(a, 64, i) & 0xffff_ffff) * (lane(b, 64, i) & 0xffff_ffff)
        }),
        Psadbw => build(64, |i| {
            (0..8)
                .map(|j| lane(a, 8, i * 8 + j).abs_diff(lane(b, 8, i * 8 + j)))
                .sum()
        }),
        _ => return None,
    })
}

/// Unpacks, packs, shuffles and shifts (`imm` is the instruction's immediate, if any).
pub(super) fn rearrange(m: Mnemonic, a: u128, b: u128, imm: u32) -> Option<u128> {
    use Mnemonic::*;
    Some(match m {
        Punpcklbw | Punpcklwd | Punpckldq | Punpcklqdq | Punpckhbw | Punpckhwd | Punpckhdq
        | Punpckhqdq | Unpcklps | Unpckhps | Unpcklpd | Unpckhpd => unpack(m, a, b),
        Packsswb => pack(a, b, 16, |v| saturate_signed(signed(v, 16), 8)),
        Packssdw => pack(a, b, 32, |v| saturate_signed(signed(v, 32), 16)),
        Packuswb => pack(a, b, 16, |v| saturate_unsigned(signed(v, 16), 8)),
        Pshufd => build(32, |i| lane(b, 32, (imm >> (2 * i)) & 3)),
        Pshuflw => build(16, |i| {
            if i < 4 {
                lane(b, 16, (imm >> (2 * i)) & 3)
            } else {
                lane(b, 16, i)
            }
        }),
        Pshufhw => build(16, |i| {
            if i >= 4 {
                lane(b, 16, 4 + ((imm >> (2 * (i - 4))) & 3))
            } else {
                lane(b, 16, i)
            }
        }),
        Shufps => build(32, |i| {
            let src = if i < 2 { a } else { b };
            lane(src, 32, (imm >> (2 * i)) & 3)
        }),
        Shufpd => build(64, |i| lane(if i == 0 { a } else { b }, 64, (imm >> i) & 1)),
        // PSLLDQ/PSRLDQ xmm, imm8: the immediate is operand 1.
        Pslldq => {
            if b > 15 {
                0
            } else {
                a << (8 * b)
            }
        }
        Psrldq => {
            if b > 15 {
                0
            } else {
                a >> (8 * b)
            }
        }
        Psllw | Pslld | Psllq | Psrlw | Psrld | Psrlq | Psraw | Psrad => shift(m, a, b),
        _ => return None,
    })
}

fn add_sub(m: Mnemonic, a: u128, b: u128) -> u128 {
    use Mnemonic::*;
    let bits = match m {
        Paddb | Psubb => 8,
        Paddw | Psubw => 16,
        Paddd | Psubd => 32,
        _ => 64,
    };
    let sub = matches!(m, Psubb | Psubw | Psubd | Psubq);
    map2(a, b, bits, |x, y| {
        if sub {
            x.wrapping_sub(y)
        } else {
            x.wrapping_add(y)
        }
    })
}

fn saturating(m: Mnemonic, a: u128, b: u128) -> u128 {
    use Mnemonic::*;
    let bits = if matches!(m, Paddusb | Psubusb | Paddsb | Psubsb) {
        8
    } else {
        16
    };
    let sub = matches!(m, Psubusb | Psubusw | Psubsb | Psubsw);
    let is_signed = matches!(m, Paddsb | Paddsw | Psubsb | Psubsw);
    map2(a, b, bits, |x, y| {
        let (x, y) = if is_signed {
            (signed(x, bits), signed(y, bits))
        } else {
            (x as i64, y as i64)
        };
        let r = if sub { x - y } else { x + y };
        if is_signed {
            saturate_signed(r, bits)
        } else {
            saturate_unsigned(r, bits)
        }
    })
}

/// Interleaves the low (or high) halves of `a` and `b`, lane by lane.
fn unpack(m: Mnemonic, a: u128, b: u128) -> u128 {
    use Mnemonic::*;
    let bits = match m {
        Punpcklbw | Punpckhbw => 8,
        Punpcklwd | Punpckhwd => 16,
        Punpckldq | Punpckhdq | Unpcklps | Unpckhps => 32,
        _ => 64,
    };
    let high = matches!(
        m,
        Punpckhbw | Punpckhwd | Punpckhdq | Punpckhqdq | Unpckhps | Unpckhpd
    );
    let base = if high { 64 / bits } else { 0 };
    build(bits, |i| {
        lane(if i % 2 == 0 { a } else { b }, bits, base + i / 2)
    })
}

/// Narrows the `from`-bit lanes of `a` then `b` with `f` into lanes of half the width.
fn pack(a: u128, b: u128, from: u32, f: impl Fn(u64) -> u64) -> u128 {
    let n = 128 / from;
    build(from / 2, |i| {
        f(if i < n {
            lane(a, from, i)
        } else {
            lane(b, from, i - n)
        })
    })
}

/// Shifts each lane by the count in `count`'s low 64 bits (or an immediate).
fn shift(m: Mnemonic, a: u128, count: u128) -> u128 {
    use Mnemonic::*;
    let bits = match m {
        Psllw | Psrlw | Psraw => 16,
        Pslld | Psrld | Psrad => 32,
        _ => 64,
    };
    let n = u64::try_from(count & u128::from(u64::MAX)).unwrap_or(u64::MAX);
    match m {
        Psraw | Psrad => build(bits, |i| {
            let v = signed(lane(a, bits, i), bits);
            (v >> n.min(u64::from(bits) - 1)) as u64
        }),
        Psllw | Pslld | Psllq => build(bits, |i| {
            if n >= u64::from(bits) {
                0
            } else {
                lane(a, bits, i) << n
            }
        }),
        _ => build(bits, |i| {
            if n >= u64::from(bits) {
                0
            } else {
                lane(a, bits, i) >> n
            }
        }),
    }
}
