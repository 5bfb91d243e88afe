//! Translation of one decoded block into host code.
//!
//! Guest and host are both x86-64, so most integer instructions run as themselves: each
//! is re-encoded with host registers standing in for the guest registers it names and
//! `[rsi]` for its memory operand, between loads and stores of those guest registers
//! from [`CpuState`]. The guest's arithmetic flags live in the host's RFLAGS for the
//! whole block: nothing the translation adds between guest instructions (MOV, LEA,
//! MOVZX, SHRX, JRCXZ) changes flags. Flags, registers and memory therefore come out
//! exactly as the host CPU computes them, undefined flags included.
//!
//! Host registers while a block runs: r15 the [`CpuState`], r14 the [`HostTlb`] of the
//! block's privilege, r13 the constant 12 (SHRX's page shift), r12 the [`JitCall`];
//! rsi carries a memory operand's address; guest RAX, RCX, RDX, RBX and RBP sit in
//! their own host registers (so implicit operands and AH..BH work as they are), the
//! other guest registers an instruction names in r8..r11.
//!
//! Blocks chain: at its end, a block whose successor is known (a direct branch, a
//! return) looks the successor up in the CPU's jump cache ([`super::JumpTable`]) and
//! jumps straight into its body, with registers and flags still live, as long as the
//! instruction budget lasts and no interrupt is pending ([`JitCall::wake`]). Otherwise,
//! or when the next instruction is not translated, it stores RIP and returns to the
//! CPU: 1 if the interpreter must run the next instruction (it is not translated, or
//! its memory access missed the host TLB and the fill could not help: MMIO, a fault,
//! code pages, a page crossing), else 0. [`JitCall::left`] counts what ran.

use std::mem::offset_of;

use iced_x86::code_asm::*;
use iced_x86::{BlockEncoderOptions, ConditionCode};

use super::forms::{push_pop_register, Step, Stop, Unsupported};
use super::JitCall;
use crate::decoded::{Decoded, Fast};
use crate::state::{CpuState, Segment};

/// The arithmetic flags (CF, PF, AF, ZF, SF, OF) the host carries for the guest.
const ARITH: i32 = 0x8d5;

pub(super) fn gpr(n: u8) -> AsmMemoryOperand {
    qword_ptr(r15 + (offset_of!(CpuState, gpr) + 8 * n as usize) as i32)
}

pub(super) fn rip() -> AsmMemoryOperand {
    qword_ptr(r15 + offset_of!(CpuState, rip) as i32)
}

fn rflags() -> AsmMemoryOperand {
    qword_ptr(r15 + offset_of!(CpuState, rflags) as i32)
}

pub(super) fn segment_base(n: u8) -> AsmMemoryOperand {
    let at =
        offset_of!(CpuState, seg) + n as usize * size_of::<Segment>() + offset_of!(Segment, base);
    qword_ptr(r15 + at as i32)
}

/// Builds the host code of one block.
pub(crate) struct Translator {
    pub(super) a: CodeAssembler,
    /// Where chained blocks enter (past the prologue).
    body: CodeLabel,
    epilogue: CodeLabel,
}

/// A translated block: its code and where its body starts in it.
pub(crate) struct HostCode {
    pub bytes: Vec<u8>,
    pub body: u64,
}

fn call_field(offset: usize) -> AsmMemoryOperand {
    qword_ptr(r12 + offset as i32)
}

impl Translator {
    /// Host code for `block` (its instructions in order), assembled at `address`;
    /// `None` if not even its first instruction translates.
    pub fn translate(block: &[Decoded], address: u64) -> Option<HostCode> {
        let mut t = Self::new().ok()?;
        let mut done = 0;
        let mut branched = false;
        for (k, d) in block.iter().enumerate() {
            match t.instruction(d, k) {
                Ok(ended) => {
                    done = k + 1;
                    branched = ended;
                    if ended {
                        break;
                    }
                }
                Err(Stop::Unsupported) => break,
                Err(Stop::Failed) => return None,
            }
        }
        if done == 0 {
            return None;
        }
        if !branched {
            let step = match block.get(done) {
                // The next instruction is the interpreter's.
                Some(next) => t.exit(next.ins.ip(), done, true),
                // The block ran out (its size or its page): continue after it.
                None => t.chain_to(block[done - 1].ins.next_ip(), done),
            };
            step.ok()?;
        }
        t.finish(address).ok()
    }

