//! Instruction semantics, dispatched on the decoded mnemonic.

mod alu;
mod control;
mod data;
mod locked;
mod mmx;
mod muldiv;
mod operand;
mod privileged;
mod shift;
mod sse;
mod sse_float;
mod string;
mod x87;
mod x87_host;

use iced_x86::{EncodingKind, Instruction, Mnemonic};

use crate::cpu::{Exception, Exit};
use crate::memory::Memory;
use crate::state::CpuState;

/// What one instruction's execution works on.
pub(crate) struct Exec<'a> {
    /// The registers (RIP already points past the instruction).
    pub st: &'a mut CpuState,
    /// Memory at linear addresses.
    pub mem: &'a mut dyn Memory,
    /// The decoded instruction.
    pub ins: &'a Instruction,
    /// Set by an instruction that faulted part-way but must keep what it did (a REP).
    pub keep_partial: bool,
    /// While a locked instruction runs: its memory operand (see [`locked`]).
    pub locked: Option<locked::LockedOperand>,
    /// A guest kernel runs here (system mode): SYSCALL enters it; otherwise SYSCALL
    /// exits to the caller's system call layer.
    pub kernel: bool,
}

/// Runs `cx.ins`.
pub(crate) fn execute(cx: &mut Exec<'_>) -> Result<Option<Exit>, Exception> {
    use Mnemonic::*;
    // VEX, EVEX, XOP and 3DNow! instructions are neither implemented nor advertised.
    if cx.ins.encoding() != EncodingKind::Legacy {
        return Err(Exception::InvalidOpcode);
    }
    if cx.locked.is_none() && locked::is_locked(cx.ins) {
        return locked::execute(cx, execute);
    }
    match cx.ins.mnemonic() {
        Nop | Endbr64 | Pause | Lfence | Sfence | Mfence | Prefetchnta | Prefetcht0
        | Prefetcht1 | Prefetcht2 | Prefetchw => {}
        Add | Or | Adc | Sbb | And | Sub | Xor | Cmp => alu::binary(cx)?,
        Test => alu::test(cx)?,
        Inc | Dec | Neg | Not => alu::unary(cx)?,
        Mul | Imul | Div | Idiv => muldiv::execute(cx)?,
        Shl | Sal | Shr | Sar | Rol | Ror | Rcl | Rcr => shift::execute(cx)?,
        Shld | Shrd => shift::double(cx)?,
        Movsb | Movsw | Movsd | Movsq | Stosb | Stosw | Stosd | Stosq | Lodsb | Lodsw | Lodsd
        | Lodsq | Cmpsb | Cmpsw | Cmpsd | Cmpsq | Scasb | Scasw | Scasd | Scasq
            if string::is_string(cx.ins) =>
        {
            string::execute(cx)?
        }
        Push | Pop | Call | Ret | Jmp | Leave | Jrcxz | Jecxz | Loop | Loope | Loopne => {
            control::execute(cx)?
        }
        m if cx.ins.is_jcc_short_or_near() => control::jcc(cx, m)?,
        Cmovo | Cmovno | Cmovb | Cmovae | Cmove | Cmovne | Cmovbe | Cmova | Cmovs | Cmovns
        | Cmovp | Cmovnp | Cmovl | Cmovge | Cmovle | Cmovg => data::cmovcc(cx)?,
        Seto | Setno | Setb | Setae | Sete | Setne | Setbe | Seta | Sets | Setns | Setp | Setnp
        | Setl | Setge | Setle | Setg => data::setcc(cx)?,
        _ => match privileged::execute(cx) {
            Some(result) => return result,
            None => data::execute(cx)?,
        },
    }
    Ok(None)
}
