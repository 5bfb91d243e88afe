//! Translation of single instructions: memory operands through the host TLB, the
//! stack, LEA, and the instructions that run as themselves.

use std::mem::offset_of;

use iced_x86::code_asm::*;
use iced_x86::{Instruction, Mnemonic, OpKind, Register};

use super::forms::{
    check_address, encodable, first_operand_bytes, host32, host64, implicit_registers,
    runs_as_itself, sized, writes_memory, Mapping, Step, Unsupported,
};
use super::host_tlb::{ADDEND_OFFSET, READ_OFFSET, WRITE_OFFSET};
use super::translate::{gpr, rip, segment_base, Translator};
use super::JitCall;
use crate::decoded::{is_immediate, Address, Decoded, Operand};

impl Translator {
    /// rsi = the linear address of `ea` (with the FS or GS base), without touching
    /// flags. Unsupported (before emitting anything) if `ea` cannot be formed so.
    pub(super) fn address(&mut self, ea: &Address, with_segment: bool) -> Step {
        check_address(ea, with_segment)?;
        let a = &mut self.a;
        let disp = i32::try_from(ea.displacement as i64).ok();
        match (ea.base, ea.index, disp) {
            (None, None, _) => a.mov(rsi, ea.displacement)?,
            (Some(b), None, Some(disp)) => {
                a.mov(rsi, gpr(b))?;
                if disp != 0 {
                    a.lea(rsi, ptr(rsi + disp))?;
                }
            }
            (base, Some((i, scale)), Some(disp)) => {
                a.mov(rdi, gpr(i))?;
                let scaled = rdi * u32::from(scale);
                match base {
                    Some(b) => {
                        a.mov(rsi, gpr(b))?;
                        a.lea(rsi, ptr(rsi + scaled + disp))?;
                    }
                    None => a.lea(rsi, ptr(scaled + disp))?,
                }
            }
            _ => return Err(Unsupported),
        }
        match ea.segment {
            Some(seg @ (4 | 5)) if with_segment => {
                a.mov(rdi, segment_base(seg))?;
                a.lea(rsi, ptr(rsi + rdi))?;
            }
            _ => {}
        }
        Ok(())
    }

    /// rsi (a linear address) becomes the host address of `len` bytes there, from
    /// the host TLB or its fill helper; if neither has it, instruction `k` is left to
    /// the interpreter. Host flags are kept.
    pub(super) fn host_address(&mut self, len: usize, write: bool, d: &Decoded, k: usize) -> Step {
        let a = &mut self.a;
        let (mut hit, mut done, mut miss) = (a.create_label(), a.create_label(), a.create_label());
        let tags = if write { WRITE_OFFSET } else { READ_OFFSET };
        a.shrx(rdi, rsi, r13)?;
        a.movzx(edi, dil)?;
        a.lea(rax, ptr(rsi + (len as i32 - 1)))?;
        a.shrx(rax, rax, r13)?;
        a.mov(rcx, qword_ptr(r14 + rdi * 8 + tags))?;
        a.lea(rcx, ptr(rax + rcx))?;
        a.jrcxz(hit)?;
        // The helper: flags saved around it (it is Rust), the stack kept aligned.
        a.lea(rsp, ptr(rsp - 8))?;
        a.pushfq()?;
        a.mov(rdi, r12)?;
        a.mov(edx, len as u32 | u32::from(write) << 8)?;
        a.call(qword_ptr(r12 + offset_of!(JitCall, fill) as i32))?;
        a.popfq()?;
        a.lea(rsp, ptr(rsp + 8))?;
        a.mov(rcx, rax)?;
        a.jrcxz(miss)?;
        a.mov(rsi, rax)?;
        a.jmp(done)?;
        a.set_label(&mut miss)?;
        self.exit(d.ins.ip(), k, true)?;
        let a = &mut self.a;
        a.set_label(&mut hit)?;
        a.mov(rdx, qword_ptr(r14 + rdi * 8 + ADDEND_OFFSET))?;
        a.lea(rsi, ptr(rsi + rdx))?;
        a.set_label(&mut done)?;
        Ok(())
    }

