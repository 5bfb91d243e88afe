//! Decoded basic blocks, cached by start address and checked against the versions of
//! the code pages they were decoded from, so that code written after decoding
//! (self-modifying code, a loader reusing memory) is decoded afresh.
//!
//! A block runs from its start to the first instruction that may transfer control, is
//! at most [`MAX_BLOCK`] instructions long and starts every instruction on its first
//! page. The executor runs a block's instructions one after another and leaves it early
//! when one branches or the code pages change under it. A JIT would translate the same
//! blocks.

use iced_x86::{FlowControl, Instruction, Mnemonic, OpKind, Register};

use crate::decoded::Decoded;
use crate::memory::Memory;

/// The most instructions in one block.
pub(crate) const MAX_BLOCK: usize = 32;

/// Blocks kept, direct-mapped by start address. A kernel's boot runs on the order of
/// 100,000 distinct blocks: with 4,096 slots, Debian's kernel decoded two million blocks
/// on its way to init (most of them again and again) and took half again as long. A
/// userland has many more, as every process maps its libraries at addresses of its
/// own (ASLR): Debian's systemd reached its login prompt in 80 s with 2^16 slots, 64 s
/// with 2^18, 55 s with 2^20 and no sooner with 2^22 (peak RSS 589, 713, 781 and
/// 846 MiB). The slots themselves are 8 MiB.
const SLOTS: usize = 1 << 20;

/// Versions of the first and last page a block's bytes lie on (the same page twice
/// unless its last instruction crosses into the next page).
pub(crate) type CodeVersion = (u64, u64);

/// What decoding and fetching depended on besides the code bytes: the code size (64-bit
/// or not) and the privilege fetches were checked at (user or not). A block is found
/// only in the mode it was decoded in.
pub(crate) type Mode = u8;

/// The [`Mode`] of `state`.
pub(crate) fn mode(state: &crate::CpuState) -> Mode {
    (state.code_bits() / 16) as u8 | (u8::from(state.sys.cpl == 3) << 3)
}

/// A run of decoded instructions.
#[derive(Debug)]
pub(crate) struct Block {
    /// The first instruction's linear address (its IP plus CS's base outside 64-bit
    /// mode).
    pub start: u64,
    /// Its bytes.
    len: u64,
    /// The mode it was decoded in.
    pub mode: Mode,
    /// Its code pages' versions when decoded.
    pub version: CodeVersion,
    /// The memory's code generation when the versions were last found current.
    pub generation: Option<u64>,
    /// Its instructions, in order.
    pub instructions: Box<[Decoded]>,
    /// Its translation to host code, once hot.
    pub jit: crate::jit::BlockCode,
}

impl Block {
    /// A block of `instructions` (at least one), `len` bytes at linear `start`,
    /// decoded in `mode` from code at `version`.
    pub fn new(
        instructions: Vec<Decoded>,
        (start, len, mode): (u64, u64, Mode),
        version: CodeVersion,
        generation: Option<u64>,
    ) -> Self {
        Self {
            start,
            len,
            mode,
            version,
            generation,
            instructions: instructions.into_boxed_slice(),
            jit: Default::default(),
        }
    }

    /// Whether the block still matches the code in `mem`, whose code generation is
    /// `generation`. Cheap while that has not moved since the block was last found
    /// current; otherwise the pages' versions are compared, and a match is remembered
    /// for the new generation.
    #[inline]
    fn is_current(&mut self, mem: &mut dyn Memory, generation: Option<u64>) -> bool {
        if generation.is_some() && generation == self.generation {
            return true;
        }
        if code_version(mem, self.start, self.len) != Some(self.version) {
            return false;
        }
        self.generation = generation;
        true
    }
}

/// Whether decoding a block ends after `ins`: it may not fall through to the next
/// instruction, or it holds interrupts off for one instruction (STI, MOV SS, POP SS),
/// which the system-mode loop runs on its own before it looks for interrupts again.
pub(crate) fn ends_block(ins: &Instruction) -> bool {
    ins.flow_control() != FlowControl::Next
        || ins.mnemonic() == Mnemonic::Sti
        || (ins.op0_kind() == OpKind::Register && ins.op0_register() == Register::SS)
}

/// The versions of the code pages under `[addr, addr + len)`; `None` if the memory
/// cannot tell (nothing is cached then).
pub(crate) fn code_version(mem: &mut dyn Memory, addr: u64, len: u64) -> Option<CodeVersion> {
    let first = mem.code_version(addr)?;
    let last = addr.wrapping_add(len.max(1) - 1);
    if last >> 12 == addr >> 12 {
        return Some((first, first));
    }
    Some((first, mem.code_version(last)?))
}

/// Blocks by start address.
#[derive(Debug, Default)]
pub(crate) struct BlockCache {
    slots: Vec<Option<Box<Block>>>,
}

impl Clone for BlockCache {
    /// A copy starts empty: blocks are only a cache.
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl BlockCache {
    /// Fibonacci hashing: the address times 2^64 / phi, top bits. (The XOR of the
    /// address and its page number, before, put kernel blocks that differ in their
    /// middle bits in one slot, and pairs of them evicted each other in loops.)
    fn slot(addr: u64) -> usize {
        (addr.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - SLOTS.trailing_zeros())) as usize
    }

    /// The slot of the current block starting at `addr` in `mode`, if cached, given
    /// the memory's current code generation. A stale one is dropped.
    #[inline]
    pub fn find(
        &mut self,
        (addr, mode): (u64, Mode),
        mem: &mut dyn Memory,
        generation: Option<u64>,
    ) -> Option<usize> {
        let index = Self::slot(addr);
        let slot = self.slots.get_mut(index)?;
        let current = match slot.as_deref_mut() {
            Some(block) if block.start == addr && block.mode == mode => {
                block.is_current(mem, generation)
            }
            _ => return None,
        };
        if !current {
            *slot = None;
            return None;
        }
        Some(index)
    }

    /// The block in `slot`, as [`BlockCache::find`] or [`BlockCache::insert`] returned.
    pub fn get(&self, slot: usize) -> &Block {
        self.slots[slot]
            .as_deref()
            .expect("slots come from find or insert, which fill them")
    }

    /// Keeps `block`, replacing whatever shared its slot; returns the slot.
    pub fn insert(&mut self, block: Block) -> usize {
        if self.slots.is_empty() {
            self.slots.resize_with(SLOTS, || None);
        }
        let index = Self::slot(block.start);
        self.slots[index] = Some(Box::new(block));
        index
    }
}
