//! One software vCPU: runs slices of guest instructions in its own host thread,
//! checking between slices whether another thread kicked it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use gasang_memory::GuestMemory;
use gasang_softcpu::system::deliver::NoInterrupts;
use gasang_softcpu::system::ram::GuestRam;
use gasang_softcpu::{Cpu, Exit};
use gasang_vcpu::{BootCpuState, CpuTopology, IoHandler, Kick, Vcpu, VcpuError, VcpuExit};

use crate::platform::MachineBus;

/// Instructions per slice: a kick is seen within one slice (well under a millisecond).
const SLICE: u64 = 20_000;

/// Wakes a vCPU: a flag it checks between slices, and a condition it sleeps on while
/// halted.
#[derive(Debug, Default)]
struct Kicker {
    kicked: AtomicBool,
    lock: Mutex<()>,
    wake: Condvar,
}

impl Kick for Kicker {
    fn kick(&self) {
        self.kicked.store(true, Ordering::SeqCst);
        // Taking the lock orders this with a sleeper's check of the flag.
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.wake.notify_all();
    }
}

impl Kicker {
    /// Sleeps until kicked (nothing else can wake a CPU on this backend yet).
    fn sleep(&self) {
        let mut guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        while !self.kicked.load(Ordering::SeqCst) {
            guard = self.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// A vCPU on the software CPU.
#[derive(Debug)]
pub struct SoftVcpu {
    index: u32,
    cpu: Cpu,
    ram: GuestRam,
    /// Keeps `ram`'s mapping alive.
    _memory: GuestMemory,
    topology: CpuTopology,
    kicker: Arc<Kicker>,
    /// Halted, or an application processor waiting for INIT/SIPI (not implemented
    /// yet: they wait for good).
    sleeping: bool,
}

impl SoftVcpu {
    /// vCPU `index`; the bootstrap processor (0) starts at `boot`.
    pub fn new(
        index: u32,
        (ram, memory): (GuestRam, GuestMemory),
        topology: CpuTopology,
        boot: &BootCpuState,
    ) -> Self {
        Self {
            index,
            cpu: Cpu::new(crate::boot::cpu_state(boot)),
            ram,
            _memory: memory,
            topology,
            kicker: Arc::default(),
            sleeping: index != 0,
        }
    }
}

impl Vcpu for SoftVcpu {
    fn index(&self) -> u32 {
        self.index
    }

    fn run(&mut self, io: &dyn IoHandler) -> Result<VcpuExit, VcpuError> {
        loop {
            if self.kicker.kicked.swap(false, Ordering::SeqCst) {
                return Ok(VcpuExit::Interrupted);
            }
            if self.sleeping {
                self.kicker.sleep();
                continue;
            }
            let mut bus = MachineBus {
                ram: &mut self.ram,
                io,
                topology: self.topology,
                index: self.index,
            };
            match self.cpu.run_system(&mut bus, &mut NoInterrupts, SLICE).1 {
                None => {}
                Some(Exit::Halt) => {
                    tracing::debug!(vcpu = self.index, rip = self.cpu.state.rip, "halted");
                    self.sleeping = true;
                }
                Some(Exit::Shutdown) => return Ok(VcpuExit::TripleFault),
                Some(Exit::Syscall) => {
                    return Err(VcpuError::Internal {
                        index: self.index,
                        reason: "SYSCALL left the CPU in system mode (a software CPU bug)".into(),
                    })
                }
            }
        }
    }

    fn kicker(&self) -> Arc<dyn Kick> {
        self.kicker.clone()
    }
}
