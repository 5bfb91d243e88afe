//! An instruction decoded once, with what execution asks of it most often worked out in
//! advance: which handler runs it, where its first two operands live and how to form
//! its memory operand's address. The executor reads these instead of asking iced again
//! each time the instruction runs (iced's accessors decode packed fields).

use iced_x86::{CodeSize, ConditionCode, Instruction, Mnemonic, OpKind, Register};

use crate::exec::{self, Handler};
use crate::flags::mask;
use crate::state::CpuState;

/// One decoded instruction, ready to run many times.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Decoded {
    /// iced's instruction, for everything not worked out here.
    pub ins: Instruction,
    /// What runs it: the fast path, if it has the instruction's form, or else
    /// `handler`.
    pub fast: Fast,
    /// What runs it off the fast path.
    pub handler: Handler,
    /// It may write memory (if it does, decoded code may have changed under it).
    pub may_write: bool,
    /// It must run as one atomic step (LOCK, or XCHG with memory).
    pub locked: bool,
    /// Its first two operands.
    pub operands: [Operand; 2],
    /// How to form its memory operand's address, if it has a plain one.
    pub ea: Option<Address>,
}

/// Where an operand lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operand {
    /// Bits `shift..shift + bits` of general-purpose register `index` (shift 8 for AH,
    /// CH, DH and BH).
    Gpr { index: u8, shift: u8, bits: u8 },
    /// Memory of `bits` bits at [`Decoded::ea`].
    Memory { bits: u8 },
    /// An immediate, already extended to its operand size.
    Immediate { value: u64, bits: u8 },
    /// Anything else (segment, vector, control registers, string operands, branch
    /// targets): asked of iced when needed.
    Other,
}

/// An effective address `base + index * scale + displacement` (RIP-relative ones have
/// the absolute address as displacement), truncated to 32 bits when the instruction
/// uses 32-bit addressing, plus the FS or GS base.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Address {
    /// Base register number, if any.
    pub base: Option<u8>,
    /// Index register number, if any, and the scale.
    pub index: Option<(u8, u8)>,
    /// The displacement (sign-extended).
    pub displacement: u64,
    /// All ones, or the low 32 bits for 32-bit addressing.
    pub mask: u64,
    /// Segment register number (4: FS, 5: GS) whose base is added, if any.
    pub segment: Option<u8>,
}

/// The forms the fast path runs: the common integer instructions on registers,
/// immediates and plain memory operands, whose operands are all in
/// [`Decoded::operands`]. Each faults, if at all, before it changes anything, so the
/// fast path needs no rollback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fast {
    /// Not one of these: the general executor runs it.
    No,
    /// NOP and the hints executed as one.
    Nop,
    /// MOV: operand 0 = operand 1.
    Mov,
    /// MOVZX: operand 0 = operand 1, zero-extended.
    Movzx,
    /// MOVSX, MOVSXD: operand 0 = operand 1, sign-extended.
    Movsx,
    /// LEA: operand 0 = the memory operand's offset.
    Lea,
    /// The ALU group, one variant each (so that dispatch is one jump): operand 0 op=
    /// operand 1 (CMP and TEST store nothing).
    Add,
    Or,
    Adc,
    Sbb,
    And,
    Sub,
    Xor,
    Cmp,
    Test,
    /// INC (false) or DEC (true) of operand 0.
    IncDec(bool),
    /// NOT of operand 0.
    Not,
    /// NEG of operand 0.
    Neg,
    /// BSWAP of a 32- or 64-bit register.
    Bswap,
    /// SHL, SHR, SAR, ROL, ROR by an immediate or CL.
    Shl,
    Shr,
    Sar,
    Rol,
    Ror,
    /// Two-operand IMUL: operand 0 *= operand 1.
    Imul,
    /// Jcc to the target.
    Jcc(ConditionCode, u64),
    /// JMP to the target.
    Jmp(u64),
    /// CALL to the target.
    Call(u64),
    /// CALL to operand 0's value.
    CallIndirect,
    /// JMP to operand 0's value.
    JmpIndirect,
    /// RET without an immediate.
    Ret,
    /// 64-bit PUSH of operand 0.
    Push,
    /// 64-bit POP into operand 0.
    Pop,
    /// CMOVcc: operand 0 = operand 1 if the condition holds.
    Cmov(ConditionCode),
    /// SETcc operand 0.
    Setcc(ConditionCode),
}

