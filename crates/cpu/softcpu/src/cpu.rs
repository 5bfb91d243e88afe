//! Fetch, decode, execute.

use iced_x86::{Decoder, DecoderError, DecoderOptions, Instruction};

use crate::block::{self, Block, BlockCache, MAX_BLOCK};
use crate::decoded::{Decoded, Fast};
pub use crate::exception::Exception;
use crate::exec::{self, Exec};
use crate::memory::{Access, Memory, MemoryFault};
use crate::state::CpuState;

/// The longest x86 instruction.
const MAX_INSTRUCTION: usize = 15;

/// Why execution stopped for the caller to act.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// `hlt`: wait for an interrupt.
    Halt,
    /// `syscall` in user mode without a kernel (`user-run`): the system call layer
    /// takes over.
    Syscall,
    /// A triple fault: the processor shuts down (the machine resets).
    Shutdown,
}

/// One software CPU. Its block cache belongs to the memory it runs on: run it on one
/// [`Memory`] for its life.
#[derive(Debug, Clone)]
pub struct Cpu {
    /// Its registers.
    pub state: CpuState,
    /// Decode once: blocks of decoded instructions by address.
    blocks: BlockCache,
    /// Translations, in system mode.
    pub(crate) tlb: crate::system::paging::Tlb,
    /// Where the last instruction started (a trap whose delivery faults restarts it).
    pub(crate) instruction_start: u64,
    /// Translates hot blocks to host code, on memories that keep a host TLB.
    jit: crate::jit::JitSlot,
}

impl Default for Cpu {
    fn default() -> Self {
        Self::new(CpuState::default())
    }
}

/// The registers an instruction may change before it faults: restored on an exception.
/// (No implemented instruction writes other state before it can fault: SSE instructions
/// write their XMM register after every access that can fault. Instructions that write
/// segment, vector or system state must keep that true or extend this.)
struct Rollback {
    gpr: [u64; 16],
    rip: u64,
    rflags: u64,
}

/// How a run of instructions ended.
pub type RunResult = Result<Option<Exit>, Exception>;

impl Cpu {
    /// A CPU with `state`.
    pub fn new(state: CpuState) -> Self {
        Self {
            state,
            blocks: BlockCache::default(),
            tlb: Default::default(),
            instruction_start: 0,
            jit: Default::default(),
        }
    }

    /// Executes one instruction in user mode without a kernel (`user-run`): SYSCALL
    /// exits to the caller. On an exception, the state is as before it (a REP string
    /// instruction keeps the iterations it completed, as on hardware; a trap leaves RIP
    /// past the instruction).
    pub fn step(&mut self, mem: &mut dyn Memory) -> RunResult {
        self.run_mode(&mut Dyn(mem), 1, false, crate::jit::NEVER_WAKE)
            .1
    }

    /// Executes up to `limit` instructions in user mode without a kernel, as
    /// [`Cpu::step`] does one at a time, stopping early at an exit or exception.
    /// Returns how many instructions completed, and how the run ended (`Ok(None)`:
    /// the limit was reached).
    /// Generic over the memory, so that the fast path reaches it without dynamic
    /// dispatch.
    pub fn run<M: Memory>(&mut self, mem: &mut M, limit: u64) -> (u64, RunResult) {
        self.run_mode(mem, limit, false, crate::jit::NEVER_WAKE)
    }

    /// Executes at most `limit` instructions in system mode (a guest kernel handles
    /// SYSCALL): one interpreted block, or translated blocks chained for as long as
    /// no byte in `wake` is set (then at most one interpreted block); the caller looks
    /// for interrupts between.
    pub(crate) fn run_block<M: Memory>(
        &mut self,
        mem: &mut M,
        limit: u64,
        wake: [*const u8; 2],
    ) -> (u64, RunResult) {
        self.run_mode(mem, limit, true, wake)
    }

