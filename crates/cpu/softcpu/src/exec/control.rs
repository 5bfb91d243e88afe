//! The stack and control transfers: PUSH, POP, CALL, RET, JMP, Jcc, LOOP, LEAVE.

use iced_x86::{Code, Mnemonic, OpKind, Register};

use super::Exec;
use crate::cpu::Exception;
use crate::state::Gpr;

impl Exec<'_> {
    /// The stack pointer's width: RSP in 64-bit mode, ESP otherwise (a 32-bit stack
    /// segment is assumed; 16-bit stacks are not implemented).
    fn stack_pointer_mask(&self) -> u64 {
        if self.st.long_mode {
            u64::MAX
        } else if self.st.seg[2].big() {
            0xffff_ffff
        } else {
            0xffff // a 16-bit stack: real mode's
        }
    }

    /// The linear address of stack offset `sp` (SS's base is 0 in 64-bit mode).
    fn stack_address(&self, sp: u64) -> u64 {
        if self.st.long_mode {
            sp
        } else {
            sp.wrapping_add(self.st.seg[2].base) & 0xffff_ffff
        }
    }

    /// The bytes PUSH, POP and CALL move: the operand size, which iced knows.
    fn stack_slot_bits(&self) -> u32 {
        match self.ins.stack_pointer_increment().unsigned_abs() {
            0 => self.address_bits(),
            n => n * 8,
        }
    }

    /// Pushes the low `bits` bits of `value`.
    pub fn push(&mut self, value: u64, bits: u32) -> Result<(), Exception> {
        let mask = self.stack_pointer_mask();
        let sp = self.st.reg(Gpr::Rsp).wrapping_sub(u64::from(bits / 8)) & mask;
        self.store(self.stack_address(sp), bits, value)?;
        self.st.set_reg(Gpr::Rsp, sp);
        Ok(())
    }

    /// Pops `bits` bits.
    pub fn pop(&mut self, bits: u32) -> Result<u64, Exception> {
        let mask = self.stack_pointer_mask();
        let sp = self.st.reg(Gpr::Rsp) & mask;
        let value = self.load(self.stack_address(sp), bits)?;
        self.st
            .set_reg(Gpr::Rsp, sp.wrapping_add(u64::from(bits / 8)) & mask);
        Ok(value)
    }

    /// The width of a return address by default: the code size.
    fn address_bits(&self) -> u32 {
        self.st.code_bits()
    }

    /// A branch target: immediate targets are decoded absolute; others are read.
    fn target(&mut self) -> Result<u64, Exception> {
        match self.ins.op_kind(0) {
            OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64 => {
                Ok(self.ins.near_branch_target())
            }
            _ => self.read(0),
        }
    }
}

/// PUSH, POP, CALL, RET, JMP, LEAVE, JRCXZ, LOOP*.
pub fn execute(cx: &mut Exec<'_>) -> Result<(), Exception> {
    match cx.ins.mnemonic() {
        Mnemonic::Push => {
            let bits = cx.stack_slot_bits();
            let value = cx.read(0)?;
            cx.push(value, bits)?;
        }
        Mnemonic::Pop => {
            let bits = cx.stack_slot_bits();
            let value = cx.pop(bits)?;
            cx.write(0, value)?;
        }
        Mnemonic::Call => {
            let target = cx.target()?;
            // RIP past a 16- or 32-bit call fits its slot: the code is below 4 GiB.
            cx.push(cx.st.rip, cx.stack_slot_bits())?;
            cx.st.rip = target;
        }
        Mnemonic::Ret => {
            let bits = match cx.ins.code() {
                Code::Retnw | Code::Retnw_imm16 => 16,
                Code::Retnd | Code::Retnd_imm16 => 32,
                _ => 64,
            };
            let target = cx.pop(bits)?;
            let release = if cx.ins.op_count() == 1 {
                cx.ins.immediate(0)
            } else {
                0
            };
            let sp = cx.st.reg(Gpr::Rsp).wrapping_add(release) & cx.stack_pointer_mask();
            cx.st.set_reg(Gpr::Rsp, sp);
            cx.st.rip = target;
        }
        Mnemonic::Jmp => cx.st.rip = cx.target()?,
        Mnemonic::Leave => {
            let sp = cx.st.reg(Gpr::Rbp) & cx.stack_pointer_mask();
            cx.st.set_reg(Gpr::Rsp, sp);
            let bits = match cx.ins.code() {
                Code::Leavew => 16,
                Code::Leaved => 32,
                _ => 64,
            };
            let rbp = cx.pop(bits)?;
            cx.st.set_reg(Gpr::Rbp, rbp);
        }
        Mnemonic::Jrcxz | Mnemonic::Jecxz => {
            let bits = if cx.ins.mnemonic() == Mnemonic::Jrcxz {
                64
            } else {
                32
            };
            if cx.st.reg(Gpr::Rcx) & crate::flags::mask(bits) == 0 {
                cx.st.rip = cx.ins.near_branch_target();
            }
        }
        _ => loop_(cx),
    }
    Ok(())
}

/// The counter LOOP* uses: the address size picks CX, ECX or RCX.
fn loop_counter(code: Code) -> Register {
    use Code::*;
    match code {
        Loop_rel8_16_CX | Loop_rel8_32_CX | Loope_rel8_16_CX | Loope_rel8_32_CX
        | Loopne_rel8_16_CX | Loopne_rel8_32_CX => Register::CX,
        Loop_rel8_16_RCX | Loop_rel8_64_RCX | Loope_rel8_16_RCX | Loope_rel8_64_RCX
        | Loopne_rel8_16_RCX | Loopne_rel8_64_RCX => Register::RCX,
        _ => Register::ECX,
    }
}

/// LOOP, LOOPE, LOOPNE: decrement the counter, branch while it is non-zero.
fn loop_(cx: &mut Exec<'_>) {
    let count_reg = loop_counter(cx.ins.code());
    let count = cx.reg(count_reg).wrapping_sub(1);
    cx.set_reg(count_reg, count);
    let zf = cx.flag(crate::flags::Flags::ZF);
    let taken = count & crate::flags::mask(count_reg.size() as u32 * 8) != 0
        && match cx.ins.mnemonic() {
            Mnemonic::Loope => zf,
            Mnemonic::Loopne => !zf,
            _ => true,
        };
    if taken {
        cx.st.rip = cx.ins.near_branch_target();
    }
}

/// Jcc.
pub fn jcc(cx: &mut Exec<'_>, _mnemonic: Mnemonic) -> Result<(), Exception> {
    if cx.condition() {
        cx.st.rip = cx.ins.near_branch_target();
    }
    Ok(())
}
