//! A KVM vCPU and its run loop.

use std::sync::Arc;

use gasang_vcpu::{AccelError, BootCpuState, IoHandler, Kick, Vcpu, VcpuError, VcpuExit};
use kvm_bindings::{
    CpuId, KVM_SYSTEM_EVENT_CRASH, KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN,
};
use kvm_ioctls::{VcpuExit as KvmExit, VcpuFd, VmFd};

use crate::kick::KickState;
use crate::regs::{apply_boot_sregs, boot_fpu, boot_msrs, boot_regs, set_lint};

/// A vCPU on KVM.
#[derive(Debug)]
pub struct KvmVcpu {
    fd: VcpuFd,
    index: u32,
    kick: Arc<KickState>,
    bound: bool,
}

impl KvmVcpu {
    /// Creates vCPU `index` with `cpuid`. vCPU 0 starts at `boot`; the others stay in
    /// KVM's wait-for-SIPI state until the guest wakes them.
    pub fn new(
        vm: &VmFd,
        index: u32,
        cpuid: &CpuId,
        boot: &BootCpuState,
    ) -> Result<Self, AccelError> {
        let err = |what: &str| {
            let what = format!("cannot set up vCPU {index}: {what} failed");
            move |e| AccelError::new(what, e)
        };
        let fd = vm
            .create_vcpu(u64::from(index))
            .map_err(err("KVM_CREATE_VCPU"))?;
        fd.set_cpuid2(cpuid).map_err(err("KVM_SET_CPUID2"))?;
        let msrs = boot_msrs();
        let written = fd.set_msrs(&msrs).map_err(err("KVM_SET_MSRS"))?;
        if written != msrs.as_slice().len() {
            return Err(AccelError::msg(format!(
                "cannot set up vCPU {index}: KVM accepted only {written} of {} boot MSRs",
                msrs.as_slice().len()
            )));
        }
        set_lint(&fd).map_err(err("KVM_SET_LAPIC"))?;
        if index == 0 {
            fd.set_fpu(&boot_fpu()).map_err(err("KVM_SET_FPU"))?;
            fd.set_regs(&boot_regs(boot)).map_err(err("KVM_SET_REGS"))?;
            let mut sregs = fd.get_sregs().map_err(err("KVM_GET_SREGS"))?;
            apply_boot_sregs(&mut sregs, boot);
            fd.set_sregs(&sregs).map_err(err("KVM_SET_SREGS"))?;
        }
        Ok(Self {
            fd,
            index,
            kick: Arc::default(),
            bound: false,
        })
    }

    /// One KVM_RUN; `Ok(None)` when the exit was handled and the guest can go on.
    fn run_once(&mut self, io: &dyn IoHandler) -> Result<Option<VcpuExit>, VcpuError> {
        let index = self.index;
        let exit = match self.fd.run() {
            Ok(exit) => exit,
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                self.fd.set_kvm_immediate_exit(0);
                self.kick.take_pending();
                return Ok(Some(VcpuExit::Interrupted));
            }
            Err(e) => {
                return Err(VcpuError::Run {
                    index,
                    source: Box::new(e),
                })
            }
        };
        let internal = |reason: String| VcpuError::Internal { index, reason };
        match exit {
            KvmExit::IoIn(port, data) => io.pio_read(port, data),
            KvmExit::IoOut(port, data) => io.pio_write(port, data),
            KvmExit::MmioRead(addr, data) => io.mmio_read(addr, data),
            KvmExit::MmioWrite(addr, data) => io.mmio_write(addr, data),
            // With the in-kernel LAPIC, HLT is handled by KVM; an exit here is spurious.
            KvmExit::Hlt | KvmExit::Intr => {}
            KvmExit::Shutdown => return Ok(Some(VcpuExit::TripleFault)),
            KvmExit::SystemEvent(kind, _) => {
                return match kind {
                    KVM_SYSTEM_EVENT_SHUTDOWN => Ok(Some(VcpuExit::PowerOff)),
                    KVM_SYSTEM_EVENT_RESET => Ok(Some(VcpuExit::Reset)),
                    KVM_SYSTEM_EVENT_CRASH => Err(internal("the guest reported a crash".into())),
                    other => Err(internal(format!("unknown KVM system event {other}"))),
                };
            }
            KvmExit::FailEntry(reason, cpu) => {
                return Err(internal(format!(
                    "KVM could not enter the guest (hardware reason {reason:#x}, host CPU {cpu})"
                )));
            }
            KvmExit::InternalError => {
                // SAFETY: for KVM_EXIT_INTERNAL_ERROR the kernel fills the `internal`
                // member of the exit union, which is what exit_reason selects.
                let suberror = unsafe { self.fd.get_kvm_run().__bindgen_anon_1.internal.suberror };
                let rip = self.fd.get_regs().map_or(0, |r| r.rip);
                return Err(internal(format!(
                    "KVM internal error (suberror {suberror}: {}) at guest RIP {rip:#x}",
                    describe_suberror(suberror)
                )));
            }
            other => return Err(internal(format!("unexpected KVM exit {other:?}"))),
        }
        Ok(None)
    }
}

/// The KVM_INTERNAL_ERROR_* suberrors.
fn describe_suberror(suberror: u32) -> &'static str {
    match suberror {
        1 => "KVM could not emulate an instruction",
        2 => "a simultaneous exception during event delivery",
        3 => "delivery of an event failed",
        4 => "an unexpected exit during event delivery",
        _ => "unknown",
    }
}

impl Vcpu for KvmVcpu {
    fn index(&self) -> u32 {
        self.index
    }

    fn run(&mut self, io: &dyn IoHandler) -> Result<VcpuExit, VcpuError> {
        if !self.bound {
            let run: *mut _ = self.fd.get_kvm_run();
            self.kick.bind_thread(run);
            self.bound = true;
        }
        if self.kick.take_pending() {
            return Ok(VcpuExit::Interrupted);
        }
        loop {
            if let Some(exit) = self.run_once(io)? {
                return Ok(exit);
            }
        }
    }

    fn kicker(&self) -> Arc<dyn Kick> {
        self.kick.clone()
    }
}

impl Drop for KvmVcpu {
    fn drop(&mut self) {
        if self.bound {
            self.kick.unbind_thread();
        }
    }
}
