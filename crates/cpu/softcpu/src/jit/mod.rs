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
mod forms;
pub mod host_tlb;
mod instructions;
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

/// What translated code calls back into and reads: its address goes to the code in r12.
#[repr(C)]
pub(crate) struct JitCall {
    /// Fills the host TLB for `(call, linear address, length | write << 8)`; returns
    /// the host address, or 0 if the access must go through the interpreter.
    pub fill: extern "C" fn(*mut JitCall, u64, u64) -> u64,
    /// The memory (`M` of [`fill`]).
    mem: *mut (),
    /// Instructions blocks may still run before chaining stops (each block subtracts
    /// what it ran; negative: stop). Chaining stops [`MAX_BLOCK`] short of the limit,
    /// so the last block always fits.
    pub left: i64,
    /// Bytes that become non-zero when the CPU must look for interrupts: chaining
    /// stops then.
    pub wake: [*const u8; 2],
    /// The jump cache of the current privilege: its entries.
    pub jumps: *const (u64, u64),
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

/// Wake bytes that never wake: for runs nothing interrupts (`user-run`).
pub(crate) const NEVER_WAKE: [*const u8; 2] = [&0, &0];

/// The wake bytes that matter to a CPU whose IF is `interruptible`: with IF clear a
/// pending maskable interrupt cannot be taken, so only an NMI stops a run. (IF
/// changes only in the interpreter, CLI, STI, POPF and IRETQ being system
/// instructions, so it holds for the whole of a translated run.)
pub(crate) fn effective_wake(wake: [*const u8; 2], interruptible: bool) -> [*const u8; 2] {
    if interruptible {
        wake
    } else {
        [NEVER_WAKE[0], wake[1]]
    }
}

/// Whether a byte in `wake` is set.
pub(crate) fn woken(wake: [*const u8; 2]) -> bool {
    wake.iter().any(|&byte| {
        // SAFETY: wake bytes are readable for as long as a run lasts (the contract of
        // `Cpu::run_block`'s caller, which translated code relies on too); other
        // threads set them, hence the volatile read.
        unsafe { std::ptr::read_volatile(byte) != 0 }
    })
}

/// log2 of the jump cache's entries.
pub(crate) const JUMP_BITS: u32 = 10;

/// Translated blocks by RIP, for chaining: entries are (negated RIP, host address of
/// the block's body), so that translated code compares without changing flags.
#[derive(Debug, Clone)]
pub(crate) struct JumpTable {
    entries: Box<[(u64, u64)]>,
}

/// A key no RIP has (see [`host_tlb`]'s tags).
const NO_RIP: u64 = 1 << 63;

impl Default for JumpTable {
    fn default() -> Self {
        Self {
            entries: vec![(NO_RIP, 0); 1 << JUMP_BITS].into_boxed_slice(),
        }
    }
}

impl JumpTable {
    fn insert(&mut self, rip: u64, body: u64) {
        self.entries[(rip as usize) & ((1 << JUMP_BITS) - 1)] = (rip.wrapping_neg(), body);
    }

    fn flush(&mut self) {
        self.entries.fill((NO_RIP, 0));
    }
}

/// The jump caches (kernel, user) and what they are valid for: translations made in
/// one buffer epoch, of code as it was at one code generation.
#[derive(Debug, Default)]
struct Jumps {
    tables: [JumpTable; 2],
    valid_for: Option<(u64, u32)>,
}

/// A block's translation state.
#[derive(Debug, Default)]
pub(crate) struct BlockCode {
    /// Runs so far (until translated).
    runs: Cell<u32>,
    /// The host code's entry and body addresses and the buffer epoch they belong to;
    /// entry 0: the block does not translate.
    code: Cell<Option<(u64, u64, u32)>>,
}

/// A translated block's entry: `(state, host TLB, call) -> interpret`.
type Entry = unsafe extern "C" fn(*mut CpuState, *mut HostTlb, *mut JitCall) -> u64;

/// How a run of translated code ended.
pub(crate) struct Ran {
    /// Instructions completed.
    pub done: u64,
    /// The instruction at RIP must run in the interpreter.
    pub interpret: bool,
}

/// One CPU's translator and its code.
#[derive(Debug)]
pub(crate) struct Jit {
    buffer: CodeBuffer,
    jumps: Jumps,
}

/// A CPU's translator, made when a block first asks to be translated.
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
    #[inline]
    pub fn get(&mut self) -> Option<&mut Jit> {
        if self.jit.is_none() && !self.refused {
            self.make();
        }
        self.jit.as_mut()
    }

