//! The block device's thread: each request from its chain to the engine (reads,
//! writes, flushes) or done here (the rest), and each completion to its status byte.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use gasang_bus::RateLimit;
use gasang_memory::GuestMemory;
use virtio_queue::desc::split::Descriptor;
use vm_memory::{Bytes, GuestAddress};

use super::disk::Disk;
use super::io::{Completion, IoEngine, IoKind, IoOp, Iovecs};
use super::request::{parse, Request, RequestKind, Segment, SECTOR};
use super::{QUEUE_SIZE, SERIAL_LEN};
use crate::device::ActiveQueue;
use crate::interrupt::VirtioInterrupt;
use crate::queue::{complete, serve_queues, watch_queues, Chain, Served};

/// Request status: done.
const S_OK: u8 = 0;
/// Request status: failed.
const S_IOERR: u8 = 1;
/// Request status: not supported.
const S_UNSUPP: u8 = 2;
/// Most discard or write-zeroes ranges one request may carry.
const MAX_RANGES: usize = 256;
/// Discard or write-zeroes flag: the range may be deallocated.
const FLAG_UNMAP: u32 = 1;

static IO_LOG: RateLimit = RateLimit::new(10, 10);

/// A request the engine holds: where its answer goes once it completes.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    status: GuestAddress,
    /// Bytes the device writes into the chain on success (data and status).
    written: u32,
}

/// What the I/O thread works with.
pub struct BlockHandler {
    /// Runs transfers and flushes; first, so that it is dropped (waiting for the
    /// operations it holds) before anything they point into.
    engine: IoEngine,
    /// Requests in the engine, by token: queue * QUEUE_SIZE + head.
    in_flight: Vec<Option<InFlight>>,
    /// Guest RAM.
    memory: GuestMemory,
    /// The request queues.
    queues: Vec<ActiveQueue>,
    /// Completions.
    interrupt: Arc<VirtioInterrupt>,
    /// The image.
    disk: Arc<Disk>,
    /// GET_ID's answer.
    serial: [u8; SERIAL_LEN],
    /// The guest's write-cache setting: off means every write is flushed.
    writeback: Arc<AtomicBool>,
    /// Completions being answered (kept to save an allocation per batch).
    done: Vec<Completion>,
}

/// What a handler shares with its device.
pub struct BlockParts {
    /// Guest RAM.
    pub memory: GuestMemory,
    /// Completions.
    pub interrupt: Arc<VirtioInterrupt>,
    /// The image.
    pub disk: Arc<Disk>,
    /// GET_ID's answer.
    pub serial: [u8; SERIAL_LEN],
    /// The guest's write-cache setting.
    pub writeback: Arc<AtomicBool>,
}

impl BlockHandler {
    /// The handler for queues `queues`, its transfers on `engine`.
    pub fn new(engine: IoEngine, parts: BlockParts, queues: Vec<ActiveQueue>) -> Self {
        let slots = queues.len() * usize::from(QUEUE_SIZE);
        Self {
            engine,
            in_flight: vec![None; slots],
            memory: parts.memory,
            queues,
            interrupt: parts.interrupt,
            disk: parts.disk,
            serial: parts.serial,
            writeback: parts.writeback,
            done: Vec::new(),
        }
    }

    /// Serves one chain of queue `queue`: done here, or handed to the engine.
    fn serve(&mut self, queue: usize, chain: Chain<'_>) -> Served {
        let head = chain.head_index();
        let descriptors: Vec<Descriptor> = chain.collect();
        let request = match parse(&descriptors, &self.memory) {
            Ok(request) => request,
            Err((_, Some(status))) => return Served::Used(self.answer(status, S_IOERR, 0)),
            Err((_, None)) => return Served::Used(0),
        };
        let token = queue * usize::from(QUEUE_SIZE) + usize::from(head);
        if let Some(op) = self.async_op(&request, token as u64) {
            let Some(slot) = self.in_flight.get_mut(token) else {
                return Served::Used(0);
            };
            if slot.is_some() {
                // The driver offered a chain the device still holds: a broken ring.
                self.interrupt.needs_reset();
                return Served::Deferred;
            }
            let written = u32::try_from(op_written(&request)).unwrap_or(u32::MAX);
            *slot = Some(InFlight {
                status: request.status,
                written,
            });
            self.engine.submit(op);
            return Served::Deferred;
        }
        let (status, written) = self.execute(&request);
        Served::Used(self.answer(request.status, status, written))
    }

    /// Writes `status`; returns the bytes written into the chain.
    fn answer(&self, at: GuestAddress, status: u8, written: u32) -> u32 {
        if self.memory.write_obj(status, at).is_err() {
            return written;
        }
        written + 1
    }

    /// The engine's operation for `request`, if it is a read, write or flush the disk
    /// can take (the rest, and failures, are answered at once).
    fn async_op(&self, request: &Request, token: u64) -> Option<IoOp> {
        let kind = match request.kind {
            RequestKind::In => IoKind::Read,
            RequestKind::Out if !self.disk.read_only() => IoKind::Write,
            RequestKind::Flush => IoKind::Flush,
            _ => return None,
        };
        if kind != IoKind::Flush && !self.disk.contains(request.sector, request.data_len()) {
            return None;
        }
        let iovecs = match kind {
            IoKind::Flush => Iovecs::default(),
            _ => Disk::iovecs(&self.memory, &request.data).ok()?,
        };
        Some(IoOp {
            token,
            kind,
            offset: request.sector * SECTOR,
            iovecs,
            dsync: !self.writeback.load(Ordering::Relaxed),
        })
    }

