//! The network device's I/O thread: frames from the back end into the receive queue's
//! buffers (merged across buffers when the driver allows it), and the transmit
//! queue's chains out to the back end.

use std::sync::{Arc, Mutex};

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use gasang_bus::{lock, RateLimit};
use gasang_memory::GuestMemory;
use virtio_bindings::virtio_net::VIRTIO_NET_F_MRG_RXBUF;
use virtio_queue::{QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestAddress};

use super::backend::NetBackend;
use super::header::{NetHeader, MAX_FRAME, NUM_BUFFERS_OFFSET};
use crate::device::ActiveQueue;
use crate::interrupt::VirtioInterrupt;
use crate::queue::{serve_queue, watch_rx_tx, Chain, RX, TX};

/// Event data of the back end (beside the queues' [`RX`] and [`TX`]).
const BACKEND: u32 = 2;

static NET_LOG: RateLimit = RateLimit::new(10, 10);

/// What happened to a received frame.
enum Delivery {
    /// It is in the driver's buffers.
    Delivered,
    /// It does not fit the buffers the driver posts: dropped.
    Dropped,
    /// No buffers now: it waits for the driver to post some.
    NoBuffers,
}

/// What the I/O thread works with.
pub struct NetHandler {
    /// Guest RAM.
    memory: GuestMemory,
    /// Queue 0: buffers for received frames.
    rx: ActiveQueue,
    /// Queue 1: frames to send.
    tx: ActiveQueue,
    /// Completions.
    interrupt: Arc<VirtioInterrupt>,
    /// The host side, kept by the device across resets.
    backend: Arc<Mutex<Box<dyn NetBackend>>>,
    /// What the driver accepted.
    features: u64,
    /// The frame being received, header first.
    frame: Vec<u8>,
    /// The frame being sent, kept between notifications (64 KiB each time otherwise).
    tx_frame: Vec<u8>,
    /// Its length, while it waits for receive buffers.
    pending: Option<usize>,
    /// Receive chains taken for the pending frame, and their total size.
    held: Vec<(u16, Vec<(GuestAddress, usize)>)>,
    held_capacity: usize,
    /// The back end is full: transmission waits for it to drain.
    tx_blocked: bool,
    /// The back end has ended: transmitted frames are dropped.
    ended: bool,
}

impl NetHandler {
    /// Starts the thread's state for `backend`.
    pub fn new(
        activation: crate::device::Activation,
        rx: ActiveQueue,
        tx: ActiveQueue,
        backend: Arc<Mutex<Box<dyn NetBackend>>>,
    ) -> Self {
        Self {
            memory: activation.memory,
            rx,
            tx,
            interrupt: activation.interrupt,
            backend,
            features: activation.features,
            frame: vec![0; MAX_FRAME],
            tx_frame: Vec::with_capacity(MAX_FRAME),
            pending: None,
            held: Vec::new(),
            held_capacity: 0,
            tx_blocked: false,
            ended: false,
        }
    }

    fn mergeable(&self) -> bool {
        self.features & (1 << VIRTIO_NET_F_MRG_RXBUF) != 0
    }

    fn backend_failed(&mut self, e: std::io::Error) {
        let mut backend = lock(&self.backend);
        let why = backend.ended().unwrap_or_else(|| e.to_string());
        tracing::error!("network {}: {why}", backend.describe());
        self.ended = true;
    }

    /// Moves frames from the back end into receive buffers until either runs out.
    fn receive(&mut self) {
        let mut delivered = false;
        if let Err(e) = self.rx.queue.disable_notification(&self.memory) {
            return self.broken(e);
        }
        while !self.ended {
            let len = match self.pending.take() {
                Some(len) => len,
                None => {
                    let received = lock(&self.backend).recv(&mut self.frame);
                    match received {
                        Ok(Some(len)) => len,
                        Ok(None) => break,
                        Err(e) => {
                            self.backend_failed(e);
                            break;
                        }
                    }
                }
            };
            match self.deliver(len) {
                Ok(Delivery::Delivered) => delivered = true,
                Ok(Delivery::Dropped) => {}
                Ok(Delivery::NoBuffers) => {
                    self.pending = Some(len);
                    match self.rx.queue.enable_notification(&self.memory) {
                        Ok(true) => continue, // posted meanwhile
                        Ok(false) => break,
                        Err(e) => return self.broken(e),
                    }
                }
                Err(e) => return self.broken(e),
            }
        }
        if delivered {
            self.notify_rx();
        }
    }

    fn notify_rx(&mut self) {
        match self.rx.queue.needs_notification(&self.memory) {
            Ok(true) => self.interrupt.queue(self.rx.vector),
            Ok(false) => {}
            Err(e) => self.broken(e),
        }
    }

    fn broken(&mut self, e: virtio_queue::Error) {
        self.release_held();
        if NET_LOG.allow() {
            tracing::warn!("virtio-net receive queue is broken ({e}): the device needs a reset");
        }
        self.interrupt.needs_reset();
    }

