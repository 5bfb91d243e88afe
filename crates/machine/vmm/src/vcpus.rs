//! One host thread per vCPU.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use gasang_vcpu::{Kick, Vcpu, VcpuExit};

use crate::exit::{ExitLatch, ExitReason};
use crate::io::MachineIo;

/// The running vCPU threads.
pub struct VcpuThreads {
    threads: Vec<(Arc<dyn Kick>, JoinHandle<()>)>,
    stop: Arc<AtomicBool>,
}

impl VcpuThreads {
    /// Starts one thread per vCPU, named `vcpu N`.
    pub fn spawn(
        vcpus: Vec<Box<dyn Vcpu>>,
        io: &Arc<MachineIo>,
        exit: &Arc<ExitLatch>,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut started = Self {
            threads: Vec::new(),
            stop: stop.clone(),
        };
        for vcpu in vcpus {
            let kick = vcpu.kicker();
            let (io, exit, stop) = (io.clone(), exit.clone(), stop.clone());
            let handle = std::thread::Builder::new()
                .name(format!("vcpu {}", vcpu.index()))
                .spawn(move || run_vcpu(vcpu, &io, &exit, &stop))?;
            started.threads.push((kick, handle));
        }
        Ok(started)
    }

    /// Stops every vCPU and waits for its thread.
    pub fn stop(mut self) {
        self.stop_all();
    }

    fn stop_all(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
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

fn run_vcpu(mut vcpu: Box<dyn Vcpu>, io: &MachineIo, exit: &ExitLatch, stop: &AtomicBool) {
    let index = vcpu.index();
    while !stop.load(Ordering::SeqCst) {
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