    /// Answers every request the engine finished, one interrupt per queue at most.
    fn complete_all(&mut self) {
        let mut done = std::mem::take(&mut self.done);
        self.engine.completions(&mut done);
        let size = usize::from(QUEUE_SIZE);
        let mut used: Vec<Vec<(u16, u32)>> = vec![Vec::new(); self.queues.len()];
        for (token, result) in done.drain(..) {
            let token = token as usize;
            let Some(req) = self.in_flight.get_mut(token).and_then(Option::take) else {
                continue;
            };
            let (status, written) = match result {
                Ok(()) => (S_OK, req.written),
                Err(e) => {
                    log_error(&e, req.status);
                    (S_IOERR, 0)
                }
            };
            if let Some(queue) = used.get_mut(token / size) {
                queue.push((
                    (token % size) as u16,
                    self.answer(req.status, status, written),
                ));
            }
        }
        for (queue, used) in self.queues.iter_mut().zip(used) {
            if !used.is_empty() {
                complete(queue, &self.memory, &self.interrupt, used);
            }
        }
        self.done = done;
    }

    /// Runs `request` here; returns its status and the data bytes written to the guest.
    fn execute(&self, request: &Request) -> (u8, u32) {
        let writes = matches!(
            request.kind,
            RequestKind::Out | RequestKind::Discard | RequestKind::WriteZeroes
        );
        if writes && self.disk.read_only() {
            return (S_IOERR, 0);
        }
        let result = match request.kind {
            // Reads, writes and flushes the engine could not take: out of bounds, or
            // buffers outside RAM.
            RequestKind::In | RequestKind::Out | RequestKind::Flush => return (S_IOERR, 0),
            RequestKind::GetId => return (S_OK, self.get_id(&request.data)),
            RequestKind::Discard | RequestKind::WriteZeroes => self.ranges(request),
            RequestKind::Unsupported(_) => return (S_UNSUPP, 0),
        };
        match result {
            Ok(()) => (S_OK, 0),
            Err(e) => {
                if IO_LOG.allow() {
                    tracing::warn!(
                        "virtio-blk {:?} at sector {}: {e}",
                        request.kind,
                        request.sector
                    );
                }
                (S_IOERR, 0)
            }
        }
    }

    fn get_id(&self, data: &[Segment]) -> u32 {
        let mut written = 0usize;
        for s in data {
            let n = (s.len as usize).min(SERIAL_LEN - written);
            if n == 0
                || self
                    .memory
                    .write_slice(&self.serial[written..written + n], s.addr)
                    .is_err()
            {
                break;
            }
            written += n;
        }
        written as u32
    }

    /// Discard or write-zeroes: each 16-byte range of the data is sector, count, flags.
    fn ranges(&self, request: &Request) -> std::io::Result<()> {
        let invalid = || std::io::Error::from(std::io::ErrorKind::InvalidInput);
        let len = request.data_len();
        if len == 0 || !len.is_multiple_of(16) || len / 16 > MAX_RANGES as u64 {
            return Err(invalid());
        }
        let mut bytes = Vec::with_capacity(len as usize);
        for s in &request.data {
            let mut part = vec![0u8; s.len as usize];
            self.memory
                .read_slice(&mut part, s.addr)
                .map_err(|_| invalid())?;
            bytes.extend(part);
        }
        for range in bytes.chunks_exact(16) {
            let sector = u64::from_le_bytes(range[..8].try_into().map_err(|_| invalid())?);
            let count = u32::from_le_bytes(range[8..12].try_into().map_err(|_| invalid())?);
            let flags = u32::from_le_bytes(range[12..].try_into().map_err(|_| invalid())?);
            let bytes = u64::from(count) * SECTOR;
            if !self.disk.contains(sector, bytes) {
                return Err(invalid());
            }
            let unmap = request.kind == RequestKind::Discard || flags & FLAG_UNMAP != 0;
            if unmap {
                self.disk.punch_hole(sector * SECTOR, bytes)?;
            } else {
                self.disk.zero_range(sector * SECTOR, bytes)?;
            }
        }
        Ok(())
    }

    fn serve_all(&mut self, which: Option<&Events>) {
        // Out of `self` while its chains are served: serving borrows the rest of it.
        let mut queues = std::mem::take(&mut self.queues);
        let memory = self.memory.clone();
        let interrupt = self.interrupt.clone();
        serve_queues(&mut queues, which, &memory, &interrupt, |k, c| {
            self.serve(k, c)
        });
        self.queues = queues;
        self.engine.commit();
    }
}

/// Event data of the engine's completions (queues are 0..n).
const COMPLETIONS: u32 = u32::MAX;

/// Bytes a request writes into its chain's data buffers on success.
fn op_written(request: &Request) -> u64 {
    match request.kind {
        RequestKind::In => request.data_len(),
        _ => 0,
    }
}

fn log_error(e: &std::io::Error, status: GuestAddress) {
    if IO_LOG.allow() {
        tracing::warn!("virtio-blk request (status at {:#x}): {e}", status.0);
    }
}

impl MutEventSubscriber for BlockHandler {
    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        if events.data() == COMPLETIONS {
            self.complete_all();
        } else {
            self.serve_all(Some(&events));
        }
    }

    fn init(&mut self, ops: &mut EventOps) {
        watch_queues(&self.queues, ops);
        let completions = Events::with_data(self.engine.event(), COMPLETIONS, EventSet::IN);
        if let Err(e) = ops.add(completions) {
            tracing::error!("virtio-blk cannot watch its I/O completions: {e:?}");
        }
        // Requests the driver posted before its first notification.
        self.serve_all(None);
    }
}
