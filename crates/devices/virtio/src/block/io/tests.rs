#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Completion, IoEngine, IoKind, IoOp, Iovecs};
use crate::block::disk::Disk;

/// A heap buffer aligned for O_DIRECT.
struct Aligned {
    ptr: *mut u8,
    layout: std::alloc::Layout,
}

impl Aligned {
    fn new(len: usize) -> Self {
        let layout = std::alloc::Layout::from_size_align(len, 4096).unwrap();
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!ptr.is_null());
        Self { ptr, layout }
    }

    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` is a live allocation of `layout.size()` bytes owned by self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.layout.size()) }
    }

    /// `len` bytes from `at`, as an iovec.
    fn iovec(&mut self, at: usize, len: usize) -> libc::iovec {
        assert!(at + len <= self.layout.size());
        libc::iovec {
            iov_base: self.bytes()[at..].as_mut_ptr().cast(),
            iov_len: len,
        }
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) }
    }
}

fn image(name: &str, len: u64) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("gasang-io-{name}-{}", std::process::id()));
    std::fs::File::create(&path).unwrap().set_len(len).unwrap();
    path
}

fn op(token: u64, kind: IoKind, offset: u64, iovecs: Vec<libc::iovec>) -> IoOp {
    IoOp {
        token,
        kind,
        offset,
        iovecs: Iovecs(iovecs),
        dsync: token.is_multiple_of(2),
    }
}

/// Submits `ops` and waits (at most 10 s) for all of them.
fn run(engine: &mut IoEngine, ops: Vec<IoOp>) -> Vec<Completion> {
    let want = ops.len();
    for op in ops {
        engine.submit(op);
    }
    engine.commit();
    let mut done = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while done.len() < want {
        assert!(
            Instant::now() < deadline,
            "{} of {want} completed",
            done.len()
        );
        engine.completions(&mut done);
        std::thread::sleep(Duration::from_millis(1));
    }
    done.sort_by_key(|(token, _)| *token);
    done
}

/// Writes a pattern in two operations, flushes, reads it back in one.
fn round_trip(uring: bool, direct: bool, misalign: usize) {
    let path = image(&format!("{uring}-{direct}-{misalign}"), 1 << 20);
    let disk = Arc::new(Disk::open(&path, false, direct).unwrap());
    let mut engine = IoEngine::new(disk, uring, 8).unwrap();
    assert_eq!(
        engine.name(),
        if uring { "io_uring" } else { "a thread pool" }
    );
    let mut out = Aligned::new(16384);
    for (k, b) in out.bytes().iter_mut().enumerate() {
        *b = (k * 7 + 3) as u8;
    }
    let writes = vec![
        op(1, IoKind::Write, 4096, vec![out.iovec(misalign, 4096)]),
        op(
            2,
            IoKind::Write,
            8192,
            vec![out.iovec(4096 + misalign, 8192)],
        ),
    ];
    for (_, result) in run(&mut engine, writes) {
        result.unwrap();
    }
    run(&mut engine, vec![op(3, IoKind::Flush, 0, Vec::new())])[0]
        .1
        .as_ref()
        .unwrap();
    let mut back = Aligned::new(16384);
    let read = vec![back.iovec(0, 4096), back.iovec(4096 + misalign, 8192)];
    run(&mut engine, vec![op(4, IoKind::Read, 4096, read)])[0]
        .1
        .as_ref()
        .unwrap();
    let expect = out.bytes()[misalign..misalign + 12288].to_vec();
    let mut got = back.bytes()[..4096].to_vec();
    got.extend_from_slice(&back.bytes()[4096 + misalign..4096 + misalign + 8192]);
    assert!(got == expect, "read back what was written");
    let file = std::fs::read(&path).unwrap();
    assert!(file[4096..16384] == expect[..], "the image holds it");
    std::fs::remove_file(path).unwrap();
}

#[test]
fn test_thread_pool_writes_flushes_and_reads_back() {
    round_trip(false, false, 0);
}

#[test]
fn test_io_uring_writes_flushes_and_reads_back() {
    round_trip(true, false, 0);
}

#[test]
fn test_direct_io_aligned_and_misaligned_buffers_on_both_engines() {
    for uring in [false, true] {
        round_trip(uring, true, 0);
        // Buffers O_DIRECT refuses go through the page cache instead.
        round_trip(uring, true, 8);
    }
}

#[test]
fn test_a_failed_write_reports_its_error() {
    let path = image("readonly", 4096);
    let disk = Arc::new(Disk::open(&path, true, false).unwrap());
    for uring in [false, true] {
        let mut engine = IoEngine::new(disk.clone(), uring, 4).unwrap();
        let mut buf = Aligned::new(4096);
        // A write to a read-only descriptor: EBADF.
        let write = op(1, IoKind::Write, 0, vec![buf.iovec(0, 4096)]);
        let done = run(&mut engine, vec![write]);
        let e = done[0].1.as_ref().unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EBADF), "{e}");
    }
    std::fs::remove_file(path).unwrap();
}

#[test]
fn test_dropping_an_engine_waits_for_what_it_holds() {
    let path = image("drop", 1 << 20);
    let disk = Arc::new(Disk::open(&path, false, false).unwrap());
    for uring in [false, true] {
        let mut engine = IoEngine::new(disk.clone(), uring, 64).unwrap();
        let mut buf = Aligned::new(64 * 4096);
        for k in 0..64 {
            let iov = buf.iovec(k * 4096, 4096);
            engine.submit(op(k as u64, IoKind::Write, (k * 4096) as u64, vec![iov]));
        }
        engine.commit();
        drop(engine); // must not return while the kernel or a thread uses `buf`
        drop(buf);
    }
    std::fs::remove_file(path).unwrap();
}
