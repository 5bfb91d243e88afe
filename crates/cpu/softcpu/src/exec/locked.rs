//! LOCK-prefixed read-modify-write instructions (and XCHG with memory, always locked),
//! atomic with respect to other CPUs sharing the memory.
//!
//! The memory operand is read once ([`crate::Memory::read_for_update`]), the instruction runs
//! against that value with its store captured, and the result is published with one
//! [`crate::Memory::compare_exchange`]. If another CPU changed the operand meanwhile, the
//! registers are restored and the instruction runs again on the new value, so every
//! locked instruction is one atomic step, as on hardware. (A failed CMPXCHG, which
//! hardware writes back unchanged, publishes nothing: indistinguishable.)

use iced_x86::{Instruction, Mnemonic, OpKind};

use super::Exec;
use crate::cpu::{Exception, Exit};

/// The memory operand of a locked instruction while it runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LockedOperand {
    /// Its linear address.
    pub addr: u64,
    /// The value read.
    pub value: u128,
    /// What the instruction stored, if anything.
    pub written: Option<u128>,
}

/// Whether `ins` must run atomically.
pub fn is_locked(ins: &Instruction) -> bool {
    ins.has_lock_prefix()
        || (ins.mnemonic() == Mnemonic::Xchg
            && (0..ins.op_count()).any(|i| ins.op_kind(i) == OpKind::Memory))
}

/// Instructions LOCK may prefix (with a memory destination); on others it is #UD.
fn lockable(m: Mnemonic) -> bool {
    use Mnemonic::*;
    matches!(
        m,
        Add | Adc
            | And
            | Btc
            | Btr
            | Bts
            | Cmpxchg
            | Cmpxchg8b
            | Cmpxchg16b
            | Dec
            | Inc
            | Neg
            | Not
            | Or
            | Sbb
            | Sub
            | Xor
            | Xadd
            | Xchg
    )
}

/// The address and size of the locked operand. BTS/BTR/BTC with a register bit offset
/// address a bit string: the operand is the unit holding the bit.
fn target(cx: &Exec<'_>) -> (u64, usize) {
    let ins = cx.ins;
    let len = ins.memory_size().size();
    let addr = if matches!(
        ins.mnemonic(),
        Mnemonic::Btc | Mnemonic::Btr | Mnemonic::Bts
    ) && ins.op_kind(1) == OpKind::Register
    {
        super::data::bit_string_address(cx, ins.op_register(1))
    } else {
        cx.ea()
    };
    (addr, len)
}

/// Runs the locked instruction `cx.ins` through `run` (the ordinary dispatch).
pub fn execute(
    cx: &mut Exec<'_>,
    run: fn(&mut Exec<'_>) -> Result<Option<Exit>, Exception>,
) -> Result<Option<Exit>, Exception> {
    let memory_destination = cx.ins.op_kind(0) == OpKind::Memory
        || (cx.ins.mnemonic() == Mnemonic::Xchg && cx.ins.op_kind(1) == OpKind::Memory);
    if !lockable(cx.ins.mnemonic()) || !memory_destination {
        return Err(Exception::InvalidOpcode);
    }
    let (addr, len) = target(cx);
    if cx.ins.mnemonic() == Mnemonic::Cmpxchg16b && !addr.is_multiple_of(16) {
        return Err(Exception::GeneralProtection(0));
    }
    let (gpr, rflags) = (cx.st.gpr, cx.st.rflags);
    loop {
        let old = cx.mem.read_for_update(addr, len)?;
        cx.st.gpr = gpr;
        cx.st.rflags = rflags;
        cx.locked = Some(LockedOperand {
            addr,
            value: old,
            written: None,
        });
        let result = run(cx);
        let operand = cx.locked.take().expect("set above, taken only here");
        let exit = result?;
        let new = operand.written.unwrap_or(old);
        if new == old || cx.mem.compare_exchange(addr, len, old, new)? {
            return Ok(exit);
        }
    }
}

impl Exec<'_> {
    /// Reads `len` bytes at `addr`: the locked operand's captured value if this is it.
    pub(super) fn load_wide(&mut self, addr: u64, len: usize) -> Result<u128, Exception> {
        if let Some(locked) = self.locked.filter(|l| l.addr == addr) {
            let value = locked.written.unwrap_or(locked.value);
            return Ok(value & width_mask(len));
        }
        let mut buf = [0u8; 16];
        self.mem
            .read(addr, &mut buf[..len], crate::memory::Access::Read)?;
        Ok(u128::from_le_bytes(buf))
    }

    /// Writes `len` bytes at `addr`, or captures them if this is the locked operand.
    pub(super) fn store_wide(
        &mut self,
        addr: u64,
        len: usize,
        value: u128,
    ) -> Result<(), Exception> {
        if let Some(locked) = self.locked.as_mut().filter(|l| l.addr == addr) {
            locked.written = Some(value & width_mask(len));
            return Ok(());
        }
        self.mem.write(addr, &value.to_le_bytes()[..len])?;
        Ok(())
    }
}

fn width_mask(len: usize) -> u128 {
    if len >= 16 {
        u128::MAX
    } else {
        (1u128 << (8 * len)) - 1
    }
}