    fn new() -> Result<Self, IcedError> {
        let mut a = CodeAssembler::new(64)?;
        let epilogue = a.create_label();
        let mut body = a.create_label();
        for r in [rbx, rbp, r12, r13, r14, r15] {
            a.push(r)?;
        }
        a.sub(rsp, 8)?; // 16-byte alignment for the fill helper's calls
        a.mov(r15, rdi)?;
        a.mov(r14, rsi)?;
        a.mov(r12, rdx)?;
        a.mov(r13d, 12)?;
        a.mov(rax, rflags())?;
        a.and(eax, ARITH)?;
        a.push(rax)?;
        a.popfq()?;
        a.set_label(&mut body)?;
        Ok(Self { a, body, epilogue })
    }

    fn finish(mut self, address: u64) -> Result<HostCode, IcedError> {
        let a = &mut self.a;
        a.set_label(&mut self.epilogue)?;
        a.mov(rbx, rax)?;
        a.pushfq()?;
        a.pop(rcx)?;
        a.and(ecx, ARITH)?;
        a.mov(rdx, rflags())?;
        a.and(rdx, !ARITH)?;
        a.or(rdx, rcx)?;
        a.mov(rflags(), rdx)?;
        a.mov(rax, rbx)?;
        a.add(rsp, 8)?;
        for r in [r15, r14, r13, r12, rbp, rbx] {
            a.pop(r)?;
        }
        a.ret()?;
        let options = BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS;
        let result = a.assemble_options(address, options)?;
        Ok(HostCode {
            body: result.label_ip(&self.body)? - address,
            bytes: result.inner.code_buffer,
        })
    }

    /// Counts `done` instructions as run (against [`JitCall::left`]).
    fn count(&mut self, done: usize) -> Step {
        let a = &mut self.a;
        a.mov(rcx, call_field(offset_of!(JitCall, left)))?;
        a.lea(rcx, ptr(rcx - done as i32))?;
        a.mov(call_field(offset_of!(JitCall, left)), rcx)?;
        Ok(())
    }

    /// Counts `done`, stores `rip` and returns `interpret` to the CPU.
    pub(super) fn exit(&mut self, rip_value: u64, done: usize, interpret: bool) -> Step {
        self.count(done)?;
        self.a.mov(rax, rip_value)?;
        self.a.mov(rip(), rax)?;
        self.a.mov(eax, u32::from(interpret))?;
        self.a.jmp(self.epilogue)?;
        Ok(())
    }

    /// Counts `done` and continues at `target`.
    fn chain_to(&mut self, target: u64, done: usize) -> Step {
        self.a.mov(rax, target)?;
        self.chain(done)
    }

