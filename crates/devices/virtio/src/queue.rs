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

/// Serves every chain available on `active`, calling `serve` for each: it returns the
/// bytes it wrote into the chain, or `None` to leave the chain (and those after it)
/// on the ring until the device can take it. On a broken ring the device needs a reset.
pub fn serve_queue(
    active: &mut ActiveQueue,
    memory: &GuestMemory,
    interrupt: &VirtioInterrupt,
    mut serve: impl FnMut(Chain<'_>) -> Option<u32>,
) {
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
    if served == 0 {
        return;
    }
    match active.queue.needs_notification(memory) {
        Ok(true) => interrupt.queue(active.vector),
        Ok(false) => {}
        Err(_) => interrupt.needs_reset(),
    }
}

fn try_serve(
    active: &mut ActiveQueue,
    memory: &GuestMemory,
    serve: &mut impl FnMut(Chain<'_>) -> Option<u32>,
) -> Result<usize, virtio_queue::Error> {
    let mut served = 0;
    loop {
        active.queue.disable_notification(memory)?;
        let mut pass = 0;
        // `iter` checks the available index against the ring size first.
        while let Some(chain) = active.queue.iter(memory)?.next() {
            let head = chain.head_index();
            let Some(written) = serve(chain) else {
                // Left for later: the device resumes here when it can.
                active.queue.go_to_previous_position();
                return Ok(served + pass);
            };
            active.queue.add_used(memory, head, written)?;
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
    mut serve: impl FnMut(Chain<'_>) -> u32,
) {
    let mut serve = |chain: Chain<'_>| Some(serve(chain));
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
    for active in queues.get_mut(which).into_iter().flatten() {
        serve_queue(active, memory, interrupt, &mut serve);
    }
}
