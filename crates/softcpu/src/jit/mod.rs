//! The translator: hot blocks become host code, which runs the block's integer
//! instructions natively on host registers and guest RAM (see [`translate`] for how),
//! and hands the instruction it cannot run to the interpreter.
//!
//! Translated code reaches guest memory through a host TLB ([`host_tlb`]) kept beside
//! the CPU's own TLB and flushed with it; on a miss it calls back into Rust
//! ([`JitCall::fill`]), which translates the address as the interpreter would and
//! enters the page if it is RAM the access may touch directly. Pages holding decoded
//! code never get write entries, so a write to code still goes through the
//! interpreter, which notices it.

mod buffer;
pub mod host_tlb;
mod translate;

use std::cell::Cell;

use buffer::CodeBuffer;
use host_tlb::HostTlb;

use crate::decoded::Decoded;
use crate::memory::Memory;
use crate::state::CpuState;

/// Runs of a block before it is translated: most code runs a few times at boot and
/// never again, and translating costs as much as interpreting it hundreds of times.
const HOT: u32 = 64;

/// What translated code calls back into: its address goes to the code in r12.
#[repr(C)]
pub(crate) struct JitCall {
    /// Fills the host TLB for `(call, linear address, length | write << 8)`; returns
    /// the host address, or 0 if the access must go through the interpreter.
    pub fill: extern "C" fn(*mut JitCall, u64, u64) -> u64,
    /// The memory (`M` of [`fill`]).
    mem: *mut (),
}

/// The fill helper for memory `M`.
extern "C" fn fill<M: Memory>(call: *mut JitCall, addr: u64, kind: u64) -> u64 {
    // SAFETY: `call` is the JitCall `Jit::run` made for this run, whose `mem` points at
    // the `M` it borrows mutably for the whole run; translated code passes it back
    // unchanged, and nothing else uses that memory while the code runs.
    let mem = unsafe { &mut *(*call).mem.cast::<M>() };
    let len = (kind & 0xff) as usize;
    mem.host_fill(addr, len, kind & 0x100 != 0).unwrap_or(0)
}

/// A block's translation state.
#[derive(Debug, Default)]
pub(crate) struct BlockCode {
    /// Runs so far (until translated).
    runs: Cell<u32>,
    /// The host code's address and the buffer epoch it belongs to; address 0: the
    /// block does not translate.
    code: Cell<Option<(u64, u32)>>,
}

/// A translated block's entry: `(state, host TLB, call) -> done << 1 | interpret`.
type Entry = unsafe extern "C" fn(*mut CpuState, *mut HostTlb, *mut JitCall) -> u64;

/// One CPU's translator and its code.
#[derive(Debug)]
pub(crate) struct Jit {
    buffer: CodeBuffer,
}

/// A CPU's translator, made when system mode first runs (`user-run` has no host TLB
/// and never translates).
#[derive(Debug, Default)]
pub(crate) struct JitSlot {
    jit: Option<Jit>,
    /// The host refused executable memory: do not ask again.
    refused: bool,
}

impl Clone for JitSlot {
    /// A copy starts empty: translations are only a cache.
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl JitSlot {
    /// The translator, made now if need be.
    pub fn get(&mut self) -> Option<&mut Jit> {
        if self.jit.is_none() && !self.refused {
            self.jit = Jit::new();
            self.refused = self.jit.is_none();
        }
        self.jit.as_mut()
    }
}

impl Jit {
    /// A translator, if the host gives executable memory.
    pub fn new() -> Option<Self> {
        Some(Self {
            buffer: CodeBuffer::new()?,
        })
    }

    /// The host code of a block (`instructions`, with translation state `code`), if
    /// it is hot and translates.
    fn code(&mut self, instructions: &[Decoded], code: &BlockCode) -> Option<u64> {
        match code.code.get() {
            Some((0, _)) => return None,
            Some((at, epoch)) if epoch == self.buffer.epoch => return Some(at),
            _ => {}
        }
        let runs = code.runs.get() + 1;
        code.runs.set(runs);
        if runs < HOT {
            return None;
        }
        let Some(host) = translate::Translator::translate(instructions, self.buffer.next_address())
        else {
            code.code.set(Some((0, 0)));
            return None;
        };
        let epoch = self.buffer.epoch;
        if !self.buffer.make_room(host.len()) {
            return None;
        }
        let host = if self.buffer.epoch == epoch {
            host
        } else {
            // Emptied to make room: assembled for the wrong place, so assemble again.
            translate::Translator::translate(instructions, self.buffer.next_address())?
        };
        let at = self.buffer.push(&host);
        code.code.set(Some((at, self.buffer.epoch)));
        Some(at)
    }

    /// Runs the block's translation on `state` and `mem`, if it has one (or gets one
    /// now). Returns `done << 1 | interpret`: how many of its instructions completed
    /// and whether the next must be interpreted; `None`: not translated, interpret it.
    pub fn run<M: Memory>(
        &mut self,
        instructions: &[Decoded],
        code: &BlockCode,
        state: &mut CpuState,
        mem: &mut M,
    ) -> Option<u64> {
        let tlb = mem.host_tlb()?;
        let at = self.code(instructions, code)?;
        let mut call = JitCall {
            fill: fill::<M>,
            mem: (mem as *mut M).cast(),
        };
        // SAFETY: `at` is the start of host code `translate` assembled for that address
        // and `push` copied there, in the current epoch (the buffer has not been
        // emptied since). It follows the C ABI, saves the callee-saved registers it
        // uses, and touches only: `state` (exclusively borrowed here), the host TLB
        // `tlb` (owned by `mem`'s TLB, which nothing else uses during the call), and
        // guest RAM at host addresses the TLB or `fill` gave, which stay mapped while
        // `mem` lives. Its calls to `fill` get `call`, alive for the whole call.
        let entry: Entry = unsafe { std::mem::transmute::<u64, Entry>(at) };
        // SAFETY: as above.
        Some(unsafe { entry(state, tlb, &mut call) })
    }
}