    /// Counts `done` and continues at the RIP in rax: in its translation, if the
    /// budget lasts, no interrupt is pending and the jump cache has it; else back to
    /// the CPU. Host flags are kept.
    pub(super) fn chain(&mut self, done: usize) -> Step {
        self.count(done)?;
        let a = &mut self.a;
        let mut out = a.create_label();
        // Budget spent (LEFT negative)?
        a.mov(edx, 63)?;
        a.shrx(rcx, rcx, rdx)?;
        let mut budget_ok = a.create_label();
        a.jrcxz(budget_ok)?;
        a.jmp(out)?;
        a.set_label(&mut budget_ok)?;
        for wake in 0..2 {
            let mut quiet = a.create_label();
            a.mov(rcx, call_field(offset_of!(JitCall, wake) + 8 * wake))?;
            a.movzx(ecx, byte_ptr(rcx))?;
            a.jrcxz(quiet)?;
            a.jmp(out)?;
            a.set_label(&mut quiet)?;
        }
        // The jump cache: 16-byte entries (negated RIP, body), indexed by RIP's low
        // bits.
        let mut hit = a.create_label();
        a.mov(edx, 64 - super::JUMP_BITS)?;
        a.shlx(rsi, rax, rdx)?;
        a.shrx(rsi, rsi, rdx)?;
        a.mov(edx, 4)?;
        a.shlx(rsi, rsi, rdx)?;
        a.mov(rdx, call_field(offset_of!(JitCall, jumps)))?;
        a.mov(rcx, qword_ptr(rdx + rsi))?;
        a.lea(rcx, ptr(rcx + rax))?;
        a.jrcxz(hit)?;
        a.set_label(&mut out)?;
        a.mov(rip(), rax)?;
        a.mov(eax, 0)?; // not XOR: the epilogue has not saved the flags yet
        a.jmp(self.epilogue)?;
        a.set_label(&mut hit)?;
        a.jmp(qword_ptr(rdx + rsi + 8))?;
        Ok(())
    }

    /// Translates instruction `k`; `Ok(true)` if it ended the block (branched).
    fn instruction(&mut self, d: &Decoded, k: usize) -> Result<bool, Stop> {
        if d.ins.code_size() != iced_x86::CodeSize::Code64 {
            return Err(Unsupported);
        }
        match d.fast {
            Fast::Nop => return Ok(false),
            Fast::Jcc(cc, target) => {
                let mut taken = self.a.create_label();
                self.jcc(cc, taken)?;
                self.chain_to(d.ins.next_ip(), k + 1)?;
                self.a.set_label(&mut taken)?;
                self.chain_to(target, k + 1)?;
                return Ok(true);
            }
            Fast::Jmp(target) => {
                self.chain_to(target, k + 1)?;
                return Ok(true);
            }
            Fast::Call(target) => {
                self.push_value(|a| a.mov(rax, d.ins.next_ip()), d, k)?;
                self.chain_to(target, k + 1)?;
                return Ok(true);
            }
            Fast::Ret => {
                self.pop_into(None, d, k)?;
                self.a.mov(rax, rip())?;
                self.chain(k + 1)?;
                return Ok(true);
            }
            Fast::Push => {
                let reg = push_pop_register(d)?;
                self.push_value(|a| a.mov(rax, gpr(reg)), d, k)?;
                return Ok(false);
            }
            Fast::Pop => {
                let reg = push_pop_register(d)?;
                self.pop_into(Some(reg), d, k)?;
                return Ok(false);
            }
            Fast::CallIndirect | Fast::JmpIndirect => {
                self.indirect(d, k, d.fast == Fast::CallIndirect)?;
                return Ok(true);
            }
            Fast::Lea => {
                self.lea(d)?;
                return Ok(false);
            }
            _ => {}
        }
        self.plain(d, k)?;
        Ok(false)
    }

    fn jcc(&mut self, cc: ConditionCode, to: CodeLabel) -> Step {
        let a = &mut self.a;
        match cc {
            ConditionCode::o => a.jo(to),
            ConditionCode::no => a.jno(to),
            ConditionCode::b => a.jb(to),
            ConditionCode::ae => a.jae(to),
            ConditionCode::e => a.je(to),
            ConditionCode::ne => a.jne(to),
            ConditionCode::be => a.jbe(to),
            ConditionCode::a => a.ja(to),
            ConditionCode::s => a.js(to),
            ConditionCode::ns => a.jns(to),
            ConditionCode::p => a.jp(to),
            ConditionCode::np => a.jnp(to),
            ConditionCode::l => a.jl(to),
            ConditionCode::ge => a.jge(to),
            ConditionCode::le => a.jle(to),
            ConditionCode::g => a.jg(to),
            ConditionCode::None => return Err(Unsupported),
        }?;
        Ok(())
    }
}
