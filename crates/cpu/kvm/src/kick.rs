//! Kicking a vCPU out of KVM_RUN from another thread.
//!
//! The kicker sends SIGRTMIN to the vCPU's thread. The handler sets `immediate_exit`
//! in that thread's `kvm_run`, so KVM_RUN returns EINTR whether the signal lands
//! inside it or just before it is entered. A `pending` flag covers a kick that comes
//! before the thread has registered itself.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once};

use gasang_vcpu::Kick;
use kvm_bindings::kvm_run;
use vmm_sys_util::signal::{register_signal_handler, SIGRTMIN};

thread_local! {
    /// The `kvm_run` of the vCPU this thread runs, once it has started.
    static KVM_RUN: Cell<*mut kvm_run> = const { Cell::new(std::ptr::null_mut()) };
}

extern "C" fn handle_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let run = KVM_RUN.with(Cell::get);
    if !run.is_null() {
        // SAFETY: `run` was registered by `bind_thread` on this very thread and points at
        // the vCPU's mmapped `kvm_run`, which lives until `unbind_thread` clears it before
        // the vCPU (and its mapping) is dropped. A volatile byte store cannot tear.
        unsafe { std::ptr::addr_of_mut!((*run).immediate_exit).write_volatile(1) };
    }
}

fn install_handler() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        if let Err(e) = register_signal_handler(SIGRTMIN(), handle_kick) {
            tracing::error!("cannot install the vCPU kick signal handler: {e}");
        }
    });
}

/// The shared half of a vCPU kick: who to signal, and whether a kick is pending.
#[derive(Debug, Default)]
pub struct KickState {
    thread: Mutex<Option<libc::pthread_t>>,
    pending: AtomicBool,
}

impl KickState {
    /// Registers the calling thread as the one running this vCPU, with its `kvm_run`.
    pub fn bind_thread(&self, run: *mut kvm_run) {
        install_handler();
        KVM_RUN.with(|c| c.set(run));
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() };
        *self.thread.lock().expect("kick lock poisoned") = Some(me);
    }

    /// Forgets the thread, before the vCPU's `kvm_run` goes away.
    pub fn unbind_thread(&self) {
        *self.thread.lock().expect("kick lock poisoned") = None;
        KVM_RUN.with(|c| c.set(std::ptr::null_mut()));
    }

    /// Takes a kick that arrived while the vCPU was not in KVM_RUN.
    pub fn take_pending(&self) -> bool {
        self.pending.swap(false, Ordering::AcqRel)
    }
}

impl Kick for KickState {
    fn kick(&self) {
        self.pending.store(true, Ordering::Release);
        let thread = self.thread.lock().expect("kick lock poisoned");
        if let Some(thread) = *thread {
            // SAFETY: `thread` is a live thread: it is cleared (under this lock) by
            // `unbind_thread` before the vCPU thread exits. SIGRTMIN has a handler.
            unsafe { libc::pthread_kill(thread, SIGRTMIN()) };
        }
    }
}
