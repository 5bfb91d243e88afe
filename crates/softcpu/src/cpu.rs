//! Fetch, decode, execute.

use iced_x86::{Decoder, DecoderError, DecoderOptions, Instruction};

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

/// Decoded instructions kept, direct-mapped by address.
const DECODE_CACHE: usize = 1 << 14;

/// A decoded instruction and the versions of the code pages it came from.
#[derive(Debug, Clone, Copy)]
struct Decoded {
    instruction: Instruction,
    version: CodeVersion,
}

/// Versions of the first and last page of an instruction's bytes (the same page twice
/// unless it crosses a page boundary).
type CodeVersion = (u64, u64);

/// One software CPU. Its decode cache belongs to the memory it runs on: step it on one
/// [`Memory`] for its life.
#[derive(Debug, Clone)]
pub struct Cpu {
    /// Its registers.
    pub state: CpuState,
    /// Decode once: instructions by address, valid while their pages' versions hold.
    decoded: Vec<Option<Decoded>>,
    /// Translations, in system mode.
    pub(crate) tlb: crate::system::paging::Tlb,
    /// Where the last instruction started (a trap whose delivery faults restarts it).
    pub(crate) instruction_start: u64,
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

impl Cpu {
    /// A CPU with `state`.
    pub fn new(state: CpuState) -> Self {
        Self {
            state,
            decoded: vec![None; DECODE_CACHE],
            tlb: Default::default(),
            instruction_start: 0,
        }
    }

    /// The versions of the code pages under `[rip, rip + len)`.
    fn code_version(mem: &mut dyn Memory, rip: u64, len: u64) -> Option<CodeVersion> {
        let first = mem.code_version(rip)?;
        let last = rip.wrapping_add(len.max(1) - 1);
        if last >> 12 == rip >> 12 {
            return Some((first, first));
        }
        Some((first, mem.code_version(last)?))
    }

    /// The instruction at RIP, from the cache when its code is unchanged.
    fn fetch(&mut self, mem: &mut dyn Memory) -> Result<Instruction, Exception> {
        let rip = self.state.rip;
        let slot = (rip as usize ^ (rip >> 14) as usize) % DECODE_CACHE;
        if let Some(hit) = self.decoded[slot] {
            if hit.instruction.ip() == rip
                && Self::code_version(mem, rip, hit.instruction.len() as u64) == Some(hit.version)
            {
                return Ok(hit.instruction);
            }
        }
        let instruction = self.decode(mem)?;
        if let Some(version) = Self::code_version(mem, rip, instruction.len() as u64) {
            self.decoded[slot] = Some(Decoded {
                instruction,
                version,
            });
        }
        Ok(instruction)
    }

    /// Fetches and decodes the instruction at RIP.
    fn decode(&self, mem: &mut dyn Memory) -> Result<Instruction, Exception> {
        let rip = self.state.rip;
        let mut bytes = [0u8; MAX_INSTRUCTION];
        // An instruction may end just before unmapped memory: fetch as much as is there.
        let mut len = MAX_INSTRUCTION;
        while let Err(fault) = mem.read(rip, &mut bytes[..len], Access::Execute) {
            len -= 1;
            if len == 0 {
                return Err(fault.into());
            }
        }
        let bitness = if self.state.long_mode { 64 } else { 32 };
        let mut decoder = Decoder::with_ip(bitness, &bytes[..len], rip, DecoderOptions::NONE);
        let instruction = decoder.decode();
        if instruction.is_invalid() {
            // Either truly invalid, or cut short by unmapped memory.
            return Err(if decoder.last_error() == DecoderError::NoMoreBytes {
                MemoryFault::new(rip + len as u64, Access::Execute).into()
            } else {
                Exception::InvalidOpcode
            });
        }
        Ok(instruction)
    }

    /// Executes one instruction in user mode without a kernel (`user-run`): SYSCALL
    /// exits to the caller. On an exception, the state is as before it (a REP string
    /// instruction keeps the iterations it completed, as on hardware; a trap leaves RIP
    /// past the instruction).
    pub fn step(&mut self, mem: &mut dyn Memory) -> Result<Option<Exit>, Exception> {
        self.execute_one(mem, false)
    }

    /// Executes one instruction; `kernel`: a guest kernel handles SYSCALL.
    pub(crate) fn execute_one(
        &mut self,
        mem: &mut dyn Memory,
        kernel: bool,
    ) -> Result<Option<Exit>, Exception> {
        self.instruction_start = self.state.rip;
        let instruction = self.fetch(mem)?;
        let saved = Rollback {
            gpr: self.state.gpr,
            rip: self.state.rip,
            rflags: self.state.rflags,
        };
        self.state.rip = instruction.next_ip();
        let mut cx = Exec {
            st: &mut self.state,
            mem,
            ins: &instruction,
            keep_partial: false,
            locked: None,
            kernel,
        };
        let result = exec::execute(&mut cx);
        if let Err(e) = result {
            if !cx.keep_partial {
                self.state.gpr = saved.gpr;
                self.state.rflags = saved.rflags;
                if !e.is_trap() {
                    self.state.rip = saved.rip;
                }
            }
        }
        result
    }
}
