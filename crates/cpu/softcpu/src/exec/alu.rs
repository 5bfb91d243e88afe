//! ADD, OR, ADC, SBB, AND, SUB, XOR, CMP, TEST, INC, DEC, NEG, NOT.

use iced_x86::Mnemonic;

use super::Exec;
use crate::cpu::Exception;
use crate::flags::{self, mask, Flags};

/// The two-operand ALU group: `dst op= src` (CMP only sets flags).
pub fn binary(cx: &mut Exec<'_>) -> Result<(), Exception> {
    let bits = cx.bits(0);
    let a = cx.read(0)?;
    let b = cx.read(1)? & mask(bits);
    let carry = cx.flag(Flags::CF);
    let (result, flags) = flags::alu(cx.ins.mnemonic(), a, b, carry, bits);
    cx.set_flags(Flags::ARITH, flags);
    if cx.ins.mnemonic() != Mnemonic::Cmp {
        cx.write(0, result)?;
    }
    Ok(())
}

/// TEST: AND for the flags only.
pub fn test(cx: &mut Exec<'_>) -> Result<(), Exception> {
    let bits = cx.bits(0);
    let result = cx.read(0)? & cx.read(1)?;
    cx.set_flags(Flags::ARITH, flags::logic(result, bits));
    Ok(())
}

/// INC and DEC (CF kept), NEG, NOT (no flags).
pub fn unary(cx: &mut Exec<'_>) -> Result<(), Exception> {
    let bits = cx.bits(0);
    let a = cx.read(0)?;
    let (result, which, flags) = match cx.ins.mnemonic() {
        Mnemonic::Inc => {
            let (r, f) = flags::add(a, 1, false, bits);
            (r, Flags::ARITH & !Flags::CF, f)
        }
        Mnemonic::Dec => {
            let (r, f) = flags::sub(a, 1, false, bits);
            (r, Flags::ARITH & !Flags::CF, f)
        }
        Mnemonic::Neg => {
            let (r, f) = flags::sub(0, a, false, bits);
            (r, Flags::ARITH, f)
        }
        _ => (!a & mask(bits), 0, 0),
    };
    cx.set_flags(which, flags);
    cx.write(0, result)
}