    /// Runs blocks until `limit` instructions have completed or one exits or faults;
    /// in system mode (`kernel`), as [`Cpu::run_block`] says. Hot blocks run
    /// translated where the memory keeps a host TLB ([`Memory::host_tlb`]).
    fn run_mode<M: Memory>(
        &mut self,
        mem: &mut M,
        limit: u64,
        kernel: bool,
        wake: [*const u8; 2],
    ) -> (u64, RunResult) {
        // After translated code left an instruction to the interpreter.
        let mut interpret_next = false;
        let mut executed = 0;
        // The memory's code generation changes only when memory is written (checked
        // after every instruction that may write) or outside a run.
        let mut generation = mem.code_generation();
        while executed < limit {
            self.instruction_start = self.state.rip;
            let uncached;
            let key = (
                self.state.code_address(self.state.rip),
                block::mode(&self.state),
            );
            let block = match self.blocks.find(key, &mut *mem, generation) {
                Some(slot) => self.blocks.get(slot),
                None => match self.decode_block(&mut *mem) {
                    Err(e) => return (executed, Err(e)),
                    Ok((block, true)) => {
                        let slot = self.blocks.insert(block);
                        self.blocks.get(slot)
                    }
                    Ok((block, false)) => {
                        uncached = block;
                        &uncached
                    }
                },
            };
            let budget = limit - executed;
            let fits = block.instructions.len() as u64 <= budget;
            if !std::mem::take(&mut interpret_next) && fits {
                let wake = crate::jit::effective_wake(wake, self.interruptible());
                let translated = self.jit.get().and_then(|jit| {
                    let block = (&block.instructions[..], &block.jit);
                    jit.run(block, &mut self.state, mem, (budget, generation), wake)
                });
                if let Some(ran) = translated {
                    executed += ran.done;
                    // The instruction at RIP may be the interpreter's: its block next.
                    interpret_next = ran.interpret;
                    if kernel && !ran.interpret && self.must_look(wake) {
                        break; // the caller looks for interrupts
                    }
                    continue;
                }
            }
            let room = usize::try_from(budget).unwrap_or(usize::MAX);
            let run = &block.instructions[..block.instructions.len().min(room)];
            for d in run {
                let next = d.ins.next_ip();
                if d.fast != Fast::No {
                    self.state.rip = next;
                    if let Err(e) = exec::fast::execute(&mut self.state, mem, d) {
                        self.state.rip = d.ins.ip();
                        return (executed, Err(e));
                    }
                } else {
                    self.instruction_start = self.state.rip;
                    match execute(&mut self.state, &mut *mem, d, kernel) {
                        Ok(None) => {}
                        Ok(Some(exit)) => return (executed + 1, Ok(Some(exit))),
                        Err(e) => return (executed, Err(e)),
                    }
                }
                executed += 1;
                // A branch taken, or code written under the block: find the next block.
                if self.state.rip != next {
                    break;
                }
                if d.may_write {
                    let now = mem.code_generation();
                    if now != generation {
                        generation = now;
                        break;
                    }
                }
            }
            if kernel && self.must_look(wake) {
                break;
            }
        }
        (executed, Ok(None))
    }

    /// Whether IF lets a maskable interrupt in.
    fn interruptible(&self) -> bool {
        self.state.rflags & crate::flags::Flags::IF != 0
    }

    /// In system mode, between blocks: whether the caller must look for an interrupt
    /// now, because one the CPU could take may be pending (a wake byte that matters
    /// with this IF is set) or an interrupt shadow must end after one instruction.
    /// Otherwise blocks run on without the caller's per-block checks.
    fn must_look(&self, wake: [*const u8; 2]) -> bool {
        self.state.sys.interrupt_shadow
            || crate::jit::woken(crate::jit::effective_wake(wake, self.interruptible()))
    }

    /// Decodes the block at RIP; also says whether it may be cached (the memory tracks
    /// code versions).
    fn decode_block(&self, mem: &mut dyn Memory) -> Result<(Block, bool), Exception> {
        // IPs (what iced and the registers see), and the linear address of the first.
        let start_ip = self.state.rip;
        let start = self.state.code_address(start_ip);
        let generation = mem.code_generation();
        let first = self.decode(mem, start_ip)?;
        let cacheable = generation.is_some() && mem.code_version(start).is_some();
        let mut next = first.next_ip();
        let mut instructions = vec![Decoded::new(first)];
        // Without a cache, decoding ahead is wasted: one instruction then.
        let mut last = first;
        while cacheable
            && !block::ends_block(&last)
            && instructions.len() < MAX_BLOCK
            && self.state.code_address(next) >> 12 == start >> 12
        {
            let Ok(ins) = self.decode(mem, next) else {
                break; // Left for when execution gets there: it may never.
            };
            instructions.push(Decoded::new(ins));
            (last, next) = (ins, ins.next_ip());
        }
        let len = next.wrapping_sub(start_ip);
        let version = block::code_version(mem, start, len);
        let place = (start, len, block::mode(&self.state));
        match version {
            Some(version) if cacheable => {
                Ok((Block::new(instructions, place, version, generation), true))
            }
            _ => Ok((Block::new(instructions, place, (0, 0), None), false)),
        }
    }

