//! The io_uring engine: one ring per disk, its completions signalled on an eventfd.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use io_uring::{opcode, types, IoUring, Probe};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::{Completion, IoKind, IoOp};
use crate::block::disk::Disk;

/// Whether this host lets gasang use io_uring for disks, and if not, why.
pub fn uring_available() -> std::io::Result<()> {
    let ring = IoUring::new(2)?;
    probe(&ring)
}

/// Every opcode the engine uses is supported (5.1 and later kernels).
fn probe(ring: &IoUring) -> std::io::Result<()> {
    let mut probe = Probe::new();
    ring.submitter().register_probe(&mut probe)?;
    let codes = [
        opcode::Readv::CODE,
        opcode::Writev::CODE,
        opcode::Fsync::CODE,
    ];
    if codes.iter().all(|&c| probe.is_supported(c)) {
        Ok(())
    } else {
        Err(std::io::ErrorKind::Unsupported.into())
    }
}

/// A ring and the operations the kernel holds.
pub struct UringEngine {
    ring: IoUring,
    disk: Arc<Disk>,
    event: EventFd,
    /// Submitted and not yet completed: their iovecs must outlive the kernel's use.
    in_flight: HashMap<u64, IoOp>,
    /// Finished without the ring (it was full, or refused them).
    finished: Vec<Completion>,
}

impl std::fmt::Debug for UringEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringEngine")
            .field("in_flight", &self.in_flight.len())
            .finish_non_exhaustive()
    }
}

impl UringEngine {
    /// A ring with room for `depth` operations in flight.
    pub fn new(disk: Arc<Disk>, depth: usize) -> std::io::Result<Self> {
        let entries = depth.clamp(2, 4096).next_power_of_two() as u32;
        let ring = IoUring::new(entries)?;
        probe(&ring)?;
        let event = EventFd::new(EFD_NONBLOCK)?;
        ring.submitter().register_eventfd(event.as_raw_fd())?;
        Ok(Self {
            ring,
            disk,
            event,
            in_flight: HashMap::new(),
            finished: Vec::new(),
        })
    }

    /// Readable when completions are waiting.
    pub fn event(&self) -> &EventFd {
        &self.event
    }

    /// Queues `op` on the ring; if the ring cannot take it, runs it here.
    pub fn submit(&mut self, op: IoOp) {
        let fd = types::Fd(self.disk.fd_for(&op));
        let (iov, count) = (op.iovecs.0.as_ptr(), op.iovecs.0.len() as u32);
        let entry = match op.kind {
            IoKind::Read => opcode::Readv::new(fd, iov, count).offset(op.offset).build(),
            IoKind::Write => {
                let flags = if op.dsync { libc::RWF_DSYNC } else { 0 };
                let write = opcode::Writev::new(fd, iov, count).offset(op.offset);
                write.rw_flags(flags).build()
            }
            IoKind::Flush => opcode::Fsync::new(fd)
                .flags(types::FsyncFlags::DATASYNC)
                .build(),
        }
        .user_data(op.token);
        // SAFETY: the entry's iovec array and the buffers it points to stay valid
        // until the kernel completes it: the array lives in `in_flight` (a Vec's heap
        // buffer does not move with it), the buffers are guest RAM, mapped for the
        // VM's life, and Drop waits for every operation before either goes.
        let pushed = unsafe { self.ring.submission().push(&entry) };
        if pushed.is_ok() {
            self.in_flight.insert(op.token, op);
            return;
        }
        let mut op = op;
        let result = self.disk.run(&mut op);
        self.finished.push((op.token, result));
        let _ = self.event.write(1);
    }

    /// Hands the queued entries to the kernel.
    pub fn commit(&mut self) {
        if let Err(e) = self.ring.submit() {
            // EAGAIN or EBUSY: the kernel takes them on the next submit.
            tracing::debug!("io_uring submit: {e}");
        }
    }

    /// Moves finished operations into `out`.
    pub fn completions(&mut self, out: &mut Vec<Completion>) {
        out.append(&mut self.finished);
        let done: Vec<(u64, i32)> = self
            .ring
            .completion()
            .map(|c| (c.user_data(), c.result()))
            .collect();
        for (token, result) in done {
            let Some(op) = self.in_flight.remove(&token) else {
                continue;
            };
            out.push((token, self.finish(op, result)));
        }
    }

    /// A completion's outcome: a short transfer is finished here, and a direct
    /// transfer the file system refused for its alignment is redone through the cache.
    fn finish(&self, mut op: IoOp, result: i32) -> std::io::Result<()> {
        if result < 0 {
            let e = std::io::Error::from_raw_os_error(-result);
            return self.disk.after_error(&mut op, e);
        }
        let done = result as usize;
        let total: usize = op.iovecs.0.iter().map(|v| v.iov_len).sum();
        if op.kind == IoKind::Flush || done >= total {
            return Ok(());
        }
        if done == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        op.offset += done as u64;
        Disk::advance(&mut op.iovecs.0, done);
        self.disk.run(&mut op)
    }
}

impl Drop for UringEngine {
    fn drop(&mut self) {
        // The kernel may still write into guest RAM and read the iovecs: wait for it.
        while !self.in_flight.is_empty() {
            if self.ring.submit_and_wait(1).is_err() {
                break;
            }
            let done: Vec<u64> = self.ring.completion().map(|c| c.user_data()).collect();
            for token in done {
                self.in_flight.remove(&token);
            }
        }
    }
}
