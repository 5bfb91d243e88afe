//! Which guest instructions translate, and how their registers map to the host's.

use iced_x86::code_asm::*;
use iced_x86::{Code, Instruction, Mnemonic, OpKind, Register};

use crate::decoded::{Address, Decoded, Operand};

/// Guest register numbers that live in their own host register.
const IDENTITY: [u8; 5] = [0, 1, 2, 3, 5];
/// Host registers for the other guest registers an instruction names.
const SPARE: [u8; 4] = [8, 9, 10, 11];

/// Host register `n` as a 64-bit assembler register.
pub(super) fn host64(n: u8) -> AsmRegister64 {
    [
        rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15,
    ][n as usize]
}

/// Host register `n` as a 32-bit assembler register.
pub(super) fn host32(n: u8) -> AsmRegister32 {
    [
        eax, ecx, edx, ebx, esp, ebp, esi, edi, r8d, r9d, r10d, r11d, r12d, r13d, r14d, r15d,
    ][n as usize]
}

/// iced's register number `n` at `bytes` wide (low bytes for 1).
pub(super) fn sized(n: u8, bytes: usize) -> Option<Register> {
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
pub(super) struct Mapping(pub(super) Vec<(u8, u8)>);

impl Mapping {
    /// The host register for guest register `g`, assigned on first use; `None` when
    /// the spares run out.
    pub(super) fn host(&mut self, g: u8) -> Option<u8> {
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
pub(super) enum Stop {
    /// The translator does not run it: found before anything of it was emitted, so
    /// the block ends there and the interpreter takes over.
    Unsupported,
    /// The assembler refused what was emitted: the block is not translated at all.
    Failed,
}

pub(super) use Stop::Unsupported;

pub(super) type Step = Result<(), Stop>;

impl From<IcedError> for Stop {
    fn from(_: IcedError) -> Self {
        Stop::Failed
    }
}

/// Whether the host can encode `ins` (the guest's AH with a spare register, which
/// needs REX, it cannot).
pub(super) fn encodable(ins: &Instruction) -> Step {
    match iced_x86::Encoder::new(64).encode(ins, 0) {
        Ok(_) => Ok(()),
        Err(_) => Err(Unsupported),
    }
}

/// Whether [`Translator::address`] can form `ea`: 64-bit addressing, a 32-bit
/// displacement with registers, and no segment base but FS's or GS's.
pub(super) fn check_address(ea: &Address, with_segment: bool) -> Step {
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
pub(super) fn push_pop_register(d: &Decoded) -> Result<u8, Stop> {
    match d.operands[0] {
        Operand::Gpr {
            index, bits: 64, ..
        } => Ok(index),
        _ => Err(Unsupported),
    }
}

/// Guest registers an instruction uses without naming them.
pub(super) fn implicit_registers(m: Mnemonic, operands: u32) -> &'static [u8] {
    use Mnemonic::*;
    match m {
        Mul | Imul if operands == 1 => &[0, 2],
        Div | Idiv | Cwd | Cdq | Cqo => &[0, 2],
        Cbw | Cwde | Cdqe | Cmpxchg | Lahf | Sahf => &[0],
        _ => &[],
    }
}

/// Whether the instruction writes its memory operand `i` (else it only reads it).
pub(super) fn writes_memory(ins: &Instruction, i: u32) -> bool {
    i == 0
        && !matches!(
            ins.mnemonic(),
            Mnemonic::Cmp | Mnemonic::Test | Mnemonic::Bt
        )
}

/// Integer instructions whose host execution is the guest's: no faults on the host
/// (DIV and IDIV only behind `Translator::divide_guard`), no state outside GPRs,
/// memory and arithmetic flags, nothing this CPU does not advertise.
pub(super) fn runs_as_itself(ins: &Instruction) -> bool {
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
            | Div
            | Idiv
    ) && (!matches!(ins.mnemonic(), Div | Idiv) || matches!(first_operand_bytes(ins), 4 | 8))
}

/// The width in bytes of `ins`'s first operand, a register or memory (DIV's divisor:
/// the guard handles 32 and 64 bits).
pub(super) fn first_operand_bytes(ins: &Instruction) -> usize {
    match ins.op0_kind() {
        OpKind::Register => ins.op0_register().size(),
        _ => ins.memory_size().size(),
    }
}
