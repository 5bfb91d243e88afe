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
    if !compare && !cx.flag(Flags::DF) && p.mask == u64::MAX {
        if let Some(result) = bulk(cx, bits, &p) {
            return result;
        }
    }
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

/// REP MOVS and REP STOS forwards with 64-bit addressing, a page at a time straight on
/// guest RAM (clearing and copying pages is most of what kernels use them for). `None`
/// if not a MOVS or STOS; element by element (the loop in [`execute`]) wherever a
/// page is not RAM the memory hands out (a device, a fault, code), and for the bytes
/// of an overlap that element-wise copying defines.
fn bulk(cx: &mut Exec<'_>, bits: u32, p: &Pointers) -> Option<Result<(), Exception>> {
    let movs = match cx.ins.mnemonic() {
        Mnemonic::Movsb | Mnemonic::Movsw | Mnemonic::Movsd | Mnemonic::Movsq => true,
        Mnemonic::Stosb | Mnemonic::Stosw | Mnemonic::Stosd | Mnemonic::Stosq => false,
        _ => return None,
    };
    let size = u64::from(bits / 8);
    let mut budget = BATCH;
    while budget > 0 {
        let count = cx.st.reg(Gpr::Rcx);
        if count == 0 {
            return Some(Ok(()));
        }
        let dest = cx.st.reg(Gpr::Rdi);
        let src = cx.source(p);
        let room = |addr: u64| (0x1000 - (addr & 0xfff)) / size;
        let mut n = count.min(budget).min(room(dest));
        if movs {
            n = n.min(room(src));
            if dest > src && dest - src < n * size {
                n = (dest - src) / size; // copying forwards reads bytes it wrote
            }
        }
        let bytes = (n * size) as usize;
        let to = (n > 0)
            .then(|| cx.mem.host_fill(dest, bytes, true))
            .flatten();
        let from = if movs {
            cx.mem.host_fill(src, bytes, false)
        } else {
            Some(0)
        };
        let (Some(to), Some(from)) = (to, from) else {
            break; // element by element from here
        };
        if movs {
            // SAFETY: `host_fill` gave both: `bytes` of mapped guest RAM each, within a
            // page; `copy` allows the overlap left (the destination below the source,
            // or apart by at least `bytes`).
            unsafe { std::ptr::copy(from as *const u8, to as *mut u8, bytes) };
            cx.st
                .set_reg(Gpr::Rsi, cx.st.reg(Gpr::Rsi).wrapping_add(n * size));
        } else {
            fill(to, cx.reg(accumulator(bits)), size as usize, n as usize);
        }
        cx.st.set_reg(Gpr::Rdi, dest.wrapping_add(n * size));
        cx.st.set_reg(Gpr::Rcx, count - n);
        budget -= n;
    }
    if budget == 0 {
        if cx.st.reg(Gpr::Rcx) != 0 {
            cx.st.rip = cx.ins.ip(); // more next step
        }
        return Some(Ok(()));
    }
    None
}

/// Stores `n` copies of the `size` low bytes of `value` at host address `to`.
fn fill(to: u64, value: u64, size: usize, n: usize) {
    let to = to as *mut u8;
    let bytes = value.to_le_bytes();
    if size == 1 {
        // SAFETY: the caller's `host_fill` gave `n` bytes of mapped guest RAM at `to`.
        unsafe { std::ptr::write_bytes(to, bytes[0], n) };
        return;
    }
    for i in 0..n {
        // SAFETY: the caller's `host_fill` gave `n * size` bytes of mapped guest RAM at
        // `to`; this writes the i-th element's bytes.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), to.add(i * size), size) };
    }
}
