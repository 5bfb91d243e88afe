//! Operands: registers, memory, immediates; effective addresses; conditions.

use iced_x86::{OpKind, Register};

use super::Exec;
use crate::cpu::Exception;
use crate::decoded::{gpr_get, gpr_set, operand_bits, Operand};
use crate::flags::mask;
use crate::memory::Access;

/// AH, CH, DH, BH: bits 8..16 of RAX, RCX, RDX, RBX.
fn is_high_byte(reg: Register) -> bool {
    matches!(
        reg,
        Register::AH | Register::CH | Register::DH | Register::BH
    )
}

/// The accumulator of a `bits`-wide operation: AL, AX, EAX or RAX.
pub fn accumulator(bits: u32) -> Register {
    match bits {
        8 => Register::AL,
        16 => Register::AX,
        32 => Register::EAX,
        _ => Register::RAX,
    }
}

/// Bytes in an integer access of `bits`; anything else is not implemented (#UD).
fn integer_width(bits: u32) -> Result<usize, Exception> {
    match bits {
        8 | 16 | 32 | 64 => Ok((bits / 8) as usize),
        _ => Err(Exception::InvalidOpcode),
    }
}

/// `reg` if it is a general-purpose register; the integer instructions take no other
/// (segment, control and vector registers belong to instructions not implemented yet).
fn gpr(reg: Register) -> Result<Register, Exception> {
    if reg.is_gpr() {
        Ok(reg)
    } else {
        Err(Exception::InvalidOpcode)
    }
}

impl Exec<'_> {
    /// A general-purpose register's value, zero-extended.
    pub fn reg(&self, reg: Register) -> u64 {
        let full = self.st.gpr[reg.full_register().number()];
        match reg.size() {
            1 if is_high_byte(reg) => (full >> 8) & 0xff,
            size => full & mask(size as u32 * 8),
        }
    }

    /// Writes a general-purpose register: 32-bit writes zero the upper half, 8- and
    /// 16-bit writes keep the rest.
    pub fn set_reg(&mut self, reg: Register, value: u64) {
        let slot = &mut self.st.gpr[reg.full_register().number()];
        *slot = match reg.size() {
            8 => value,
            4 => value & 0xffff_ffff,
            1 if is_high_byte(reg) => (*slot & !0xff00) | ((value & 0xff) << 8),
            size => {
                let m = mask(size as u32 * 8);
                (*slot & !m) | (value & m)
            }
        };
    }

    /// Width of operand `i` in bits.
    pub fn bits(&self, i: u32) -> u32 {
        match self.d.operands.get(i as usize) {
            Some(Operand::Gpr { bits, .. })
            | Some(Operand::Memory { bits })
            | Some(Operand::Immediate { bits, .. }) => u32::from(*bits),
            _ => operand_bits(self.ins, i),
        }
    }

    /// The memory operand's linear address.
    pub fn ea(&self) -> u64 {
        match self.d.ea {
            Some(a) => a.linear(self.st),
            None => self.ea_uncommon(),
        }
    }

    /// The linear address of a memory operand [`Decoded`] has no recipe for.
    fn ea_uncommon(&self) -> u64 {
        let ins = self.ins;
        let base = ins.memory_base();
        let offset = if matches!(base, Register::RIP | Register::EIP) {
            // iced has already added the next instruction's address.
            ins.memory_displacement64()
        } else {
            let index = ins.memory_index();
            let base_value = if base == Register::None {
                0
            } else {
                self.reg(base)
            };
            let index_value = if index == Register::None {
                0
            } else {
                self.reg(index)
            };
            base_value
                .wrapping_add(index_value.wrapping_mul(u64::from(ins.memory_index_scale())))
                .wrapping_add(ins.memory_displacement64())
        };
        let index = ins.memory_index();
        let offset = if base.size() == 4 || index.size() == 4 {
            offset & 0xffff_ffff
        } else if base.size() == 2 || index.size() == 2 {
            offset & 0xffff // 16-bit addressing: BX, BP, SI, DI
        } else {
            offset
        };
        match ins.memory_segment() {
            Register::FS => offset.wrapping_add(self.st.seg[4].base),
            Register::GS => offset.wrapping_add(self.st.seg[5].base),
            // Outside 64-bit mode every segment's base applies.
            seg if !self.st.long_mode && seg.is_segment_register() => {
                offset.wrapping_add(self.st.seg[seg.number()].base)
            }
            _ => offset,
        }
    }

    /// Reads `bits` bits at linear `addr`. Widths other than 8, 16, 32 and 64 belong to
    /// instructions not implemented here (far pointers, x87, vectors): #UD.
    pub fn load(&mut self, addr: u64, bits: u32) -> Result<u64, Exception> {
        let len = integer_width(bits)?;
        if self.locked.is_some() {
            return Ok(self.load_wide(addr, len)? as u64);
        }
        Ok(self.mem.load(addr, len, Access::Read)?)
    }

    /// Writes the low `bits` bits of `value` at linear `addr`.
    pub fn store(&mut self, addr: u64, bits: u32, value: u64) -> Result<(), Exception> {
        let len = integer_width(bits)?;
        if self.locked.is_some() {
            return self.store_wide(addr, len, u128::from(value));
        }
        Ok(self.mem.store(addr, len, value)?)
    }

    /// Operand `i`'s value, zero-extended (immediates sign-extended to their operand).
    pub fn read(&mut self, i: u32) -> Result<u64, Exception> {
        match self.d.operands.get(i as usize) {
            Some(&Operand::Gpr { index, shift, bits }) => {
                return Ok(gpr_get(self.st, index, shift, bits))
            }
            Some(&Operand::Memory { bits }) => return self.load(self.ea(), bits.into()),
            Some(&Operand::Immediate { value, .. }) => return Ok(value),
            _ => {}
        }
        match self.ins.op_kind(i) {
            OpKind::Register => Ok(self.reg(gpr(self.ins.op_register(i))?)),
            OpKind::Memory => {
                let (addr, bits) = (self.ea(), self.bits(i));
                self.load(addr, bits)
            }
            _ => Ok(self.ins.immediate(i)),
        }
    }

    /// Writes operand `i` (a register or memory).
    pub fn write(&mut self, i: u32, value: u64) -> Result<(), Exception> {
        match self.d.operands.get(i as usize) {
            Some(&Operand::Gpr { index, shift, bits }) => {
                gpr_set(self.st, index, shift, bits, value);
                return Ok(());
            }
            Some(&Operand::Memory { bits }) => return self.store(self.ea(), bits.into(), value),
            _ => {}
        }
        match self.ins.op_kind(i) {
            OpKind::Register => {
                self.set_reg(gpr(self.ins.op_register(i))?, value);
                Ok(())
            }
            OpKind::Memory => {
                let (addr, bits) = (self.ea(), self.bits(i));
                self.store(addr, bits, value)
            }
            _ => Err(Exception::InvalidOpcode),
        }
    }

    /// Replaces the flags in `which` with those in `flags`.
    pub fn set_flags(&mut self, which: u64, flags: u64) {
        self.st.rflags = (self.st.rflags & !which) | (flags & which);
    }

    /// Whether flag `f` is set.
    pub fn flag(&self, f: u64) -> bool {
        self.st.rflags & f != 0
    }

    /// Evaluates the instruction's condition code against RFLAGS.
    pub fn condition(&self) -> bool {
        crate::flags::condition(self.ins.condition_code(), self.st.rflags)
    }
}