    /// Puts the frame of `len` bytes into as many receive chains as it needs (one,
    /// unless buffers may be merged). Chains taken while it waits for more stay
    /// taken, so that the driver's next notification is for buffers not yet seen.
    fn deliver(&mut self, len: usize) -> Result<Delivery, virtio_queue::Error> {
        let memory = &self.memory;
        while self.held_capacity < len {
            // More chains than the ring has entries: the driver re-posts heads that
            // are still the device's, and would grow this without end.
            if self.held.len() >= usize::from(self.rx.queue.size()) {
                return Err(virtio_queue::Error::InvalidChain);
            }
            let Some(chain) = self.rx.queue.iter(memory)?.next() else {
                return Ok(Delivery::NoBuffers);
            };
            let head = chain.head_index();
            let buffers: Vec<_> = chain
                .writable()
                .map(|d| (GuestAddress(d.addr().0), d.len() as usize))
                .collect();
            self.held_capacity += buffers.iter().map(|b| b.1).sum::<usize>();
            self.held.push((head, buffers));
            if !self.mergeable() {
                break;
            }
        }
        if self.held_capacity < len {
            // One chain, too small: it stays for a frame that fits.
            self.rx.queue.go_to_previous_position();
            self.release_held();
            if NET_LOG.allow() {
                tracing::warn!("virtio-net: a {len}-byte frame does not fit the receive buffers");
            }
            return Ok(Delivery::Dropped);
        }
        let count = self.held.len() as u16;
        self.frame[NUM_BUFFERS_OFFSET..NUM_BUFFERS_OFFSET + 2]
            .copy_from_slice(&count.to_le_bytes());
        let mut at = 0;
        for (head, buffers) in std::mem::take(&mut self.held) {
            let mut written = 0;
            for (addr, size) in buffers {
                let n = size.min(len - at);
                memory
                    .write_slice(&self.frame[at..at + n], addr)
                    .map_err(|_| virtio_queue::Error::InvalidChain)?;
                at += n;
                written += n;
            }
            self.rx.queue.add_used(memory, head, written as u32)?;
        }
        self.held_capacity = 0;
        Ok(Delivery::Delivered)
    }

    fn release_held(&mut self) {
        self.held.clear();
        self.held_capacity = 0;
    }

    /// Sends the transmit queue's frames until it is empty or the back end is full.
    fn transmit(&mut self) {
        if self.tx_blocked {
            return;
        }
        let memory = &self.memory;
        let features = self.features;
        let ended = self.ended;
        let mut backend = lock(&self.backend);
        let mut blocked = false;
        let frame = &mut self.tx_frame;
        serve_queue(&mut self.tx, memory, &self.interrupt, |chain| {
            if !gather(chain, memory, frame) || ended {
                return Some(0);
            }
            if let Err(e) = NetHeader::read(frame).and_then(|h| h.check(frame.len(), features)) {
                if NET_LOG.allow() {
                    tracing::warn!("virtio-net: dropped a frame to send: {e}");
                }
                return Some(0);
            }
            match backend.send(frame) {
                Ok(true) => Some(0),
                Ok(false) => {
                    blocked = true;
                    None
                }
                Err(e) => {
                    if NET_LOG.allow() {
                        tracing::warn!("virtio-net: {} refused a frame: {e}", backend.describe());
                    }
                    Some(0)
                }
            }
        });
        self.tx_blocked = blocked;
    }

    fn backend_ready(&mut self, set: EventSet) {
        if set.contains(EventSet::OUT) {
            let flushed = lock(&self.backend).flush();
            match flushed {
                Ok(()) => {
                    self.tx_blocked = false;
                    self.transmit();
                }
                Err(e) => self.backend_failed(e),
            }
        }
        if set.intersects(EventSet::IN | EventSet::HANG_UP | EventSet::ERROR) {
            self.receive();
        }
    }
}

/// Reads the chain's readable buffers into `frame`; false if it is too long or
/// unreadable.
fn gather(chain: Chain<'_>, memory: &GuestMemory, frame: &mut Vec<u8>) -> bool {
    frame.clear();
    for desc in chain.readable() {
        let len = desc.len() as usize;
        if frame.len() + len > MAX_FRAME {
            return false;
        }
        let at = frame.len();
        frame.resize(at + len, 0);
        if memory
            .read_slice(&mut frame[at..], GuestAddress(desc.addr().0))
            .is_err()
        {
            return false;
        }
    }
    true
}

impl MutEventSubscriber for NetHandler {
    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        match events.data() {
            RX => {
                let _ = self.rx.event.read();
                self.receive();
            }
            TX => {
                let _ = self.tx.event.read();
                self.transmit();
            }
            _ => self.backend_ready(events.event_set()),
        }
    }

    fn init(&mut self, ops: &mut EventOps) {
        let fd = lock(&self.backend).fd();
        let backend = EventSet::IN | EventSet::OUT | EventSet::EDGE_TRIGGERED;
        watch_rx_tx(
            ops,
            &self.rx,
            &self.tx,
            Events::with_data_raw(fd, BACKEND, backend),
            "virtio-net",
        );
        self.transmit();
        self.receive();
    }
}
