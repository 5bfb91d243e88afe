//! Choosing the CPU backend: `--accel kvm`, `soft`, or `auto` (the default), which
//! uses KVM only where KVM runs guest kernel code natively.
//!
//! The test is a measurement, not a guess: a 64-bit kernel-mode loop of 40,000
//! instructions runs on a throwaway KVM VM. Hardware-assisted, that takes tens of
//! microseconds; a KVM that emulates guest kernel code (a nested hypervisor without
//! hardware help for it, such as this project's CI host) takes tens of milliseconds.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use gasang_memory::{create_guest_memory, MemorySize};
use gasang_soft::SoftAccelerator;
use gasang_vcpu::{Accelerator, CpuTopology, IoHandler, Kick};
use vm_memory::{Bytes, GuestAddress};

use crate::args::Accel;

/// The probe's loop: `mov ecx, 20000; 1: dec ecx; jnz 1b; out 0xf4, al; hlt`.
const PROBE_CODE: [u8; 14] = [
    0xb9, 0x20, 0x4e, 0x00, 0x00, 0xff, 0xc9, 0x75, 0xfc, 0xe6, 0xf4, 0xf4, 0xeb, 0xfd,
];
/// Instructions the loop executes.
const PROBE_INSTRUCTIONS: u32 = 40_000;
/// Where the probe's code goes (the boot path's GDT and page tables are elsewhere).
const PROBE_ENTRY: u64 = 0x1000;
/// The port the probe writes when done.
const DONE_PORT: u16 = 0xf4;
/// Slower than this per instruction, KVM is emulating kernel code (hardware runs the
/// loop at well under 1 ns per instruction; KVM's emulator at about 1 µs).
const NATIVE_LIMIT: Duration = Duration::from_nanos(50);
/// A probe that has not finished by then counts as emulated.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The backend to run on, and why it was chosen.
pub fn choose(requested: Accel) -> Result<(Box<dyn Accelerator>, String), gasang_kvm::KvmError> {
    match requested {
        Accel::Kvm => Ok((
            Box::new(gasang_kvm::KvmAccelerator::new()?),
            "KVM, as asked (--accel kvm)".into(),
        )),
        Accel::Soft => Ok((
            Box::new(SoftAccelerator),
            "the software CPU, as asked (--accel soft)".into(),
        )),
        Accel::Auto => Ok(auto()),
    }
}

fn auto() -> (Box<dyn Accelerator>, String) {
    let kvm = match gasang_kvm::KvmAccelerator::new() {
        Ok(kvm) => kvm,
        Err(e) => return (Box::new(SoftAccelerator), format!("the software CPU: {e}")),
    };
    match kernel_mode_speed(&kvm) {
        Ok(per_instruction) if per_instruction <= NATIVE_LIMIT => (
            Box::new(kvm),
            format!(
                "KVM: it runs guest kernel code natively ({per_instruction:?} per instruction)"
            ),
        ),
        Ok(per_instruction) => (
            Box::new(SoftAccelerator),
            format!(
                "the software CPU: this host's KVM emulates guest kernel code \
                 ({per_instruction:?} per instruction in kernel mode)"
            ),
        ),
        Err(why) => (
            Box::new(SoftAccelerator),
            format!("the software CPU: KVM could not run a test guest ({why})"),
        ),
    }
}

/// Notes when the probe's guest reports done, and stops its vCPU.
#[derive(Default)]
struct Finish {
    at: Mutex<Option<Instant>>,
    kicker: OnceLock<Arc<dyn Kick>>,
}

impl IoHandler for Finish {
    fn pio_read(&self, _port: u16, data: &mut [u8]) {
        data.fill(0xff);
    }
    fn pio_write(&self, port: u16, _data: &[u8]) {
        if port == DONE_PORT {
            *self.at.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
            if let Some(kicker) = self.kicker.get() {
                kicker.kick();
            }
        }
    }
    fn mmio_read(&self, _addr: u64, data: &mut [u8]) {
        data.fill(0xff);
    }
    fn mmio_write(&self, _addr: u64, _data: &[u8]) {}
}

/// Time per instruction of the probe loop in 64-bit kernel mode on `kvm`.
fn kernel_mode_speed(kvm: &gasang_kvm::KvmAccelerator) -> Result<Duration, String> {
    let size = MemorySize::new(16 << 20).map_err(|e| e.to_string())?;
    let memory = create_guest_memory(size).map_err(|e| e.to_string())?;
    let boot = gasang_boot::long_mode_state(&memory, PROBE_ENTRY).map_err(|e| e.to_string())?;
    memory
        .write_slice(&PROBE_CODE, GuestAddress(PROBE_ENTRY))
        .map_err(|e| e.to_string())?;
    let topology = CpuTopology::new(1).map_err(|e| e.to_string())?;
    let vm = kvm
        .create_vm(&memory, topology)
        .map_err(|e| e.to_string())?;
    let mut vcpu = vm.create_vcpu(0, &boot).map_err(|e| e.to_string())?;
    let finish = Arc::new(Finish::default());
    let kicker = vcpu.kicker();
    let _ = finish.kicker.set(kicker.clone());
    // Kicks the vCPU if the probe is still running at the timeout; never after.
    let (finished, wait) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if wait.recv_timeout(PROBE_TIMEOUT).is_err() {
            kicker.kick();
        }
    });
    let started = Instant::now();
    let ran = vcpu.run(finish.as_ref());
    let _ = finished.send(());
    let _ = watchdog.join();
    ran.map_err(|e| e.to_string())?;
    let done = *finish.at.lock().unwrap_or_else(|e| e.into_inner());
    let elapsed = done.map_or(PROBE_TIMEOUT, |at| at - started);
    Ok(elapsed / PROBE_INSTRUCTIONS)
}