    /// Fetches and decodes the instruction at `rip` (CS's base added outside 64-bit
    /// mode).
    fn decode(&self, mem: &mut dyn Memory, rip: u64) -> Result<Instruction, Exception> {
        let mut bytes = [0u8; MAX_INSTRUCTION];
        let at = self.state.code_address(rip);
        // An instruction may end just before unmapped memory: fetch as much as is there.
        // The first fault is the one to raise if the instruction needs the bytes past it:
        // the paging unit's, with its address and error code (U/S, P, RSVD, I/D).
        let mut len = MAX_INSTRUCTION;
        let mut first_fault = None;
        while let Err(fault) = mem.read(at, &mut bytes[..len], Access::Execute) {
            first_fault.get_or_insert(fault);
            len -= 1;
            if len == 0 {
                return Err(fault.into());
            }
        }
        let bitness = self.state.code_bits();
        let mut decoder = Decoder::with_ip(bitness, &bytes[..len], rip, DecoderOptions::NONE);
        let instruction = decoder.decode();
        if instruction.is_invalid() {
            // Either truly invalid, or cut short by unmapped memory.
            return Err(match first_fault {
                Some(fault) if decoder.last_error() == DecoderError::NoMoreBytes => fault.into(),
                _ => Exception::InvalidOpcode,
            });
        }
        Ok(instruction)
    }
}

/// Executes the decoded instruction `d` (at RIP). On an exception the registers are
/// rolled back (see [`Cpu::step`]).
fn execute(state: &mut CpuState, mem: &mut dyn Memory, d: &Decoded, kernel: bool) -> RunResult {
    let saved = Rollback {
        gpr: state.gpr,
        rip: state.rip,
        rflags: state.rflags,
    };
    state.rip = d.ins.next_ip();
    let mut cx = Exec {
        st: state,
        mem,
        ins: &d.ins,
        d,
        keep_partial: false,
        locked: None,
        kernel,
    };
    let result = exec::execute(&mut cx);
    if let Err(e) = result {
        if e == Exception::InvalidOpcode {
            exec::note_invalid_opcode(&d.ins);
        }
        if !cx.keep_partial {
            state.gpr = saved.gpr;
            state.rflags = saved.rflags;
            if !e.is_trap() {
                state.rip = saved.rip;
            }
        }
    }
    result
}

/// A trait object as a [`Memory`] of its own type, for the generic executor.
struct Dyn<'a>(&'a mut dyn Memory);

impl Memory for Dyn<'_> {
    fn read(&mut self, addr: u64, buf: &mut [u8], access: Access) -> Result<(), MemoryFault> {
        self.0.read(addr, buf, access)
    }
    fn write(&mut self, addr: u64, buf: &[u8]) -> Result<(), MemoryFault> {
        self.0.write(addr, buf)
    }
    fn load(&mut self, addr: u64, len: usize, access: Access) -> Result<u64, MemoryFault> {
        self.0.load(addr, len, access)
    }
    fn store(&mut self, addr: u64, len: usize, value: u64) -> Result<(), MemoryFault> {
        self.0.store(addr, len, value)
    }
    fn read_for_update(&mut self, addr: u64, len: usize) -> Result<u128, MemoryFault> {
        self.0.read_for_update(addr, len)
    }
    fn compare_exchange(
        &mut self,
        addr: u64,
        len: usize,
        old: u128,
        new: u128,
    ) -> Result<bool, MemoryFault> {
        self.0.compare_exchange(addr, len, old, new)
    }
    fn probe(&mut self, addr: u64) -> Result<(), MemoryFault> {
        self.0.probe(addr)
    }
    fn control(&mut self, state: &CpuState, flush: crate::system::paging::Flush) {
        self.0.control(state, flush)
    }
    fn code_version(&mut self, addr: u64) -> Option<u64> {
        self.0.code_version(addr)
    }
    fn code_generation(&self) -> Option<u64> {
        self.0.code_generation()
    }
    fn platform(&mut self) -> Option<&mut dyn crate::system::paging::PhysicalMemory> {
        self.0.platform()
    }
    fn host_tlb(&mut self) -> Option<*mut crate::HostTlb> {
        self.0.host_tlb()
    }
    fn host_fill(&mut self, addr: u64, len: usize, write: bool) -> Option<u64> {
        self.0.host_fill(addr, len, write)
    }
}