    /// PUSH of the value `load` puts in rax (after the stack slot is found).
    pub(super) fn push_value(
        &mut self,
        load: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>,
        d: &Decoded,
        k: usize,
    ) -> Step {
        self.a.mov(rsi, gpr(4))?;
        self.a.lea(rsi, ptr(rsi - 8))?;
        self.host_address(8, true, d, k)?;
        let a = &mut self.a;
        load(a)?;
        a.mov(qword_ptr(rsi), rax)?;
        a.mov(rax, gpr(4))?;
        a.lea(rax, ptr(rax - 8))?;
        a.mov(gpr(4), rax)?;
        Ok(())
    }

    /// POP into guest register `reg`, or into RIP (RET) when `None`.
    pub(super) fn pop_into(&mut self, reg: Option<u8>, d: &Decoded, k: usize) -> Step {
        self.a.mov(rsi, gpr(4))?;
        self.host_address(8, false, d, k)?;
        let a = &mut self.a;
        a.mov(rdx, qword_ptr(rsi))?;
        a.mov(rax, gpr(4))?;
        a.lea(rax, ptr(rax + 8))?;
        a.mov(gpr(4), rax)?;
        // After RSP: POP RSP loads the popped value.
        match reg {
            Some(r) => a.mov(gpr(r), rdx)?,
            None => a.mov(rip(), rdx)?,
        }
        Ok(())
    }

    /// LEA into a 32- or 64-bit register.
    pub(super) fn lea(&mut self, d: &Decoded) -> Step {
        let (Some(ea), Operand::Gpr { index, bits, .. }) = (d.ea, d.operands[0]) else {
            return Err(Unsupported);
        };
        if !matches!(bits, 32 | 64) {
            return Err(Unsupported);
        }
        self.address(&ea, false)?;
        if bits == 32 {
            self.a.mov(esi, esi)?;
        }
        self.a.mov(gpr(index), rsi)?;
        Ok(())
    }

    /// An instruction that runs as itself on host registers and `[rsi]`.
    pub(super) fn plain(&mut self, d: &Decoded, k: usize) -> Step {
        let ins = &d.ins;
        if !runs_as_itself(ins) {
            return Err(Unsupported);
        }
        let mut host = *ins;
        let mut map = Mapping::default();
        let mut memory = None;
        for i in 0..ins.op_count() {
            match ins.op_kind(i) {
                OpKind::Register => {
                    let r = ins.op_register(i);
                    if !r.is_gpr() {
                        return Err(Unsupported);
                    }
                    let h = map
                        .host(r.full_register().number() as u8)
                        .ok_or(Unsupported)?;
                    // AH..BH belong to identity-mapped registers: they stay as they are.
                    if !matches!(r, Register::AH | Register::CH | Register::DH | Register::BH) {
                        host.set_op_register(i, sized(h, r.size()).ok_or(Unsupported)?);
                    }
                }
                OpKind::Memory => memory = Some(i),
                kind if is_immediate(kind) => {}
                _ => return Err(Unsupported),
            }
        }
        for g in implicit_registers(ins.mnemonic(), ins.op_count()) {
            map.host(*g).ok_or(Unsupported)?;
        }
        if let Some(i) = memory {
            let len = ins.memory_size().size();
            if !matches!(len, 1 | 2 | 4 | 8) {
                return Err(Unsupported);
            }
            let ea = d.ea.ok_or(Unsupported)?;
            host.set_memory_base(Register::RSI);
            host.set_memory_index(Register::None);
            host.set_memory_index_scale(1);
            host.set_memory_displacement64(0);
            host.set_memory_displ_size(0);
            host.set_segment_prefix(Register::None);
            encodable(&host)?;
            self.address(&ea, true)?;
            self.host_address(len, writes_memory(ins, i), d, k)?;
        } else {
            encodable(&host)?;
        }
        for &(g, h) in &map.0 {
            self.a.mov(host64(h), gpr(g))?;
        }
        if matches!(ins.mnemonic(), Mnemonic::Div | Mnemonic::Idiv) {
            self.divide_guard(&host, d, k)?;
        }
        self.a.add_instruction(host)?;
        for &(g, h) in &map.0 {
            self.a.mov(gpr(g), host64(h))?;
        }
        Ok(())
    }

