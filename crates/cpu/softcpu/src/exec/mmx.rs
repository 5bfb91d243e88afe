//! MMX: the SSE integer operations on the eight 64-bit registers the x87 unit holds.
//!
//! The arithmetic is the SSE code's ([`super::sse`]) on zero-extended values; only the
//! instructions whose lanes depend on the register width (high unpacks, packs, PSHUFW)
//! are arranged differently. Every instruction that touches an MMX register puts the
//! x87 unit in MMX state (TOP = 0, all registers valid) once it can no longer fault.

use iced_x86::{Code, Mnemonic, OpKind};

use super::sse::{arithmetic, lane, rearrange};
use super::Exec;
use crate::cpu::Exception;

/// Whether `cx.ins` is an MMX instruction (an MMX register operand, or CVTPI2PS/PD).
pub fn is_mmx(cx: &Exec<'_>) -> bool {
    (0..cx.ins.op_count())
        .any(|i| cx.ins.op_kind(i) == OpKind::Register && cx.ins.op_register(i).is_mm())
        || matches!(
            cx.ins.code(),
            Code::Cvtpi2ps_xmm_mmm64 | Code::Cvtpi2pd_xmm_mmm64
        )
}

impl Exec<'_> {
    /// Operand `i` as a 64-bit value: an MMX, XMM (low half) or general register, memory
    /// of the operand's size (zero-extended), or an immediate.
    fn mm_value(&mut self, i: u32) -> Result<u64, Exception> {
        match self.ins.op_kind(i) {
            OpKind::Register if self.ins.op_register(i).is_mm() => {
                Ok(self.st.x87.mm(self.ins.op_register(i).number()))
            }
            OpKind::Register | OpKind::Memory => Ok(self.xmm_value(i, false)? as u64),
            _ => Ok(self.ins.immediate(i)),
        }
    }

    /// Writes operand `i`: an MMX register, a general register or memory.
    fn mm_store(&mut self, i: u32, value: u64) -> Result<(), Exception> {
        let reg = self.ins.op_register(i);
        if self.ins.op_kind(i) == OpKind::Register && reg.is_mm() {
            self.st.x87.set_mm(reg.number(), value);
            Ok(())
        } else {
            self.xmm_store(i, u128::from(value), false)
        }
    }
}

/// Runs an MMX instruction.
pub fn execute(cx: &mut Exec<'_>) -> Result<(), Exception> {
    if cx.st.x87.pending() {
        return Err(Exception::FloatingPoint);
    }
    let touches_mm = (0..cx.ins.op_count())
        .any(|i| cx.ins.op_kind(i) == OpKind::Register && cx.ins.op_register(i).is_mm());
    run(cx)?;
    if touches_mm {
        cx.st.x87.enter_mmx();
    }
    Ok(())
}

fn run(cx: &mut Exec<'_>) -> Result<(), Exception> {
    use Mnemonic::*;
    let m = cx.ins.mnemonic();
    match m {
        Movd | Movq | Movntq | Movdq2q => {
            let v = cx.mm_value(1)?;
            cx.mm_store(0, if m == Movd { v & 0xffff_ffff } else { v })
        }
        Movq2dq => {
            let v = cx.mm_value(1)?;
            cx.xmm_store(0, u128::from(v), false)
        }
        Pmovmskb => {
            let v = cx.mm_value(1)?;
            let mask = (0..8).fold(0, |acc, i| acc | ((v >> (8 * i + 7)) & 1) << i);
            cx.write(0, mask)
        }
        Pextrw => {
            let v = cx.mm_value(1)?;
            let imm = cx.ins.immediate(2) & 3;
            cx.write(0, (v >> (16 * imm)) & 0xffff)
        }
        Pinsrw => {
            let (a, w) = (cx.mm_value(0)?, cx.mm_value(1)? & 0xffff);
            let at = 16 * (cx.ins.immediate(2) & 3);
            cx.mm_store(0, (a & !(0xffff << at)) | (w << at))
        }
        Maskmovq => mask_move(cx),
        Cvtpi2ps | Cvtpi2pd | Cvtps2pi | Cvttps2pi | Cvtpd2pi | Cvttpd2pi => convert(cx, m),
        _ => binary(cx, m),
    }
}

/// `dst = op(dst, src)` on 64-bit values.
fn binary(cx: &mut Exec<'_>, m: Mnemonic) -> Result<(), Exception> {
    use Mnemonic::*;
    let (a, b) = (cx.mm_value(0)?, cx.mm_value(1)?);
    let (a, b) = (u128::from(a), u128::from(b));
    let imm = if cx.ins.op_count() > 2 {
        cx.ins.immediate(2) as u32
    } else {
        0
    };
    let r = match m {
        // Interleave the high halves: the low unpack of the halves shifted down.
        Punpckhbw => rearrange(Punpcklbw, a >> 32, b >> 32, 0),
        Punpckhwd => rearrange(Punpcklwd, a >> 32, b >> 32, 0),
        Punpckhdq => rearrange(Punpckldq, a >> 32, b >> 32, 0),
        // Pack `a` then `b`: the SSE pack of one register holding both.
        Packsswb | Packssdw | Packuswb => rearrange(m, a | (b << 64), 0, 0),
        Pshufw => Some((0..4).fold(0, |v, i| {
            v | (u128::from(lane(b, 16, (imm >> (2 * i)) & 3)) << (16 * i))
        })),
        Pslldq | Psrldq | Punpcklqdq | Punpckhqdq | Pshufd | Pshuflw | Pshufhw => None,
        _ => arithmetic(m, a, b).or_else(|| rearrange(m, a, b, imm)),
    }
    .ok_or(Exception::InvalidOpcode)?;
    cx.mm_store(0, r as u64)
}

/// MASKMOVQ: stores the bytes of the first register whose mask byte (in the second) has
/// its top bit set, at DS:rDI.
fn mask_move(cx: &mut Exec<'_>) -> Result<(), Exception> {
    let (data, mask) = (cx.mm_value(1)?, cx.mm_value(2)?);
    cx.masked_store(u128::from(data), u128::from(mask), 8)
}

/// Conversions between two 32-bit integers (an MMX register or m64) and floats.
fn convert(cx: &mut Exec<'_>, m: Mnemonic) -> Result<(), Exception> {
    use Mnemonic::*;
    match m {
        Cvtpi2ps => {
            let b = u128::from(cx.mm_value(1)?);
            let r = super::sse_float::convert(cx, Cvtdq2ps, b)?;
            let a = cx.xmm_value(0, false)?;
            let low = u128::from(u64::MAX);
            cx.xmm_store(0, (a & !low) | (r & low), false)
        }
        Cvtpi2pd => {
            let b = u128::from(cx.mm_value(1)?);
            let r = super::sse_float::convert(cx, Cvtdq2pd, b)?;
            cx.xmm_store(0, r, false)
        }
        _ => {
            // From packed doubles the source is 128 bits (aligned in memory); from
            // packed singles only the low two lanes count.
            let doubles = matches!(m, Cvtpd2pi | Cvttpd2pi);
            let aligned = doubles && cx.ins.op_kind(1) == OpKind::Memory;
            let mut b = cx.xmm_value(1, aligned)?;
            if !doubles {
                b &= u128::from(u64::MAX);
            }
            let op = match m {
                Cvtps2pi => Cvtps2dq,
                Cvttps2pi => Cvttps2dq,
                Cvtpd2pi => Cvtpd2dq,
                _ => Cvttpd2dq,
            };
            let r = super::sse_float::convert(cx, op, b)?;
            cx.mm_store(0, r as u64)
        }
    }
}
