//! One software vCPU: runs slices of guest instructions in its own host thread, taking
//! interrupts from its local APIC between blocks, advancing the APIC timer between
//! slices, and sleeping while halted until an interrupt, its timer or a kick.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use gasang_memory::GuestMemory;
use gasang_softcpu::system::deliver::InterruptSource;
use gasang_softcpu::system::ram::GuestRam;
use gasang_softcpu::{Cpu, CpuState, Exit, Flags};
use gasang_vcpu::{BootCpuState, CpuTopology, IoHandler, Kick, Vcpu, VcpuError, VcpuExit};

use crate::clock;
use crate::interrupts::{Interrupts, VcpuSignals};
use crate::platform::MachineBus;

/// Instructions per slice: a kick or a timer is seen within one slice (well under a
/// millisecond).
const SLICE: u64 = 20_000;

/// The CPU's view of its local APIC.
struct ApicSource<'a>(&'a VcpuSignals);

impl InterruptSource for ApicSource<'_> {
    fn take(&mut self) -> Option<u8> {
        // A load per block; the lock only when something may be pending.
        if !self.0.attention.load(Ordering::Relaxed) {
            return None;
        }
        let mut apic = self.0.apic();
        let vector = apic.take();
        let more = apic.pending().is_some();
        self.0.attention.store(more, Ordering::SeqCst);
        vector
    }

    fn take_nmi(&mut self) -> bool {
        self.0.nmi.load(Ordering::Relaxed) && self.0.nmi.swap(false, Ordering::SeqCst)
    }

    fn wake_flags(&self) -> [*const u8; 2] {
        // An AtomicBool is one byte, 0 or 1.
        [self.0.attention.as_ptr().cast(), self.0.nmi.as_ptr().cast()]
    }
}

/// Kicks a software vCPU.
struct Kicker(Arc<VcpuSignals>);

impl Kick for Kicker {
    fn kick(&self) {
        self.0.kick();
    }
}

/// Whether a vCPU executes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunState {
    Running,
    /// In HLT, until an interrupt it takes.
    Halted,
    /// An application processor, from reset or after INIT, until a start-up IPI.
    WaitForSipi,
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
    interrupts: Arc<Interrupts>,
    /// Running, halted, or waiting for a start-up IPI.
    run_state: RunState,
    /// The kvmclock MSRs (wall clock, system time).
    kvmclock: [u64; 2],
}

impl SoftVcpu {
    /// vCPU `index`; the bootstrap processor (0) starts at `boot`.
    pub fn new(
        index: u32,
        (ram, memory): (GuestRam, GuestMemory),
        topology: CpuTopology,
        interrupts: Arc<Interrupts>,
        boot: &BootCpuState,
    ) -> Self {
        Self {
            index,
            cpu: Cpu::new(crate::boot::cpu_state(boot)),
            ram,
            _memory: memory,
            topology,
            interrupts,
            // Application processors wait for a start-up IPI from reset.
            run_state: if index == 0 {
                RunState::Running
            } else {
                RunState::WaitForSipi
            },
            kvmclock: [0; 2],
        }
    }

    fn signals(&self) -> &VcpuSignals {
        &self.interrupts.cpus[self.index as usize]
    }

    /// Advances the APIC timer, and on the bootstrap processor the PIT, to now;
    /// returns how long until either next expires.
    fn tick(&self) -> Option<Duration> {
        let pit = if self.index == 0 {
            let now = clock::now_ns();
            let next = self.interrupts.tick_pit(now);
            next.map(|at| Duration::from_nanos(at.saturating_sub(now)))
        } else {
            None
        };
        let me = self.signals();
        let mut apic = me.apic();
        let now = clock::tsc();
        apic.tick(now);
        if apic.pending().is_some() {
            me.attention.store(true, Ordering::SeqCst);
        }
        let apic = apic.timer_deadline().map(|at| clock::until(at, now));
        match (pit, apic) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// INIT and start-up IPIs: INIT makes an application processor wait for a start-up
    /// IPI, which starts it in real mode at the IPI's vector.
    fn startup(&mut self) {
        let (init, sipi) = self.signals().take_startup();
        if init && self.index != 0 {
            self.run_state = RunState::WaitForSipi;
        }
        if let (Some(vector), RunState::WaitForSipi) = (sipi, self.run_state) {
            tracing::debug!(vcpu = self.index, vector, "start-up IPI");
            self.cpu = Cpu::new(CpuState::startup_ipi(vector));
            self.run_state = RunState::Running;
        }
    }

    /// While halted: sleeps until an interrupt the CPU takes (an NMI, whatever IF
    /// says), the timer, a kick, or (waiting for one) a start-up IPI.
    fn wait(&mut self) {
        if self.run_state == RunState::WaitForSipi {
            self.signals().sleep(false, false, None);
            return;
        }
        let interruptible = self.cpu.state.rflags & Flags::IF != 0;
        let timeout = self.tick();
        let nmi = !self.cpu.state.sys.nmi_blocked;
        let signals = self.signals();
        if signals.interrupt_pending(interruptible, nmi) {
            self.run_state = RunState::Running;
            return;
        }
        signals.sleep(interruptible, nmi, timeout);
    }
}

impl Vcpu for SoftVcpu {
    fn index(&self) -> u32 {
        self.index
    }

    fn run(&mut self, io: &dyn IoHandler) -> Result<VcpuExit, VcpuError> {
        loop {
            if self.signals().kicked.swap(false, Ordering::SeqCst) {
                return Ok(VcpuExit::Interrupted);
            }
            self.startup();
            if self.run_state != RunState::Running {
                self.wait();
                continue;
            }
            self.tick();
            let interrupts = self.interrupts.clone();
            let mut bus = MachineBus {
                ram: &mut self.ram,
                io,
                topology: self.topology,
                index: self.index,
                interrupts: &interrupts,
                kvmclock: &mut self.kvmclock,
            };
            let mut source = ApicSource(&interrupts.cpus[self.index as usize]);
            match self.cpu.run_system(&mut bus, &mut source, SLICE).1 {
                None => {}
                Some(Exit::Halt) => self.run_state = RunState::Halted,
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
        Arc::new(Kicker(self.interrupts.cpus[self.index as usize].clone()))
    }
}
