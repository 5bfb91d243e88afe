//! virtio-rng: the host's getrandom(2), one queue.

use std::sync::{Arc, Mutex};

use event_manager::{EventOps, Events, MutEventSubscriber};
use gasang_memory::GuestMemory;
use vm_memory::{Bytes, GuestAddress};

use crate::device::{device_type, ActivateError, Activation, ActiveQueue, VirtioDevice};
use crate::interrupt::VirtioInterrupt;
use crate::queue::{serve_queues, watch_queues, Chain, Served};
use crate::worker::Worker;

/// Most bytes one request gets: a driver asking for gigabytes gets this much.
const MAX_REQUEST: usize = 64 << 10;

/// The entropy device.
#[derive(Debug, Default)]
pub struct Rng {
    worker: Option<Worker>,
}

impl VirtioDevice for Rng {
    fn device_type(&self) -> u16 {
        device_type::RNG
    }

    fn pci_class(&self) -> u32 {
        0xff_0000
    }

    fn queue_sizes(&self) -> Vec<u16> {
        vec![256]
    }

    fn features(&self) -> u64 {
        0
    }

    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn activate(&mut self, activation: Activation) -> Result<(), ActivateError> {
        if activation.queues.first().map(|q| q.index) != Some(0) {
            return Err(ActivateError::MissingQueue(0));
        }
        let handler = RngHandler {
            memory: activation.memory,
            queues: activation.queues,
            interrupt: activation.interrupt,
        };
        let worker = Worker::spawn("virtio-rng".into(), Arc::new(Mutex::new(handler)))
            .map_err(ActivateError::Thread)?;
        self.worker = Some(worker);
        Ok(())
    }

    fn reset(&mut self) {
        self.worker = None;
    }
}

struct RngHandler {
    memory: GuestMemory,
    queues: Vec<ActiveQueue>,
    interrupt: Arc<VirtioInterrupt>,
}

impl RngHandler {
    fn serve(&mut self, events: Option<&Events>) {
        let memory = &self.memory;
        serve_queues(
            &mut self.queues,
            events,
            memory,
            &self.interrupt,
            |_, chain| Served::Used(fill(chain, memory)),
        );
    }
}

/// Fills the chain's writable buffers with random bytes; returns how many.
fn fill(chain: Chain<'_>, memory: &GuestMemory) -> u32 {
    let mut written = 0usize;
    for desc in chain.writable() {
        let want = (desc.len() as usize).min(MAX_REQUEST - written);
        if want == 0 {
            break;
        }
        // Sized to what the driver asked for, not MAX_REQUEST every time.
        let mut buf = vec![0u8; want];
        if getrandom(&mut buf).is_err()
            || memory
                .write_slice(&buf, GuestAddress(desc.addr().0))
                .is_err()
        {
            break;
        }
        written += want;
    }
    written as u32
}

pub(crate) fn getrandom(buf: &mut [u8]) -> std::io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: getrandom writes at most `rest.len()` bytes to `rest`, a live,
        // exclusively borrowed buffer.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
            continue;
        }
        done += n as usize;
    }
    Ok(())
}

impl MutEventSubscriber for RngHandler {
    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        self.serve(Some(&events));
    }

    fn init(&mut self, ops: &mut EventOps) {
        watch_queues(&self.queues, ops);
        self.serve(None);
    }
}
