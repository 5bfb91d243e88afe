//! `gasang user-run`: a static x86-64 Linux program on gasang's software CPU, in user
//! mode, through a small Linux system call layer (as qemu-user does).
//!
//! Its first purpose is testing the software CPU against the real one; later it helps
//! tell a CPU bug from a device bug when a guest kernel misbehaves.

pub mod elf;
mod memory;
mod stack;
mod syscall;

use std::path::{Path, PathBuf};

use gasang_softcpu::{Cpu, CpuState, Exception, Exit, Gpr, Memory};

pub use elf::ElfError;

use crate::memory::{UserMemory, PAGE};
use crate::syscall::{Kernel, Outcome};

/// The program could not be started, or died.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// The program file cannot be read.
    #[error("cannot read program '{path}'")]
    Read {
        /// Its path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Not a static x86-64 executable.
    #[error("cannot run '{path}'")]
    Elf {
        /// Its path.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: ElfError,
    },
    /// The program took an exception it has no handler for: it dies as from a signal.
    #[error("the program was killed by {signal} ({exception} at RIP {rip:#x})")]
    Killed {
        /// The signal a Linux kernel would send.
        signal: &'static str,
        /// Its number (the shell's exit status is 128 + it).
        number: i32,
        /// What the CPU raised.
        exception: Exception,
        /// Where.
        rip: u64,
    },
}

impl UserError {
    /// The exit status a shell would show for this failure.
    pub fn exit_status(&self) -> i32 {
        match self {
            UserError::Killed { number, .. } => 128 + number,
            _ => 2,
        }
    }
}

/// Loads `exe`'s segments from `file`; returns the end of the highest (the heap start).
fn load_segments(mem: &mut UserMemory, exe: &elf::Executable, file: &[u8]) -> u64 {
    let mut end = 0;
    for seg in &exe.segments {
        let start = seg.vaddr & !(PAGE - 1);
        let stop = (seg.vaddr + seg.mem_size).next_multiple_of(PAGE);
        if !mem.is_mapped(start, stop - start) {
            mem.map(start, stop - start);
        }
        let bytes = &file[seg.offset as usize..(seg.offset + seg.file_size) as usize];
        mem.write(seg.vaddr, bytes).expect("mapped just above");
        end = end.max(stop);
    }
    end
}

/// Runs `program` with `args` (argv[0] included) and `env`; returns its exit status.
pub fn run(program: &Path, args: &[Vec<u8>], env: &[Vec<u8>]) -> Result<i32, UserError> {
    let file = std::fs::read(program).map_err(|source| UserError::Read {
        path: program.to_path_buf(),
        source,
    })?;
    let exe = elf::parse(&file).map_err(|source| UserError::Elf {
        path: program.to_path_buf(),
        source,
    })?;
    let mut mem = UserMemory::new();
    let heap = load_segments(&mut mem, &exe, &file);
    let rsp = stack::build(&mut mem, &exe, args, env);
    let mut cpu = Cpu::new(CpuState::long_mode(exe.entry));
    cpu.state.set_reg(Gpr::Rsp, rsp);
    let exe = std::fs::canonicalize(program).unwrap_or_else(|_| program.to_path_buf());
    let mut kernel = Kernel::new(mem, heap, exe.into_os_string().into_encoded_bytes());
    let stats = std::env::var_os("GASANG_USER_STATS").is_some();
    let mut executed: u64 = 0;
    loop {
        let (done, result) = cpu.run(&mut kernel.mem, u64::MAX);
        executed += done;
        match result {
            Ok(None) => {}
            Ok(Some(Exit::Syscall)) => {
                let next = cpu.state.rip;
                match kernel.syscall(&mut cpu.state) {
                    Outcome::Exit(status) => {
                        if stats {
                            eprintln!("user-run: {executed} instructions executed");
                        }
                        return Ok(status);
                    }
                    Outcome::Return(value) => cpu.state.set_reg(Gpr::Rax, value as u64),
                }
                // SYSCALL leaves the return address in RCX and RFLAGS in R11.
                cpu.state.set_reg(Gpr::Rcx, next);
                cpu.state.set_reg(Gpr::R11, cpu.state.rflags);
            }
            // HLT is privileged: user mode gets #GP, hence SIGSEGV.
            Ok(Some(Exit::Halt | Exit::Shutdown)) => {
                return Err(killed(Exception::GeneralProtection(0), &cpu))
            }
            Err(exception) => return Err(killed(exception, &cpu)),
        }
    }
}

fn killed(exception: Exception, cpu: &Cpu) -> UserError {
    let (signal, number) = match exception {
        Exception::DivideError | Exception::SimdFloatingPoint | Exception::FloatingPoint => {
            ("SIGFPE", libc::SIGFPE)
        }
        Exception::InvalidOpcode => ("SIGILL", libc::SIGILL),
        Exception::Breakpoint => ("SIGTRAP", libc::SIGTRAP),
        _ => ("SIGSEGV", libc::SIGSEGV),
    };
    UserError::Killed {
        signal,
        number,
        exception,
        rip: cpu.state.rip,
    }
}
