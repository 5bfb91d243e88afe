//! Fetch, decode, execute.

use iced_x86::{Decoder, DecoderError, DecoderOptions, Instruction};

use crate::exec::{self, Exec};
use crate::memory::{Access, Memory, MemoryFault};
use crate::state::CpuState;

/// The longest x86 instruction.
const MAX_INSTRUCTION: usize = 15;

/// An exception the instruction raised; the guest's IDT (or, for `user-run`, a signal)
/// handles it. The instruction pointer still points at the faulting instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Exception {
    /// #DE: division by zero or a quotient too large.
    #[error("#DE divide error")]
    DivideError,
    /// #UD: an invalid or unimplemented instruction.
    #[error("#UD invalid opcode")]
    InvalidOpcode,
    /// #GP with its error code.
    #[error("#GP general protection ({0:#x})")]
    GeneralProtection(u32),
    /// #MF: an x87 exception the guest left unmasked, raised by the next waiting x87
    /// or MMX instruction.
    #[error("#MF x87 floating-point exception")]
    FloatingPoint,
    /// #XM: an SIMD floating-point exception the guest left unmasked in MXCSR.
    #[error("#XM SIMD floating-point exception")]
    SimdFloatingPoint,
    /// #PF at `addr`, with the page-fault error code.
    #[error("#PF page fault at {addr:#x} (error {error_code:#x})")]
    PageFault {
        /// CR2.
        addr: u64,
        /// P, W/R, U/S, RSVD, I/D bits.
        error_code: u32,
    },
}

impl From<MemoryFault> for Exception {
    fn from(fault: MemoryFault) -> Self {
        let error_code = match fault.access {
            Access::Read => 0,
            Access::Write => 1 << 1,
            Access::Execute => 1 << 4,
        };
        Exception::PageFault {
            addr: fault.addr,
            error_code,
        }
    }
}

/// Why execution stopped for the caller to act.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// `hlt`: wait for an interrupt.
    Halt,
    /// `syscall`: the system call layer (or the guest kernel's entry) takes over.
    Syscall,
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
                MemoryFault {
                    addr: rip + len as u64,
                    access: Access::Execute,
                }
                .into()
            } else {
                Exception::InvalidOpcode
            });
        }
        Ok(instruction)
    }

    /// Executes one instruction. On an exception, the state is as before it (a REP
    /// string instruction keeps the iterations it completed, as on hardware).
    pub fn step(&mut self, mem: &mut dyn Memory) -> Result<Option<Exit>, Exception> {
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
        };
        let result = exec::execute(&mut cx);
        if result.is_err() && !cx.keep_partial {
            self.state.gpr = saved.gpr;
            self.state.rip = saved.rip;
            self.state.rflags = saved.rflags;
        }
        result
    }
}
