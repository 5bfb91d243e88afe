//! SIGTERM and SIGINT stop the machine cleanly: the handler only wakes the VMM thread.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::signal::register_signal_handler;

use crate::exit::{ExitLatch, ExitReason};

/// The eventfd the handler writes to, and the last signal it saw.
static SIGNAL_FD: AtomicI32 = AtomicI32::new(-1);
static LAST_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(signum: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    LAST_SIGNAL.store(signum, Ordering::SeqCst);
    let fd = SIGNAL_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let one: u64 = 1;
        // SAFETY: write(2) is async-signal-safe; `fd` is the eventfd owned by the
        // process-lifetime `Signals` (never closed once published) and `one` is a valid
        // 8-byte buffer.
        unsafe { libc::write(fd, std::ptr::addr_of!(one).cast(), 8) };
    }
}

/// The process's stop signals, routed to an eventfd.
#[derive(Debug)]
pub struct Signals {
    fd: Arc<EventFd>,
}

impl Signals {
    /// Installs the handlers (once per process; later calls share the first eventfd).
    pub fn install() -> std::io::Result<Self> {
        static INSTALLED: std::sync::OnceLock<Arc<EventFd>> = std::sync::OnceLock::new();
        if let Some(fd) = INSTALLED.get() {
            return Ok(Self { fd: fd.clone() });
        }
        let fd = Arc::new(EventFd::new(libc::EFD_NONBLOCK)?);
        let fd = INSTALLED.get_or_init(|| fd).clone();
        SIGNAL_FD.store(
            std::os::fd::AsRawFd::as_raw_fd(fd.as_ref()),
            Ordering::SeqCst,
        );
        for signum in [libc::SIGTERM, libc::SIGINT] {
            register_signal_handler(signum, on_signal).map_err(std::io::Error::from)?;
        }
        Ok(Self { fd })
    }

    /// An event-loop subscriber that turns a received signal into an exit.
    pub fn subscriber(&self, exit: Arc<ExitLatch>) -> SignalSubscriber {
        SignalSubscriber {
            fd: self.fd.clone(),
            exit,
        }
    }
}

/// Watches the signal eventfd.
#[derive(Debug)]
pub struct SignalSubscriber {
    fd: Arc<EventFd>,
    exit: Arc<ExitLatch>,
}

impl MutEventSubscriber for SignalSubscriber {
    fn process(&mut self, _events: Events, _ops: &mut EventOps) {
        if self.fd.read().is_ok() {
            self.exit
                .exit(ExitReason::Signal(LAST_SIGNAL.load(Ordering::SeqCst)));
        }
    }

    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(self.fd.as_ref(), EventSet::IN)) {
            tracing::error!("cannot watch for signals: {e:?}");
        }
    }
}
