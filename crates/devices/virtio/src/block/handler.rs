//! The block device's I/O thread: each request, from its chain to its status byte.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use event_manager::{EventOps, Events, MutEventSubscriber};
use gasang_bus::RateLimit;
use gasang_memory::GuestMemory;
use virtio_queue::desc::split::Descriptor;
use vm_memory::Bytes;

use super::disk::Disk;
use super::request::{parse, Request, RequestKind, Segment, SECTOR};
use super::SERIAL_LEN;
use crate::device::ActiveQueue;
use crate::interrupt::VirtioInterrupt;
use crate::queue::{serve_queues, watch_queues, Chain};

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

/// What the I/O thread works with.
pub struct BlockHandler {
    /// Guest RAM.
    pub memory: GuestMemory,
    /// The request queues.
    pub queues: Vec<ActiveQueue>,
    /// Completions.
    pub interrupt: Arc<VirtioInterrupt>,
    /// The image.
    pub disk: Arc<Disk>,
    /// GET_ID's answer.
    pub serial: [u8; SERIAL_LEN],
    /// The guest's write-cache setting: off means every write is flushed.
    pub writeback: Arc<AtomicBool>,
}

impl BlockHandler {
    /// Serves one chain; returns the bytes written into it.
    fn serve(&self, chain: Chain<'_>) -> u32 {
        let descriptors: Vec<Descriptor> = chain.collect();
        let (status, request, written) = match parse(&descriptors, &self.memory) {
            Ok(request) => {
                let (status, written) = self.execute(&request);
                (status, request.status, written)
            }
            Err((_, Some(status))) => (S_IOERR, status, 0),
            Err((_, None)) => return 0,
        };
        if self.memory.write_obj(status, request).is_err() {
            return written;
        }
        written + 1
    }

    /// Runs `request`; returns its status and the data bytes written to the guest.
    fn execute(&self, request: &Request) -> (u8, u32) {
        let len = request.data_len();
        let offset = request.sector.wrapping_mul(SECTOR);
        let writes = matches!(
            request.kind,
            RequestKind::Out | RequestKind::Discard | RequestKind::WriteZeroes
        );
        if writes && self.disk.read_only() {
            return (S_IOERR, 0);
        }
        let result = match request.kind {
            RequestKind::In | RequestKind::Out if !self.disk.contains(request.sector, len) => {
                return (S_IOERR, 0)
            }
            RequestKind::In => self.disk.read_into(&self.memory, offset, &request.data),
            RequestKind::Out => self.write(offset, &request.data),
            RequestKind::Flush => self.disk.flush(),
            RequestKind::GetId => return (S_OK, self.get_id(&request.data)),
            RequestKind::Discard | RequestKind::WriteZeroes => self.ranges(request),
            RequestKind::Unsupported(_) => return (S_UNSUPP, 0),
        };
        match result {
            Ok(()) if request.kind == RequestKind::In => (S_OK, len as u32),
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

    fn write(&self, offset: u64, data: &[Segment]) -> std::io::Result<()> {
        self.disk.write_from(&self.memory, offset, data)?;
        if !self.writeback.load(Ordering::Relaxed) {
            self.disk.flush()?;
        }
        Ok(())
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
        if len == 0 || len % 16 != 0 || len / 16 > MAX_RANGES as u64 {
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
        serve_queues(&mut queues, which, &self.memory, &self.interrupt, |c| {
            self.serve(c)
        });
        self.queues = queues;
    }
}

impl MutEventSubscriber for BlockHandler {
    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        self.serve_all(Some(&events));
    }

    fn init(&mut self, ops: &mut EventOps) {
        watch_queues(&self.queues, ops);
        // Requests the driver posted before its first notification.
        self.serve_all(None);
    }
}
