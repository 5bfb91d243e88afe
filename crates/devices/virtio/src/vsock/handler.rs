//! The vsock device's I/O thread: packets from the transmit queue to the host
//! sockets, and from the host sockets (and the device's own replies) into the
//! receive queue.

use std::sync::Arc;

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use gasang_bus::RateLimit;
use gasang_memory::GuestMemory;
use vm_memory::{Bytes, GuestAddress};

use super::muxer::{Muxer, Watch, FIRST_TOKEN};
use super::packet::{Header, HEADER_LEN, MAX_PAYLOAD};
use crate::device::ActiveQueue;
use crate::interrupt::VirtioInterrupt;
use crate::queue::{serve_queue, watch_rx_tx, Chain, RX, TX};

/// Event data of the listening socket (beside the queues' [`RX`] and [`TX`]).
const LISTENER: u32 = 3;

static PACKET_LOG: RateLimit = RateLimit::new(10, 10);

/// What the I/O thread works with.
pub struct VsockHandler {
    pub(super) memory: GuestMemory,
    pub(super) rx: ActiveQueue,
    pub(super) tx: ActiveQueue,
    pub(super) interrupt: Arc<VirtioInterrupt>,
    pub(super) muxer: Muxer,
    pub(super) guest_cid: u64,
    /// One packet, header and payload, either way.
    pub(super) buf: Vec<u8>,
}

/// A chain's writable buffers.
fn writable(chain: Chain<'_>) -> Vec<(GuestAddress, usize)> {
    chain
        .writable()
        .map(|d| (GuestAddress(d.addr().0), d.len() as usize))
        .collect()
}

/// Copies `bytes` into `buffers`; false if guest memory refused.
fn scatter(memory: &GuestMemory, buffers: &[(GuestAddress, usize)], bytes: &[u8]) -> bool {
    let mut at = 0;
    for &(addr, len) in buffers {
        let n = len.min(bytes.len() - at);
        if n > 0 && memory.write_slice(&bytes[at..at + n], addr).is_err() {
            return false;
        }
        at += n;
    }
    true
}

/// Reads the chain's readable buffers into `buf` (at most its length); returns how
/// many bytes.
fn gather(chain: Chain<'_>, memory: &GuestMemory, buf: &mut [u8]) -> usize {
    let mut at = 0;
    for desc in chain.readable() {
        let n = (desc.len() as usize).min(buf.len() - at);
        if n == 0
            || memory
                .read_slice(&mut buf[at..at + n], GuestAddress(desc.addr().0))
                .is_err()
        {
            break;
        }
        at += n;
    }
    at
}

impl VsockHandler {
    /// Hands packets from the transmit queue to the host side.
    fn transmit(&mut self) {
        let (memory, muxer, buf, cid) =
            (&self.memory, &mut self.muxer, &mut self.buf, self.guest_cid);
        serve_queue(&mut self.tx, memory, &self.interrupt, |chain| {
            let n = gather(chain, memory, buf);
            let payload = n.saturating_sub(HEADER_LEN);
            match Header::parse(&buf[..n], cid, payload) {
                Ok(header) => {
                    let end = HEADER_LEN + header.len as usize;
                    muxer.guest_packet(&header, &buf[HEADER_LEN..end]);
                }
                Err(e) => {
                    if PACKET_LOG.allow() {
                        tracing::warn!("vsock: dropped a packet from the guest: {e}");
                    }
                }
            }
            Some(0)
        });
    }

    /// Fills receive buffers with what the host side has for the guest.
    fn receive(&mut self) {
        let (memory, muxer, buf) = (&self.memory, &mut self.muxer, &mut self.buf);
        serve_queue(&mut self.rx, memory, &self.interrupt, |chain| {
            let buffers = writable(chain);
            let room: usize = buffers.iter().map(|b| b.1).sum();
            if room < HEADER_LEN {
                return Some(0); // a buffer no packet fits: the guest's loss
            }
            let most = (room - HEADER_LEN).min(MAX_PAYLOAD);
            let header = muxer.next_packet(&mut buf[HEADER_LEN..HEADER_LEN + most])?;
            let len = HEADER_LEN + header.len as usize;
            buf[..HEADER_LEN].copy_from_slice(&header.to_bytes());
            if !scatter(memory, &buffers, &buf[..len]) {
                return Some(0);
            }
            Some(len as u32)
        });
    }

    /// Starts or stops watching the sockets the host side opened or closed.
    fn apply_watches(&mut self, ops: &mut EventOps) {
        for watch in std::mem::take(&mut self.muxer.watches) {
            let result = match watch {
                Watch::Add(fd, token) => {
                    let set = EventSet::IN | EventSet::OUT | EventSet::EDGE_TRIGGERED;
                    ops.add(Events::with_data_raw(fd, token, set))
                }
                // Forgotten before the stream closes as it drops here.
                Watch::Remove(stream) => ops.remove(Events::empty(&stream)),
            };
            if let Err(e) = result {
                tracing::warn!("vsock: cannot watch a connection's socket: {e:?}");
            }
        }
    }
}

impl MutEventSubscriber for VsockHandler {
    fn process(&mut self, events: Events, ops: &mut EventOps) {
        let set = events.event_set();
        match events.data() {
            RX => {
                let _ = self.rx.event.read();
            }
            TX => {
                let _ = self.tx.event.read();
                self.transmit();
            }
            LISTENER => self.muxer.accept(),
            token if token >= FIRST_TOKEN => {
                let readable = set.intersects(EventSet::IN | EventSet::HANG_UP | EventSet::ERROR);
                self.muxer
                    .socket_ready(token, readable, set.contains(EventSet::OUT));
            }
            _ => {}
        }
        // Whatever happened may have given the guest something to read.
        self.receive();
        self.apply_watches(ops);
    }

    fn init(&mut self, ops: &mut EventOps) {
        let listener = self.muxer.listener_fd();
        watch_rx_tx(
            ops,
            &self.rx,
            &self.tx,
            Events::with_data_raw(listener, LISTENER, EventSet::IN),
            "virtio-vsock",
        );
        self.transmit();
        self.receive();
        self.apply_watches(ops);
    }
}