    #[cold]
    #[inline(never)]
    fn make(&mut self) {
        self.jit = Jit::new();
        self.refused = self.jit.is_none();
    }
}

/// Whether the host CPU runs translated code as the guest's: its glue uses BMI2's
/// SHLX/SHRX, and guest POPCNT, LZCNT and CMPXCHG16B run as themselves (on a host
/// without LZCNT its encoding is BSR, which computes something else). Every current
/// Intel and AMD server part has them; a host or VM CPU model without them gets the
/// interpreter alone.
pub fn host_supports() -> bool {
    std::arch::is_x86_feature_detected!("bmi2")
        && std::arch::is_x86_feature_detected!("lzcnt")
        && std::arch::is_x86_feature_detected!("popcnt")
        && std::arch::is_x86_feature_detected!("cmpxchg16b")
}

impl Jit {
    /// A translator, if the host has what translated code runs on (see
    /// [`host_supports`]) and gives executable memory.
    pub fn new() -> Option<Self> {
        if !host_supports() {
            return None;
        }
        Some(Self {
            buffer: CodeBuffer::new()?,
            jumps: Jumps::default(),
        })
    }

    /// The entry and body of a block's host code (`instructions`, with translation
    /// state `code`), if it is hot and translates.
    fn code(&mut self, instructions: &[Decoded], code: &BlockCode) -> Option<(u64, u64)> {
        match code.code.get() {
            Some((0, _, _)) => return None,
            Some((at, body, epoch)) if epoch == self.buffer.epoch => return Some((at, body)),
            _ => {}
        }
        let runs = code.runs.get() + 1;
        code.runs.set(runs);
        if runs < HOT {
            return None;
        }
        let Some(host) = translate::Translator::translate(instructions, self.buffer.next_address())
        else {
            code.code.set(Some((0, 0, 0)));
            return None;
        };
        let epoch = self.buffer.epoch;
        if !self.buffer.make_room(host.bytes.len()) {
            return None;
        }
        let host = if self.buffer.epoch == epoch {
            host
        } else {
            // Emptied to make room: assembled for the wrong place, so assemble again.
            translate::Translator::translate(instructions, self.buffer.next_address())?
        };
        let at = self.buffer.push(&host.bytes);
        code.code.set(Some((at, at + host.body, self.buffer.epoch)));
        Some((at, at + host.body))
    }

    /// Runs the block at RIP (`instructions`, translation state `code`) as host code,
    /// if it is translated (or is now), and whatever translated blocks it chains to,
    /// for at most `budget` instructions, stopping early when a byte in `wake` is
    /// set. `generation` is the memory's code generation. `None`: not translated,
    /// interpret it.
    pub fn run<M: Memory>(
        &mut self,
        (instructions, code): (&[Decoded], &BlockCode),
        state: &mut CpuState,
        mem: &mut M,
        (budget, generation): (u64, Option<u64>),
        wake: [*const u8; 2],
    ) -> Option<Ran> {
        let tlb = mem.host_tlb()?;
        let (at, body) = self.code(instructions, code)?;
        let valid_for = generation.map(|g| (g, self.buffer.epoch));
        if valid_for.is_none() || valid_for != self.jumps.valid_for {
            self.jumps.tables.iter_mut().for_each(JumpTable::flush);
            self.jumps.valid_for = valid_for;
        }
        let jumps = &mut self.jumps.tables[usize::from(state.sys.cpl == 3)];
        jumps.insert(state.rip, body);
        let left = i64::try_from(budget).unwrap_or(i64::MAX) - crate::block::MAX_BLOCK as i64;
        let mut call = JitCall {
            fill: fill::<M>,
            mem: (mem as *mut M).cast(),
            left,
            wake,
            jumps: jumps.entries.as_ptr(),
        };
        // SAFETY: `at` is the start of host code `translate` assembled for that address
        // and `push` copied there, in the current epoch (the buffer has not been
        // emptied since), as is every body the jump cache holds (flushed with each new
        // epoch). The code follows the C ABI, saves the callee-saved registers it uses,
        // and touches only: `state` (exclusively borrowed here), the host TLB `tlb`
        // (owned by `mem`'s TLB, which nothing else uses during the call), `call` and
        // the jump table it points to, and guest RAM at host addresses the TLB or
        // `fill` gave, which stay mapped while `mem` lives. `wake` points at bytes
        // that outlive the call.
        let entry: Entry = unsafe { std::mem::transmute::<u64, Entry>(at) };
        // SAFETY: as above.
        let interpret = unsafe { entry(state, tlb, &mut call) } != 0;
        Some(Ran {
            done: (left - call.left) as u64,
            interpret,
        })
    }
}
