//! Serving a queue: pop each available chain, let the device handle it, return it
//! used, and interrupt the driver when the ring's notification rules say so.

use event_manager::{EventOps, EventSet, Events};
use gasang_bus::RateLimit;
use gasang_memory::GuestMemory;
use virtio_queue::{DescriptorChain, QueueOwnedT, QueueT};

use crate::device::ActiveQueue;
use crate::interrupt::VirtioInterrupt;

/// A chain as devices see it.
pub type Chain<'a> = DescriptorChain<&'a GuestMemory>;

static RING_LOG: RateLimit = RateLimit::new(10, 10);

/// What became of a chain a device was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// Done: it goes back to the driver as used, with this many bytes written.
    Used(u32),
    /// Taken: the device returns it later with [`complete`] (asynchronous I/O).
    Deferred,
    /// Not taken: it (and those after it) stays on the ring until the device can.
    Retry,
}

impl From<Option<u32>> for Served {
    fn from(written: Option<u32>) -> Self {
        written.map_or(Self::Retry, Self::Used)
    }
}

/// Serves every chain available on `active`, calling `serve` for each (see
/// [`Served`]; `Some(n)` is `Used(n)` and `None` is `Retry`). On a broken ring the
/// device needs a reset.
pub fn serve_queue<S: Into<Served>>(
    active: &mut ActiveQueue,
    memory: &GuestMemory,
    interrupt: &VirtioInterrupt,
    mut serve: impl FnMut(Chain<'_>) -> S,
) {
    let mut serve = |chain: Chain<'_>| serve(chain).into();
    let served = match try_serve(active, memory, &mut serve) {
        Ok(served) => served,
        Err(e) => {
            if RING_LOG.allow() {
                tracing::warn!(
                    "virtio queue {} is broken ({e}): the device needs a reset",
                    active.index
                );
            }
            interrupt.needs_reset();
            return;
        }
    };
    if served > 0 {
        notify(active, memory, interrupt);
    }
}

/// Returns chains a device took with [`Served::Deferred`]: each head with the bytes
/// written into its chain, then one interrupt if the ring's rules ask for it.
pub fn complete(
    active: &mut ActiveQueue,
    memory: &GuestMemory,
    interrupt: &VirtioInterrupt,
    used: impl IntoIterator<Item = (u16, u32)>,
) {
    for (head, written) in used {
        if active.queue.add_used(memory, head, written).is_err() {
            interrupt.needs_reset();
            return;
        }
    }
    notify(active, memory, interrupt);
}

fn notify(active: &mut ActiveQueue, memory: &GuestMemory, interrupt: &VirtioInterrupt) {
    match active.queue.needs_notification(memory) {
        Ok(true) => interrupt.queue(active.vector),
        Ok(false) => {}
        Err(_) => interrupt.needs_reset(),
    }
}

fn try_serve(
    active: &mut ActiveQueue,
    memory: &GuestMemory,
    serve: &mut impl FnMut(Chain<'_>) -> Served,
) -> Result<usize, virtio_queue::Error> {
    let mut served = 0;
    loop {
        active.queue.disable_notification(memory)?;
        let mut pass = 0;
        // `iter` checks the available index against the ring size first.
        while let Some(chain) = active.queue.iter(memory)?.next() {
            let head = chain.head_index();
            match serve(chain) {
                Served::Used(written) => active.queue.add_used(memory, head, written)?,
                Served::Deferred => {}
                Served::Retry => {
                    // Left for later: the device resumes here when it can.
                    active.queue.go_to_previous_position();
                    return Ok(served + pass);
                }
            }
            pass += 1;
        }
        served += pass;
        if !active.queue.enable_notification(memory)? {
            return Ok(served);
        }
        if pass == 0 {
            // More is available, yet nothing could be read: the ring is broken, and
            // looping on it would spin forever.
            return Err(virtio_queue::Error::InvalidAvailRingIndex);
        }
    }
}

/// Event data of a receive queue's notifications, in devices with one.
pub const RX: u32 = 0;
/// Event data of a transmit queue's notifications.
pub const TX: u32 = 1;

/// Watches a device's receive and transmit queues (as [`RX`] and [`TX`]) and one
/// source of its own (its back end, socket or input).
pub fn watch_rx_tx(
    ops: &mut EventOps,
    rx: &ActiveQueue,
    tx: &ActiveQueue,
    other: Events,
    device: &str,
) {
    let watched = [
        ops.add(Events::with_data(&rx.event, RX, EventSet::IN)),
        ops.add(Events::with_data(&tx.event, TX, EventSet::IN)),
        ops.add(other),
    ];
    if watched.iter().any(Result::is_err) {
        tracing::error!("{device} cannot watch its queues and its back end");
    }
}

/// Watches each queue's eventfd, with the queue's position in `queues` as its data.
pub fn watch_queues(queues: &[ActiveQueue], ops: &mut EventOps) {
    for (k, active) in queues.iter().enumerate() {
        if let Err(e) = ops.add(Events::with_data(&active.event, k as u32, EventSet::IN)) {
            tracing::error!("cannot watch virtio queue {}: {e:?}", active.index);
        }
    }
}

/// Serves the queue whose eventfd `events` reports (draining it), or, with `None`,
/// every queue: at start, for buffers the driver posted before its first notification.
pub fn serve_queues(
    queues: &mut [ActiveQueue],
    events: Option<&Events>,
    memory: &GuestMemory,
    interrupt: &VirtioInterrupt,
    mut serve: impl FnMut(usize, Chain<'_>) -> Served,
) {
    let which = match events {
        Some(events) => {
            let k = events.data() as usize;
            if let Some(active) = queues.get(k) {
                let _ = active.event.read();
            }
            k..k + 1
        }
        None => 0..queues.len(),
    };
    let first = which.start;
    for (k, active) in queues.get_mut(which).into_iter().flatten().enumerate() {
        serve_queue(active, memory, interrupt, |chain| serve(first + k, chain));
    }
}
