//! The thread-pool engine: a few threads doing positioned vectored I/O, for hosts
//! where io_uring is unavailable (old kernels, seccomp, `kernel.io_uring_disabled`).

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::{Completion, IoOp};
use crate::block::disk::Disk;

/// The pool's threads and what they share with the device thread.
#[derive(Debug)]
pub struct ThreadPool {
    jobs: Option<Sender<IoOp>>,
    done: Arc<Mutex<Vec<Completion>>>,
    event: Arc<EventFd>,
    threads: Vec<JoinHandle<()>>,
}

impl ThreadPool {
    /// Starts `threads` threads for `disk`.
    pub fn new(disk: Arc<Disk>, threads: usize) -> std::io::Result<Self> {
        let (jobs, queue) = channel::<IoOp>();
        let queue = Arc::new(Mutex::new(queue));
        let done = Arc::new(Mutex::new(Vec::new()));
        let event = Arc::new(EventFd::new(EFD_NONBLOCK)?);
        let mut pool = Self {
            jobs: Some(jobs),
            done,
            event,
            threads: Vec::new(),
        };
        for k in 0..threads.max(1) {
            let (disk, queue) = (disk.clone(), queue.clone());
            let (done, event) = (pool.done.clone(), pool.event.clone());
            let thread = std::thread::Builder::new()
                .name(format!("virtio-blk-io{k}"))
                .spawn(move || serve(&disk, &queue, &done, &event))?;
            pool.threads.push(thread);
        }
        Ok(pool)
    }

    /// Readable when completions are waiting.
    pub fn event(&self) -> &EventFd {
        &self.event
    }

    /// Hands `op` to the next free thread.
    pub fn submit(&mut self, op: IoOp) {
        let Some(jobs) = &self.jobs else { return };
        if let Err(lost) = jobs.send(op) {
            // Every thread is gone (they never stop while `jobs` lives): fail it.
            let failed = std::io::Error::other("the I/O threads stopped");
            finished(&self.done, &self.event, (lost.0.token, Err(failed)));
        }
    }

    /// Moves finished operations into `out`.
    pub fn completions(&mut self, out: &mut Vec<Completion>) {
        out.append(&mut lock(&self.done));
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        // The threads finish what was queued (guest RAM outlives them), then stop.
        self.jobs = None;
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn serve(
    disk: &Disk,
    queue: &Mutex<Receiver<IoOp>>,
    done: &Mutex<Vec<Completion>>,
    event: &EventFd,
) {
    loop {
        let next = lock(queue).recv();
        let Ok(mut op) = next else { return };
        let result = disk.run(&mut op);
        finished(done, event, (op.token, result));
    }
}

/// Hands `completion` to the device thread.
fn finished(done: &Mutex<Vec<Completion>>, event: &EventFd, completion: Completion) {
    lock(done).push(completion);
    let _ = event.write(1);
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
