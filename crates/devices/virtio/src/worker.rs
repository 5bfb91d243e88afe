//! A device's I/O thread: an event-manager loop over the device's handler, until the
//! device is reset or the machine stops.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use event_manager::{EventManager, EventOps, EventSet, Events, MutEventSubscriber, SubscriberOps};
use vmm_sys_util::eventfd::EventFd;

type Subscriber = Arc<Mutex<dyn MutEventSubscriber + Send>>;

/// A running device thread.
#[derive(Debug)]
pub struct Worker {
    stop: EventFd,
    handle: Option<JoinHandle<()>>,
}

/// Ends the loop when the stop eventfd fires.
struct StopWatcher {
    fd: EventFd,
    stopped: Arc<AtomicBool>,
}

impl MutEventSubscriber for StopWatcher {
    fn process(&mut self, _events: Events, _ops: &mut EventOps) {
        let _ = self.fd.read();
        self.stopped.store(true, Ordering::SeqCst);
    }

    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.fd, EventSet::IN)) {
            tracing::error!("a device thread cannot watch its stop event: {e:?}");
        }
    }
}

impl Worker {
    /// Starts thread `name` running `handler`'s events.
    pub fn spawn(name: String, handler: Subscriber) -> std::io::Result<Self> {
        let stop = EventFd::new(libc::EFD_NONBLOCK)?;
        let watcher = StopWatcher {
            fd: stop.try_clone()?,
            stopped: Arc::new(AtomicBool::new(false)),
        };
        let mut events = EventManager::<Subscriber>::new()
            .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        let stopped = watcher.stopped.clone();
        events.add_subscriber(handler);
        events.add_subscriber(Arc::new(Mutex::new(watcher)));
        let handle = std::thread::Builder::new().name(name).spawn(move || {
            while !stopped.load(Ordering::SeqCst) {
                if let Err(e) = events.run() {
                    tracing::error!("a device thread's event loop failed: {e:?}");
                    break;
                }
            }
        })?;
        Ok(Self {
            stop,
            handle: Some(handle),
        })
    }

    /// Stops the thread and waits for it.
    pub fn stop(&mut self) {
        let Some(handle) = self.handle.take() else {
            return;
        };
        if let Err(e) = self.stop.write(1) {
            tracing::error!("cannot stop a device thread: {e}");
            return;
        }
        if handle.join().is_err() {
            tracing::error!("a device thread panicked");
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop();
    }
}