/// The fast form of `ins`, whose first two operands are `operands` (`has_ea`: its
/// memory operand, if any, has an address recipe).
fn fast_form(ins: &Instruction, operands: &[Operand; 2], has_ea: bool) -> Fast {
    use Mnemonic::*;
    // LEA's memory operand is only an address: it has no size.
    let lea = ins.mnemonic() == Mnemonic::Lea;
    let integer = |op: &Operand| match *op {
        Operand::Gpr { .. } | Operand::Immediate { .. } => true,
        Operand::Memory { bits } => has_ea && (lea || matches!(bits, 8 | 16 | 32 | 64)),
        Operand::Other => false,
    };
    let count = ins.op_count() as usize;
    let plain = count <= 2
        && operands[..count].iter().all(integer)
        && !matches!(operands[0], Operand::Immediate { .. })
        && !crate::exec::locked::is_locked(ins)
        && !ins.has_rep_prefix()
        && !ins.has_repne_prefix();
    let one_memory = !matches!(operands, [Operand::Memory { .. }, Operand::Memory { .. }]);
    let m = ins.mnemonic();
    match m {
        Nop | Endbr64 | Pause | Prefetcht0 | Prefetcht1 | Prefetcht2 | Prefetchnta => {
            if ins.encoding() == iced_x86::EncodingKind::Legacy {
                Fast::Nop
            } else {
                Fast::No
            }
        }
        Jmp | Call | Jb | Jae | Je | Jne | Jbe | Ja | Js | Jns | Jp | Jnp | Jl | Jge | Jle | Jg
        | Jo | Jno
            if matches!(ins.op0_kind(), OpKind::NearBranch64) =>
        {
            let target = ins.near_branch_target();
            match m {
                Jmp => Fast::Jmp(target),
                Call => Fast::Call(target),
                _ => Fast::Jcc(ins.condition_code(), target),
            }
        }
        Ret if ins.code() == iced_x86::Code::Retnq => Fast::Ret,
        _ if !plain || !one_memory || ins.encoding() != iced_x86::EncodingKind::Legacy => Fast::No,
        Call | Jmp if count == 1 && operand_bits(ins, 0) == 64 => {
            if m == Call {
                Fast::CallIndirect
            } else {
                Fast::JmpIndirect
            }
        }
        Not => Fast::Not,
        Neg => Fast::Neg,
        Bswap if matches!(operands[0], Operand::Gpr { bits: 32 | 64, .. }) => Fast::Bswap,
        Push | Pop if count == 1 && operand_bits(ins, 0) == 64 => {
            if m == Push {
                Fast::Push
            } else {
                Fast::Pop
            }
        }
        Mov if count == 2 => Fast::Mov,
        Movzx => Fast::Movzx,
        Movsx | Movsxd => Fast::Movsx,
        Lea if matches!(operands[0], Operand::Gpr { .. }) => Fast::Lea,
        Add | Or | Adc | Sbb | And | Sub | Xor | Cmp | Test if count == 2 => match m {
            Add => Fast::Add,
            Or => Fast::Or,
            Adc => Fast::Adc,
            Sbb => Fast::Sbb,
            And => Fast::And,
            Sub => Fast::Sub,
            Xor => Fast::Xor,
            Cmp => Fast::Cmp,
            _ => Fast::Test,
        },
        Inc | Dec => Fast::IncDec(m == Dec),
        Shl | Shr | Sar | Rol | Ror if count == 2 => match m {
            Shl => Fast::Shl,
            Shr => Fast::Shr,
            Sar => Fast::Sar,
            Rol => Fast::Rol,
            _ => Fast::Ror,
        },
        Imul if count == 2 => Fast::Imul,
        Cmovo | Cmovno | Cmovb | Cmovae | Cmove | Cmovne | Cmovbe | Cmova | Cmovs | Cmovns
        | Cmovp | Cmovnp | Cmovl | Cmovge | Cmovle | Cmovg => Fast::Cmov(ins.condition_code()),
        Seto | Setno | Setb | Setae | Sete | Setne | Setbe | Seta | Sets | Setns | Setp | Setnp
        | Setl | Setge | Setle | Setg => Fast::Setcc(ins.condition_code()),
        _ => Fast::No,
    }
}

/// Whether an instruction of form `fast` with first operand `dst` may write memory
/// (any instruction the fast path does not run may).
fn may_write(fast: Fast, dst: Operand) -> bool {
    let stores = matches!(dst, Operand::Memory { .. });
    match fast {
        Fast::No | Fast::Push | Fast::Call(_) | Fast::CallIndirect => true,
        Fast::Cmp | Fast::Test => false,
        Fast::Mov
        | Fast::Movzx
        | Fast::Movsx
        | Fast::Add
        | Fast::Or
        | Fast::Adc
        | Fast::Sbb
        | Fast::And
        | Fast::Sub
        | Fast::Xor
        | Fast::IncDec(_)
        | Fast::Not
        | Fast::Neg
        | Fast::Shl
        | Fast::Shr
        | Fast::Sar
        | Fast::Rol
        | Fast::Ror
        | Fast::Imul
        | Fast::Cmov(_)
        | Fast::Setcc(_)
        | Fast::Pop => stores,
        Fast::Nop
        | Fast::Lea
        | Fast::Bswap
        | Fast::Jcc(..)
        | Fast::Jmp(_)
        | Fast::JmpIndirect
        | Fast::Ret => false,
    }
}

/// General-purpose register `index`'s bits `shift..shift + bits`.
pub(crate) fn gpr_get(state: &CpuState, index: u8, shift: u8, bits: u8) -> u64 {
    (state.gpr[index as usize] >> shift) & mask(bits.into())
}

