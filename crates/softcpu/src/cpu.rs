//! Fetch, decode, execute.

use iced_x86::{Decoder, DecoderOptions, Instruction};

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

/// One software CPU.
#[derive(Debug, Clone, Default)]
pub struct Cpu {
    /// Its registers.
    pub state: CpuState,
}

impl Cpu {
    /// A CPU with `state`.
    pub fn new(state: CpuState) -> Self {
        Self { state }
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
            return Err(if len < MAX_INSTRUCTION {
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
        let instruction = self.decode(mem)?;
        let saved = self.state.clone();
        self.state.rip = instruction.next_ip();
        let mut cx = Exec {
            st: &mut self.state,
            mem,
            ins: &instruction,
            keep_partial: false,
        };
        let result = exec::execute(&mut cx);
        if result.is_err() && !cx.keep_partial {
            self.state = saved;
        }
        result
    }
}
