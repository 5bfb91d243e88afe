//! Instruction semantics, dispatched on the decoded mnemonic.

mod alu;
mod control;
mod data;
pub(crate) mod fast;
mod io;
pub(crate) mod locked;
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

use iced_x86::{Code, EncodingKind, Instruction, Mnemonic};

use crate::cpu::{Exception, Exit};
use crate::decoded::Decoded;
use crate::memory::{Memory, NoPlatform};
use crate::state::CpuState;
use crate::system::paging::PhysicalMemory;

/// What one instruction's execution works on.
pub(crate) struct Exec<'a> {
    /// The registers (RIP already points past the instruction).
    pub st: &'a mut CpuState,
    /// Memory at linear addresses.
    pub mem: &'a mut dyn Memory,
    /// The decoded instruction.
    pub ins: &'a Instruction,
    /// The same, with its operands and handler worked out.
    pub d: &'a Decoded,
    /// Set by an instruction that faulted part-way but must keep what it did (a REP).
    pub keep_partial: bool,
    /// While a locked instruction runs: its memory operand (see [`locked`]).
    pub locked: Option<locked::LockedOperand>,
    /// A guest kernel runs here (system mode): SYSCALL enters it; otherwise SYSCALL
    /// exits to the caller's system call layer.
    pub kernel: bool,
}

/// Which part of the executor runs an instruction: chosen once, when it is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Handler {
    /// VEX, EVEX, XOP and 3DNow! encodings: neither implemented nor advertised.
    Invalid,
    Nop,
    Alu,
    Test,
    Unary,
    MulDiv,
    Shift,
    ShiftDouble,
    String,
    Control,
    Jcc,
    Cmov,
    Setcc,
    /// System instructions, then everything else.
    Other,
}

/// The handler for `ins`.
pub(crate) fn classify(ins: &Instruction) -> Handler {
    use Mnemonic::*;
    if ins.encoding() != EncodingKind::Legacy {
        return Handler::Invalid;
    }
    match ins.mnemonic() {
        Nop | Endbr64 | Pause | Lfence | Sfence | Mfence | Prefetchnta | Prefetcht0
        | Prefetcht1 | Prefetcht2 | Prefetchw => Handler::Nop,
        Add | Or | Adc | Sbb | And | Sub | Xor | Cmp => Handler::Alu,
        Test => Handler::Test,
        Inc | Dec | Neg | Not => Handler::Unary,
        Mul | Imul | Div | Idiv => Handler::MulDiv,
        Shl | Sal | Shr | Sar | Rol | Ror | Rcl | Rcr => Handler::Shift,
        Shld | Shrd => Handler::ShiftDouble,
        Movsb | Movsw | Movsd | Movsq | Stosb | Stosw | Stosd | Stosq | Lodsb | Lodsw | Lodsd
        | Lodsq | Cmpsb | Cmpsw | Cmpsd | Cmpsq | Scasb | Scasw | Scasd | Scasq
            if string::is_string(ins) =>
        {
            Handler::String
        }
        Jmp if matches!(
            ins.code(),
            Code::Jmp_ptr1616 | Code::Jmp_ptr1632 | Code::Jmp_m1632 | Code::Jmp_m1664
        ) =>
        {
            Handler::Other // a far jump: a system instruction
        }
        Push | Pop | Call | Ret | Jmp | Leave | Jrcxz | Jecxz | Loop | Loope | Loopne => {
            Handler::Control
        }
        _ if ins.is_jcc_short_or_near() => Handler::Jcc,
        Cmovo | Cmovno | Cmovb | Cmovae | Cmove | Cmovne | Cmovbe | Cmova | Cmovs | Cmovns
        | Cmovp | Cmovnp | Cmovl | Cmovge | Cmovle | Cmovg => Handler::Cmov,
        Seto | Setno | Setb | Setae | Sete | Setne | Setbe | Seta | Sets | Setns | Setp | Setnp
        | Setl | Setge | Setle | Setg => Handler::Setcc,
        _ => Handler::Other,
    }
}

impl Exec<'_> {
    /// Runs `f` on the machine behind the memory, or on none ([`NoPlatform`]).
    pub fn with_platform<T>(&mut self, f: impl FnOnce(&mut dyn PhysicalMemory) -> T) -> T {
        match self.mem.platform() {
            Some(platform) => f(platform),
            None => f(&mut NoPlatform),
        }
    }
}

/// Runs `cx.ins`.
pub(crate) fn execute(cx: &mut Exec<'_>) -> Result<Option<Exit>, Exception> {
    if cx.d.locked && cx.locked.is_none() {
        return locked::execute(cx, execute);
    }
    match cx.d.handler {
        Handler::Invalid => return Err(Exception::InvalidOpcode),
        Handler::Nop => {}
        Handler::Alu => alu::binary(cx)?,
        Handler::Test => alu::test(cx)?,
        Handler::Unary => alu::unary(cx)?,
        Handler::MulDiv => muldiv::execute(cx)?,
        Handler::Shift => shift::execute(cx)?,
        Handler::ShiftDouble => shift::double(cx)?,
        Handler::String => string::execute(cx)?,
        Handler::Control => control::execute(cx)?,
        Handler::Jcc => control::jcc(cx, cx.ins.mnemonic())?,
        Handler::Cmov => data::cmovcc(cx)?,
        Handler::Setcc => data::setcc(cx)?,
        Handler::Other => match privileged::execute(cx) {
            Some(result) => return result,
            None => data::execute(cx)?,
        },
    }
    Ok(None)
}

/// Logs, once per instruction form, a #UD raised by an instruction iced decodes: one
/// not implemented here (or not allowed where it ran). The guest sees #UD either way;
/// the log tells a missing instruction from a guest bug. Returns whether it logged.
pub(crate) fn note_invalid_opcode(ins: &Instruction) -> bool {
    use std::collections::BTreeSet;
    use std::sync::Mutex;
    static SEEN: Mutex<BTreeSet<Code>> = Mutex::new(BTreeSet::new());
    if matches!(
        ins.mnemonic(),
        Mnemonic::Ud0 | Mnemonic::Ud1 | Mnemonic::Ud2
    ) {
        return false;
    }
    // A poisoned set only means another thread panicked mid-insert: keep using it.
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    let first = seen.insert(ins.code());
    if first {
        // Info, not a warning: guests probe for instructions and handle the #UD, and
        // `user-run` reports a fatal one itself (`-v` shows this line).
        tracing::info!(
            "software CPU: #UD for {:?} at {:#x}: not implemented or not allowed here (logged once)",
            ins.code(),
            ins.ip()
        );
    }
    first
}

#[cfg(test)]
mod tests {
    use iced_x86::{Decoder, DecoderOptions};

    #[test]
    fn test_invalid_opcode_is_noted_once_per_form_and_ud2_never() {
        let decode = |bytes: &[u8]| Decoder::new(64, bytes, DecoderOptions::NONE).decode();
        let vex = decode(&[0xc5, 0xf8, 0x77]); // VZEROUPPER: not implemented
        assert!(super::note_invalid_opcode(&vex));
        assert!(!super::note_invalid_opcode(&vex));
        assert!(!super::note_invalid_opcode(&decode(&[0x0f, 0x0b])));
    }
}