/// Writes `value` to general-purpose register `index`'s bits `shift..shift + bits`:
/// 32-bit writes zero the upper half; narrower ones keep the rest.
pub(crate) fn gpr_set(state: &mut CpuState, index: u8, shift: u8, bits: u8, value: u64) {
    let slot = &mut state.gpr[index as usize];
    *slot = match bits {
        64 => value,
        32 => value & mask(32),
        _ => {
            let m = mask(bits.into()) << shift;
            (*slot & !m) | ((value << shift) & m)
        }
    };
}

impl Address {
    /// The offset (without a segment base): what LEA computes.
    pub fn offset(&self, state: &CpuState) -> u64 {
        let mut offset = self.displacement;
        if let Some(base) = self.base {
            offset = offset.wrapping_add(state.gpr[base as usize]);
        }
        if let Some((index, scale)) = self.index {
            offset = offset.wrapping_add(state.gpr[index as usize].wrapping_mul(scale.into()));
        }
        offset & self.mask
    }

    /// The linear address.
    pub fn linear(&self, state: &CpuState) -> u64 {
        let offset = self.offset(state);
        match self.segment {
            Some(seg) => offset.wrapping_add(state.seg[seg as usize].base),
            None => offset,
        }
    }
}

impl Decoded {
    /// Works out what execution needs of `ins`.
    pub fn new(ins: Instruction) -> Self {
        let operands = [operand(&ins, 0), operand(&ins, 1)];
        let ea = address(&ins);
        let fast = fast_form(&ins, &operands, ea.is_some());
        Self {
            fast,
            may_write: may_write(fast, operands[0]),
            handler: exec::classify(&ins),
            locked: exec::locked::is_locked(&ins),
            operands,
            ea,
            ins,
        }
    }
}

/// Width in bits of operand `i` of `ins` (64 for operands without one).
pub(crate) fn operand_bits(ins: &Instruction, i: u32) -> u32 {
    match ins.op_kind(i) {
        OpKind::Register => ins.op_register(i).size() as u32 * 8,
        OpKind::Memory => ins.memory_size().size() as u32 * 8,
        OpKind::Immediate8 => 8,
        OpKind::Immediate16 => 16,
        OpKind::Immediate32 => 32,
        _ => 64,
    }
}

/// Operand `i` of `ins`.
fn operand(ins: &Instruction, i: u32) -> Operand {
    if i >= ins.op_count() {
        return Operand::Other;
    }
    let bits = operand_bits(ins, i) as u8;
    match ins.op_kind(i) {
        OpKind::Register => {
            let reg = ins.op_register(i);
            if !reg.is_gpr() {
                return Operand::Other;
            }
            let high = matches!(
                reg,
                Register::AH | Register::CH | Register::DH | Register::BH
            );
            Operand::Gpr {
                index: reg.full_register().number() as u8,
                shift: if high { 8 } else { 0 },
                bits,
            }
        }
        OpKind::Memory => Operand::Memory { bits },
        kind if is_immediate(kind) => Operand::Immediate {
            value: ins.immediate(i),
            bits,
        },
        _ => Operand::Other,
    }
}

/// Whether an operand of `kind` is an immediate.
pub(crate) fn is_immediate(kind: OpKind) -> bool {
    matches!(
        kind,
        OpKind::Immediate8
            | OpKind::Immediate16
            | OpKind::Immediate32
            | OpKind::Immediate64
            | OpKind::Immediate8to16
            | OpKind::Immediate8to32
            | OpKind::Immediate8to64
            | OpKind::Immediate32to64
    )
}

/// `ins`'s memory operand's address recipe, if it has a plain memory operand with
/// 32- or 64-bit addressing.
fn address(ins: &Instruction) -> Option<Address> {
    if !ins.op_kinds().any(|k| k == OpKind::Memory) {
        return None;
    }
    let (base, index) = (ins.memory_base(), ins.memory_index());
    let register = |r: Register| -> Option<Option<u8>> {
        match r {
            Register::None => Some(None),
            r if r.is_gpr64() || r.is_gpr32() => Some(Some(r.full_register().number() as u8)),
            _ => None,
        }
    };
    let rip_relative = matches!(base, Register::RIP | Register::EIP);
    let base_number = if rip_relative { None } else { register(base)? };
    let index_number = register(index)?;
    let addr32 = base.size() == 4 || index.size() == 4;
    Some(Address {
        base: base_number,
        index: index_number.map(|n| (n, ins.memory_index_scale() as u8)),
        displacement: ins.memory_displacement64(),
        mask: if addr32 { mask(32) } else { u64::MAX },
        segment: match ins.memory_segment() {
            Register::FS => Some(4),
            Register::GS => Some(5),
            // Outside 64-bit mode every segment's base applies (flat ones add 0).
            seg if ins.code_size() != CodeSize::Code64 && seg.is_segment_register() => {
                Some(seg.number() as u8)
            }
            _ => None,
        },
    })
}
