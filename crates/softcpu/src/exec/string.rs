//! MOVS, STOS, LODS, CMPS, SCAS, with REP / REPE / REPNE.
//!
//! A REP runs at most [`BATCH`] iterations per step, then leaves RIP on the instruction
//! so that it resumes (and an interrupt can be taken in between), as hardware does. A
//! fault part-way keeps the iterations already done, with RIP on the instruction.

use iced_x86::{Instruction, Mnemonic, OpKind, Register};

use super::operand::accumulator;
use super::Exec;
use crate::cpu::Exception;
use crate::flags::{self, mask, Flags};
use crate::state::Gpr;

/// Iterations of a REP done per step.
const BATCH: u64 = 4096;

/// Address-size view of RSI, RDI and RCX: 32-bit with a 0x67 prefix.
struct Pointers {
    mask: u64,
}

impl Exec<'_> {
    fn string_bits(&self) -> u32 {
        (self.ins.memory_size().size() as u32 * 8).max(8)
    }

    /// 32-bit addressing (ESI/EDI/ECX) with a 0x67 prefix, else 64-bit.
    fn address_mask(&self) -> u64 {
        let uses_32 = self
            .ins
            .op_kinds()
            .any(|k| matches!(k, OpKind::MemorySegESI | OpKind::MemoryESEDI));
        if uses_32 {
            0xffff_ffff
        } else {
            u64::MAX
        }
    }

    fn step_pointer(&mut self, reg: Gpr, bits: u32, p: &Pointers) {
        let delta = u64::from(bits / 8);
        let value = self.st.reg(reg);
        let next = if self.flag(Flags::DF) {
            value.wrapping_sub(delta)
        } else {
            value.wrapping_add(delta)
        };
        self.st.set_reg(reg, next & p.mask);
    }

    /// The source address: RSI with the instruction's segment (DS unless overridden).
    fn source(&self, p: &Pointers) -> u64 {
        let offset = self.st.reg(Gpr::Rsi) & p.mask;
        match self.ins.memory_segment() {
            Register::FS => offset.wrapping_add(self.st.seg[4].base),
            Register::GS => offset.wrapping_add(self.st.seg[5].base),
            _ => offset,
        }
    }

    /// One iteration; for CMPS/SCAS returns whether the elements were equal.
    fn string_once(&mut self, bits: u32, p: &Pointers) -> Result<bool, Exception> {
        let dest = self.st.reg(Gpr::Rdi) & p.mask;
        let acc = accumulator(bits);
        let mut equal = true;
        match self.ins.mnemonic() {
            Mnemonic::Movsb | Mnemonic::Movsw | Mnemonic::Movsd | Mnemonic::Movsq => {
                let v = self.load(self.source(p), bits)?;
                self.store(dest, bits, v)?;
                self.step_pointer(Gpr::Rsi, bits, p);
                self.step_pointer(Gpr::Rdi, bits, p);
            }
            Mnemonic::Stosb | Mnemonic::Stosw | Mnemonic::Stosd | Mnemonic::Stosq => {
                self.store(dest, bits, self.reg(acc))?;
                self.step_pointer(Gpr::Rdi, bits, p);
            }
            Mnemonic::Lodsb | Mnemonic::Lodsw | Mnemonic::Lodsd | Mnemonic::Lodsq => {
                let v = self.load(self.source(p), bits)?;
                self.set_reg(acc, v);
                self.step_pointer(Gpr::Rsi, bits, p);
            }
            Mnemonic::Cmpsb | Mnemonic::Cmpsw | Mnemonic::Cmpsd | Mnemonic::Cmpsq => {
                let a = self.load(self.source(p), bits)?;
                let b = self.load(dest, bits)?;
                let (_, f) = flags::sub(a, b, false, bits);
                self.set_flags(Flags::ARITH, f);
                equal = a & mask(bits) == b & mask(bits);
                self.step_pointer(Gpr::Rsi, bits, p);
                self.step_pointer(Gpr::Rdi, bits, p);
            }
            _ => {
                let b = self.load(dest, bits)?;
                let a = self.reg(acc);
                let (_, f) = flags::sub(a, b, false, bits);
                self.set_flags(Flags::ARITH, f);
                equal = a == b & mask(bits);
                self.step_pointer(Gpr::Rdi, bits, p);
            }
        }
        Ok(equal)
    }
}

/// Whether `ins` is a string instruction (SSE's MOVSD and CMPSD share its mnemonics).
pub fn is_string(ins: &Instruction) -> bool {
    ins.op_kinds().any(|k| {
        matches!(
            k,
            OpKind::MemorySegSI
                | OpKind::MemorySegESI
                | OpKind::MemorySegRSI
                | OpKind::MemoryESDI
                | OpKind::MemoryESEDI
                | OpKind::MemoryESRDI
        )
    })
}

/// Whether the mnemonic compares (REPE/REPNE also stop on the comparison).
fn compares(m: Mnemonic) -> bool {
    matches!(
        m,
        Mnemonic::Cmpsb
            | Mnemonic::Cmpsw
            | Mnemonic::Cmpsd
            | Mnemonic::Cmpsq
            | Mnemonic::Scasb
            | Mnemonic::Scasw
            | Mnemonic::Scasd
            | Mnemonic::Scasq
    )
}

/// A string instruction, repeated or not.
pub fn execute(cx: &mut Exec<'_>) -> Result<(), Exception> {
    let bits = cx.string_bits();
    let p = Pointers {
        mask: cx.address_mask(),
    };
    let repeated = cx.ins.has_rep_prefix() || cx.ins.has_repne_prefix();
    if !repeated {
        return cx.string_once(bits, &p).map(|_| ());
    }
    let until_equal = cx.ins.has_repne_prefix();
    let compare = compares(cx.ins.mnemonic());
    for _ in 0..BATCH {
        let count = cx.st.reg(Gpr::Rcx) & p.mask;
        if count == 0 {
            return Ok(());
        }
        if let Err(e) = cx.string_once(bits, &p) {
            // Keep the finished iterations; restart this one after the fault.
            cx.st.rip = cx.ins.ip();
            cx.keep_partial = true;
            return Err(e);
        }
        let equal = cx.flag(Flags::ZF);
        cx.st
            .set_reg(Gpr::Rcx, (cx.st.reg(Gpr::Rcx) & !p.mask) | (count - 1));
        if compare && equal == until_equal {
            return Ok(());
        }
    }
    if cx.st.reg(Gpr::Rcx) & p.mask != 0 {
        cx.st.rip = cx.ins.ip();
    }
    Ok(())
}
