//! One host thread per vCPU, and the gate that pauses them all.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use gasang_vcpu::{Kick, Vcpu, VcpuExit};

use crate::exit::{ExitLatch, ExitReason};
use crate::io::MachineIo;

/// The running vCPU threads.
pub struct VcpuThreads {
    threads: Vec<(Arc<dyn Kick>, JoinHandle<()>)>,
    stop: Arc<AtomicBool>,
    gate: Arc<PauseGate>,
}

/// How long a pause waits for every vCPU to stop (a KVM vCPU leaves the guest within
/// microseconds of a kick; a software one within a translated block).
const PAUSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Pauses and resumes the vCPUs: a paused vCPU thread parks here between runs.
pub struct PauseGate {
    /// (paused, vCPUs parked).
    state: Mutex<(bool, usize)>,
    changed: Condvar,
    kicks: Vec<Arc<dyn Kick>>,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for PauseGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PauseGate")
            .field("state", &*self.lock())
            .finish()
    }
}

impl PauseGate {
    fn lock(&self) -> std::sync::MutexGuard<'_, (bool, usize)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the vCPUs are (to be) paused.
    pub fn paused(&self) -> bool {
        self.lock().0
    }

    /// Stops every vCPU and waits until each is parked; false if one did not stop
    /// within the timeout (it parks when it does).
    pub fn pause(&self) -> bool {
        self.lock().0 = true;
        for kick in &self.kicks {
            kick.kick();
        }
        let all = self.kicks.len();
        let state = self.lock();
        let (state, _) = self
            .changed
            .wait_timeout_while(state, PAUSE_TIMEOUT, |s| s.1 < all && s.0)
            .unwrap_or_else(|e| e.into_inner());
        state.1 >= all
    }

    /// Lets the vCPUs run again.
    pub fn resume(&self) {
        self.lock().0 = false;
        self.changed.notify_all();
    }

    /// Parks the calling vCPU thread while paused (and not stopping).
    fn park(&self) {
        let mut state = self.lock();
        if !state.0 {
            return;
        }
        state.1 += 1;
        self.changed.notify_all();
        while state.0 && !self.stop.load(Ordering::SeqCst) {
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        state.1 -= 1;
    }

    fn wake_for_stop(&self) {
        let _guard = self.lock();
        self.changed.notify_all();
    }
}

impl VcpuThreads {
    /// Starts one thread per vCPU, named `vcpu N`.
    pub fn spawn(
        vcpus: Vec<Box<dyn Vcpu>>,
        io: &Arc<MachineIo>,
        exit: &Arc<ExitLatch>,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let gate = Arc::new(PauseGate {
            state: Mutex::new((false, 0)),
            changed: Condvar::new(),
            kicks: vcpus.iter().map(|vcpu| vcpu.kicker()).collect(),
            stop: stop.clone(),
        });
        let mut started = Self {
            threads: Vec::new(),
            stop: stop.clone(),
            gate: gate.clone(),
        };
        for vcpu in vcpus {
            let kick = vcpu.kicker();
            let (io, exit, gate) = (io.clone(), exit.clone(), gate.clone());
            let handle = std::thread::Builder::new()
                .name(format!("vcpu {}", vcpu.index()))
                .spawn(move || run_vcpu(vcpu, &io, &exit, &gate))?;
            started.threads.push((kick, handle));
        }
        Ok(started)
    }

    /// The gate that pauses these vCPUs.
    pub fn gate(&self) -> Arc<PauseGate> {
        self.gate.clone()
    }

    /// Stops every vCPU and waits for its thread.
    pub fn stop(mut self) {
        self.stop_all();
    }

    fn stop_all(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.gate.wake_for_stop();
        for (kick, _) in &self.threads {
            kick.kick();
        }
        for (_, handle) in self.threads.drain(..) {
            if handle.join().is_err() {
                tracing::error!("a vCPU thread panicked");
            }
        }
    }
}

impl Drop for VcpuThreads {
    fn drop(&mut self) {
        self.stop_all();
    }
}

fn run_vcpu(mut vcpu: Box<dyn Vcpu>, io: &MachineIo, exit: &ExitLatch, gate: &PauseGate) {
    let index = vcpu.index();
    while !gate.stop.load(Ordering::SeqCst) {
        gate.park();
        if gate.stop.load(Ordering::SeqCst) {
            break;
        }
        let reason = match vcpu.run(io) {
            Ok(VcpuExit::Interrupted) => continue,
            Ok(VcpuExit::TripleFault) => ExitReason::TripleFault { vcpu: index },
            Ok(VcpuExit::Reset) => ExitReason::Reset,
            Ok(VcpuExit::PowerOff) => ExitReason::PowerOff,
            Err(e) => ExitReason::VcpuFailed(error_chain(&e)),
        };
        exit.exit(reason);
        break;
    }
}

/// "outer: cause: root cause".
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
