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
use iced_x86::{BlockEncoderOptions, Code, ConditionCode, Instruction, Mnemonic, OpKind, Register};

use super::host_tlb::{ADDEND_OFFSET, READ_OFFSET, WRITE_OFFSET};
use super::JitCall;
use crate::decoded::{Address, Decoded, Fast};
use crate::state::{CpuState, Segment};

/// The arithmetic flags (CF, PF, AF, ZF, SF, OF) the host carries for the guest.
const ARITH: i32 = 0x8d5;

fn gpr(n: u8) -> AsmMemoryOperand {
    qword_ptr(r15 + (offset_of!(CpuState, gpr) + 8 * n as usize) as i32)
}

fn rip() -> AsmMemoryOperand {
    qword_ptr(r15 + offset_of!(CpuState, rip) as i32)
}

fn rflags() -> AsmMemoryOperand {
    qword_ptr(r15 + offset_of!(CpuState, rflags) as i32)
}

fn segment_base(n: u8) -> AsmMemoryOperand {
    let at =
        offset_of!(CpuState, seg) + n as usize * size_of::<Segment>() + offset_of!(Segment, base);
    qword_ptr(r15 + at as i32)
}

/// Guest register numbers that live in their own host register.
const IDENTITY: [u8; 5] = [0, 1, 2, 3, 5];
/// Host registers for the other guest registers an instruction names.
const SPARE: [u8; 4] = [8, 9, 10, 11];

/// Host register `n` as a 64-bit assembler register.
fn host64(n: u8) -> AsmRegister64 {
    [
        rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15,
    ][n as usize]
}

/// iced's register number `n` at `bytes` wide (low bytes for 1).
fn sized(n: u8, bytes: usize) -> Option<Register> {
    let first = match bytes {
        1 if n < 4 => Register::AL as usize + n as usize,
        1 => Register::AL as usize + 4 + n as usize,
        2 => Register::AX as usize + n as usize,
        4 => Register::EAX as usize + n as usize,
        8 => Register::RAX as usize + n as usize,
        _ => return None,
    };
    Register::try_from(first).ok()
}

/// Guest to host register numbers for one instruction.
#[derive(Default)]
struct Mapping(Vec<(u8, u8)>);

impl Mapping {
    /// The host register for guest register `g`, assigned on first use; `None` when
    /// the spares run out.
    fn host(&mut self, g: u8) -> Option<u8> {
        if let Some(&(_, h)) = self.0.iter().find(|(guest, _)| *guest == g) {
            return Some(h);
        }
        let h = if IDENTITY.contains(&g) {
            g
        } else {
            let used = self
                .0
                .iter()
                .filter(|(guest, _)| !IDENTITY.contains(guest))
                .count();
            *SPARE.get(used)?
        };
        self.0.push((g, h));
        Some(h)
    }
}

/// Why an instruction was not translated.
enum Stop {
    /// The translator does not run it: found before anything of it was emitted, so
    /// the block ends there and the interpreter takes over.
    Unsupported,
    /// The assembler refused what was emitted: the block is not translated at all.
    Failed,
}

use Stop::Unsupported;

type Step = Result<(), Stop>;

impl From<IcedError> for Stop {
    fn from(_: IcedError) -> Self {
        Stop::Failed
    }
}

