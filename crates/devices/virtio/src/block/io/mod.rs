//! How a disk's reads, writes and flushes run off the device thread: on an io_uring
//! where the host allows one, else on a small pool of threads. Both take guest
//! buffers as iovecs, and report completions through an eventfd the device thread
//! watches, so one slow request never holds up the next.

mod threads;
mod uring;

use std::sync::Arc;

use vmm_sys_util::eventfd::EventFd;

pub use threads::ThreadPool;
pub use uring::{uring_available, UringEngine};

use super::disk::Disk;

/// Which engine the user asked for (`aio=`, as QEMU spells it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AioConfig {
    /// io_uring where the host allows it, else the thread pool.
    #[default]
    Auto,
    /// io_uring, or the disk is refused.
    IoUring,
    /// The thread pool.
    Threads,
}

/// Threads in a disk's pool: enough to keep a few requests in flight per disk.
pub const POOL_THREADS: usize = 4;

/// What a request asks of the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoKind {
    /// Read into the buffers.
    Read,
    /// Write the buffers.
    Write,
    /// Make completed writes durable.
    Flush,
}

/// Guest buffers as the kernel takes them.
#[derive(Debug, Default)]
pub struct Iovecs(pub Vec<libc::iovec>);

// SAFETY: the pointers are into guest RAM, which stays mapped for the VM's life and
// which any thread may access; the vector owns nothing behind them.
unsafe impl Send for Iovecs {}

/// One transfer or flush, with the token its completion comes back with.
#[derive(Debug)]
pub struct IoOp {
    /// The caller's name for it.
    pub token: u64,
    /// What it does.
    pub kind: IoKind,
    /// Byte offset in the image.
    pub offset: u64,
    /// The buffers (none for a flush).
    pub iovecs: Iovecs,
    /// The write is durable before it completes (the guest turned its cache off).
    pub dsync: bool,
}

/// A finished operation: its token and whether it succeeded.
pub type Completion = (u64, std::io::Result<()>);

/// A disk's engine.
#[derive(Debug)]
pub enum IoEngine {
    /// An io_uring (boxed: the ring's state is large).
    Uring(Box<UringEngine>),
    /// Threads doing positioned vectored I/O.
    Threads(ThreadPool),
}

/// The name, for logs, of the io_uring engine (`uring`) or of the thread pool.
pub fn engine_name(uring: bool) -> &'static str {
    if uring {
        "io_uring"
    } else {
        "a thread pool"
    }
}

impl IoEngine {
    /// An engine for `disk` with room for `depth` operations in flight: io_uring if
    /// `uring` and the host allows it, else the pool.
    pub fn new(disk: Arc<Disk>, uring: bool, depth: usize) -> std::io::Result<Self> {
        if uring {
            match UringEngine::new(disk.clone(), depth) {
                Ok(engine) => return Ok(Self::Uring(Box::new(engine))),
                Err(e) => tracing::warn!("virtio-blk: io_uring failed ({e}); using threads"),
            }
        }
        ThreadPool::new(disk, POOL_THREADS).map(Self::Threads)
    }

    /// Its name, for logs.
    pub fn name(&self) -> &'static str {
        engine_name(matches!(self, Self::Uring(_)))
    }

    /// Readable when completions are waiting.
    pub fn event(&self) -> &EventFd {
        match self {
            Self::Uring(e) => e.event(),
            Self::Threads(e) => e.event(),
        }
    }

    /// Queues `op`; it runs once [`commit`](Self::commit) is called.
    pub fn submit(&mut self, op: IoOp) {
        match self {
            Self::Uring(e) => e.submit(op),
            Self::Threads(e) => e.submit(op),
        }
    }

    /// Starts what was submitted since the last call.
    pub fn commit(&mut self) {
        if let Self::Uring(e) = self {
            e.commit();
        }
    }

    /// Moves finished operations into `out`, after draining the event.
    pub fn completions(&mut self, out: &mut Vec<Completion>) {
        let _ = self.event().read();
        match self {
            Self::Uring(e) => e.completions(out),
            Self::Threads(e) => e.completions(out),
        }
    }
}

#[cfg(test)]
mod tests;