    /// Before a 32- or 64-bit DIV or IDIV (`host`, its operands on host registers or
    /// `[rsi]`, RAX and RDX loaded): instruction `k` goes to the interpreter if it
    /// would raise #DE (a zero divisor or a quotient too large), which on the host
    /// would be a signal. IDIV takes the guard's way more often than it must: whenever
    /// RDX is not RAX's sign extension, or the divisor is -1. The guest's flags are
    /// kept for the interpreter.
    pub(super) fn divide_guard(&mut self, host: &Instruction, d: &Decoded, k: usize) -> Step {
        let wide = first_operand_bytes(host) == 8;
        let a = &mut self.a;
        let (mut ok, mut refuse) = (a.create_label(), a.create_label());
        a.lea(rsp, ptr(rsp - 8))?;
        a.pushfq()?;
        // The divisor in rdi (free by now: the address is in rsi), at full width.
        match (host.op0_kind(), wide) {
            (OpKind::Register, true) => a.mov(rdi, host64(host.op0_register().number() as u8))?,
            (OpKind::Register, false) => a.mov(edi, host32(host.op0_register().number() as u8))?,
            (_, true) => a.mov(rdi, qword_ptr(rsi))?,
            (_, false) => a.mov(edi, dword_ptr(rsi))?,
        }
        a.test(rdi, rdi)?;
        a.jz(refuse)?;
        if host.mnemonic() == Mnemonic::Div {
            // Unsigned: the quotient fits if the high half is below the divisor.
            if wide {
                a.cmp(rdx, rdi)?;
            } else {
                a.cmp(edx, edi)?;
            }
            a.jae(refuse)?;
        } else {
            // Signed: the quotient fits if the dividend is RAX sign-extended (r11 is no
            // guest register here: DIV names at most one besides RAX and RDX).
            if wide {
                a.mov(r11, rax)?;
                a.sar(r11, 63)?;
                a.cmp(r11, rdx)?;
                a.jne(refuse)?;
                a.cmp(rdi, -1)?;
            } else {
                a.mov(r11d, eax)?;
                a.sar(r11d, 31)?;
                a.cmp(r11d, edx)?;
                a.jne(refuse)?;
                a.cmp(edi, -1)?;
            }
            a.je(refuse)?;
        }
        a.lea(rsp, ptr(rsp + 16))?;
        a.jmp(ok)?;
        a.set_label(&mut refuse)?;
        a.popfq()?;
        a.lea(rsp, ptr(rsp + 8))?;
        self.exit(d.ins.ip(), k, true)?;
        self.a.set_label(&mut ok)?;
        Ok(())
    }

    /// CALL or JMP through a 64-bit register or memory operand: to the block at the
    /// target (chained when it can be).
    pub(super) fn indirect(&mut self, d: &Decoded, k: usize, call: bool) -> Step {
        // The target in rbx: no guest register lives there between instructions, and
        // the fill helper keeps it.
        match (d.operands[0], d.ea) {
            (
                Operand::Gpr {
                    index, bits: 64, ..
                },
                _,
            ) => self.a.mov(rbx, gpr(index))?,
            (Operand::Memory { bits: 64 }, Some(ea)) => {
                self.address(&ea, true)?;
                self.host_address(8, false, d, k)?;
                self.a.mov(rbx, qword_ptr(rsi))?;
            }
            _ => return Err(Unsupported),
        }
        if call {
            let next = d.ins.next_ip();
            self.push_value(|a| a.mov(rax, next), d, k)?;
        }
        self.a.mov(rax, rbx)?;
        self.chain(k + 1)
    }
}