/// Builds the host code of one block.
pub(crate) struct Translator {
    a: CodeAssembler,
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
    fn exit(&mut self, rip_value: u64, done: usize, interpret: bool) -> Step {
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
    fn chain(&mut self, done: usize) -> Step {
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

    /// rsi = the linear address of `ea` (with the FS or GS base), without touching
    /// flags.
    fn address(&mut self, ea: &Address, with_segment: bool) -> Step {
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
    fn host_address(&mut self, len: usize, write: bool, d: &Decoded, k: usize) -> Step {
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
    fn push_value(
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
    fn pop_into(&mut self, reg: Option<u8>, d: &Decoded, k: usize) -> Step {
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
    fn lea(&mut self, d: &Decoded) -> Step {
        let (Some(ea), crate::decoded::Operand::Gpr { index, bits, .. }) = (d.ea, d.operands[0])
        else {
            return Err(Unsupported);
        };
        if !matches!(bits, 32 | 64) {
            return Err(Unsupported);
        }
        check_address(&ea, false)?;
        self.address(&ea, false)?;
        if bits == 32 {
            self.a.mov(esi, esi)?;
        }
        self.a.mov(gpr(index), rsi)?;
        Ok(())
    }

    /// An instruction that runs as itself on host registers and `[rsi]`.
    fn plain(&mut self, d: &Decoded, k: usize) -> Step {
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
                    if matches!(r, Register::AH | Register::CH | Register::DH | Register::BH) {
                        map.host(r.full_register().number() as u8)
                            .ok_or(Unsupported)?;
                        continue; // identity-mapped: stays as it is
                    }
                    let g = r.full_register().number() as u8;
                    let h = map.host(g).ok_or(Unsupported)?;
                    host.set_op_register(i, sized(h, r.size()).ok_or(Unsupported)?);
                }
                OpKind::Memory => memory = Some(i),
                OpKind::Immediate8
                | OpKind::Immediate16
                | OpKind::Immediate32
                | OpKind::Immediate64
                | OpKind::Immediate8to16
                | OpKind::Immediate8to32
                | OpKind::Immediate8to64
                | OpKind::Immediate32to64 => {}
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
            check_address(&ea, true)?;
            self.address(&ea, true)?;
            self.host_address(len, writes_memory(ins, i), d, k)?;
        } else {
            encodable(&host)?;
        }
        for &(g, h) in &map.0 {
            self.a.mov(host64(h), gpr(g))?;
        }
        self.a.add_instruction(host)?;
        for &(g, h) in &map.0 {
            self.a.mov(gpr(g), host64(h))?;
        }
        Ok(())
    }
}

/// Whether the host can encode `ins` (the guest's AH with a spare register, which
/// needs REX, it cannot).
fn encodable(ins: &Instruction) -> Step {
    match iced_x86::Encoder::new(64).encode(ins, 0) {
        Ok(_) => Ok(()),
        Err(_) => Err(Unsupported),
    }
}

/// Whether [`Translator::address`] can form `ea`: 64-bit addressing, a 32-bit
/// displacement with registers, and no segment base but FS's or GS's.
fn check_address(ea: &Address, with_segment: bool) -> Step {
    let registers = ea.base.is_some() || ea.index.is_some();
    let disp_ok = !registers || i32::try_from(ea.displacement as i64).is_ok();
    let segment_ok = !with_segment || matches!(ea.segment, None | Some(4 | 5));
    if ea.mask == u64::MAX && disp_ok && segment_ok {
        Ok(())
    } else {
        Err(Unsupported)
    }
}

/// The register a 64-bit PUSH or POP names.
fn push_pop_register(d: &Decoded) -> Result<u8, Stop> {
    match d.operands[0] {
        crate::decoded::Operand::Gpr {
            index, bits: 64, ..
        } => Ok(index),
        _ => Err(Unsupported),
    }
}

/// Guest registers an instruction uses without naming them.
fn implicit_registers(m: Mnemonic, operands: u32) -> &'static [u8] {
    use Mnemonic::*;
    match m {
        Mul | Imul if operands == 1 => &[0, 2],
        Cwd | Cdq | Cqo => &[0, 2],
        Cbw | Cwde | Cdqe | Cmpxchg | Lahf | Sahf => &[0],
        _ => &[],
    }
}

/// Whether the instruction writes its memory operand `i` (else it only reads it).
fn writes_memory(ins: &Instruction, i: u32) -> bool {
    i == 0
        && !matches!(
            ins.mnemonic(),
            Mnemonic::Cmp | Mnemonic::Test | Mnemonic::Bt
        )
}

/// Integer instructions whose host execution is the guest's: no faults on the host
/// (no division), no state outside GPRs, memory and arithmetic flags, nothing this
/// CPU does not advertise.
fn runs_as_itself(ins: &Instruction) -> bool {
    use Mnemonic::*;
    if ins.encoding() != iced_x86::EncodingKind::Legacy
        || ins.has_rep_prefix()
        || ins.has_repne_prefix()
    {
        return false;
    }
    let bit_memory_register = matches!(ins.mnemonic(), Bt | Bts | Btr | Btc)
        && ins.op0_kind() == OpKind::Memory
        && ins.op1_kind() == OpKind::Register;
    if bit_memory_register || ins.code() == Code::Xlat_m8 {
        return false; // a bit string reaches past its operand
    }
    matches!(
        ins.mnemonic(),
        Mov | Movzx
            | Movsx
            | Movsxd
            | Add
            | Or
            | Adc
            | Sbb
            | And
            | Sub
            | Xor
            | Cmp
            | Test
            | Inc
            | Dec
            | Not
            | Neg
            | Shl
            | Shr
            | Sar
            | Rol
            | Ror
            | Rcl
            | Rcr
            | Shld
            | Shrd
            | Imul
            | Mul
            | Cmovo
            | Cmovno
            | Cmovb
            | Cmovae
            | Cmove
            | Cmovne
            | Cmovbe
            | Cmova
            | Cmovs
            | Cmovns
            | Cmovp
            | Cmovnp
            | Cmovl
            | Cmovge
            | Cmovle
            | Cmovg
            | Seto
            | Setno
            | Setb
            | Setae
            | Sete
            | Setne
            | Setbe
            | Seta
            | Sets
            | Setns
            | Setp
            | Setnp
            | Setl
            | Setge
            | Setle
            | Setg
            | Bswap
            | Xchg
            | Xadd
            | Cmpxchg
            | Bt
            | Bts
            | Btr
            | Btc
            | Bsf
            | Bsr
            | Cwd
            | Cdq
            | Cqo
            | Cbw
            | Cwde
            | Cdqe
            | Lahf
            | Sahf
            | Clc
            | Stc
            | Cmc
    )
}
