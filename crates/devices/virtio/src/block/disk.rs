//! A raw disk image on the host: opened and locked once, then read and written at
//! offsets straight from and into guest memory, through the page cache or (with
//! `cache=none`) around it.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use gasang_memory::GuestMemory;
use vm_memory::GuestMemoryBackend;

use super::io::{IoKind, IoOp, Iovecs};
use super::request::{Segment, SECTOR};

/// The image cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// It could not be opened.
    #[error("cannot open disk image {path}")]
    Open {
        /// The image.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Another process holds a lock that conflicts with ours.
    #[error("disk image {0} is in use by another process (another gasang or QEMU has it open for writing, or this one wants to write and it is open elsewhere)")]
    Locked(PathBuf),
    /// `cache=none` asks for O_DIRECT, which the image's file system does not offer.
    #[error("disk image {0}: cache=none needs O_DIRECT, which its file system does not support; use cache=writeback")]
    NoDirectIo(PathBuf),
    /// `aio=io_uring` was asked for, and the host does not allow io_uring.
    #[error("disk image {path}: aio=io_uring is not available on this host; use aio=threads")]
    NoUring {
        /// The image.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It is not a regular file or block device, or its size cannot be read.
    #[error("disk image {0} is not a regular file or block device")]
    NotAnImage(PathBuf),
}

/// An open, locked image.
#[derive(Debug)]
pub struct Disk {
    /// Through the host's page cache; holds the lock.
    file: File,
    /// With `cache=none`: the same image with O_DIRECT, for aligned transfers.
    direct: Option<File>,
    read_only: bool,
    sectors: u64,
}

/// What O_DIRECT transfers must be aligned to (offsets, lengths and buffers); one the
/// file system refuses anyway goes through the cache.
const DIRECT_ALIGN: u64 = 512;

impl Disk {
    /// Opens `path` (read-only if `read_only`, also with O_DIRECT if `direct`) and
    /// locks it as QEMU does: shared for a read-only disk, exclusive for a writable one.
    pub fn open(path: &Path, read_only: bool, direct: bool) -> Result<Self, DiskError> {
        let open = |flags: libc::c_int| {
            OpenOptions::new()
                .read(true)
                .write(!read_only)
                .custom_flags(flags)
                .open(path)
                .map_err(|source| DiskError::Open {
                    path: path.to_owned(),
                    source,
                })
        };
        let file = open(0)?;
        let meta = file
            .metadata()
            .map_err(|_| DiskError::NotAnImage(path.to_owned()))?;
        if meta.is_dir() {
            return Err(DiskError::NotAnImage(path.to_owned()));
        }
        let how = if read_only {
            libc::LOCK_SH
        } else {
            libc::LOCK_EX
        };
        // SAFETY: flock on a descriptor this function owns; no memory is involved.
        if unsafe { libc::flock(file.as_raw_fd(), how | libc::LOCK_NB) } != 0 {
            return Err(DiskError::Locked(path.to_owned()));
        }
        let direct = match direct {
            true => Some(open(libc::O_DIRECT).map_err(|e| match e {
                DiskError::Open { source, .. } if source.raw_os_error() == Some(libc::EINVAL) => {
                    DiskError::NoDirectIo(path.to_owned())
                }
                other => other,
            })?),
            false => None,
        };
        let bytes = file_size(&file).ok_or_else(|| DiskError::NotAnImage(path.to_owned()))?;
        Ok(Self {
            file,
            direct,
            read_only,
            sectors: bytes / SECTOR,
        })
    }

    /// Capacity in 512-byte sectors.
    pub fn sectors(&self) -> u64 {
        self.sectors
    }

    /// Whether writes are refused.
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// Whether `len` bytes at `sector` lie within the disk.
    pub fn contains(&self, sector: u64, len: u64) -> bool {
        let end = sector.checked_mul(SECTOR).and_then(|s| s.checked_add(len));
        end.is_some_and(|end| end <= self.sectors * SECTOR)
    }

    /// The host buffers behind guest buffers `data`; an error if any lies outside RAM.
    pub fn iovecs(memory: &GuestMemory, data: &[Segment]) -> std::io::Result<Iovecs> {
        let mut iovecs = Vec::with_capacity(data.len());
        for s in data {
            for slice in memory.get_slices(s.addr, s.len as usize) {
                let slice = slice.map_err(|_| std::io::Error::from(ErrorKind::InvalidInput))?;
                iovecs.push(libc::iovec {
                    iov_base: slice.ptr_guard_mut().as_ptr().cast(),
                    iov_len: slice.len(),
                });
            }
        }
        Ok(Iovecs(iovecs))
    }

    /// The descriptor `op` goes through: the direct one if it has one and `op` is
    /// aligned for it.
    pub fn fd_for(&self, op: &IoOp) -> RawFd {
        let aligned = |n: u64| n.is_multiple_of(DIRECT_ALIGN);
        match &self.direct {
            Some(direct)
                if aligned(op.offset)
                    && op
                        .iovecs
                        .0
                        .iter()
                        .all(|v| aligned(v.iov_base as u64) && aligned(v.iov_len as u64)) =>
            {
                direct.as_raw_fd()
            }
            _ => self.file.as_raw_fd(),
        }
    }

    /// Runs `op` here, to its end.
    pub fn run(&self, op: &mut IoOp) -> std::io::Result<()> {
        match self.run_on(self.fd_for(op), op) {
            Err(e) => self.after_error(op, e),
            ok => ok,
        }
    }

    /// What `op`, failed with `e`, comes to: if it went through the O_DIRECT
    /// descriptor and the file system refused it for its alignment (EINVAL), it is
    /// redone here through the page cache; otherwise it failed.
    pub fn after_error(&self, op: &mut IoOp, e: std::io::Error) -> std::io::Result<()> {
        let buffered = self.file.as_raw_fd();
        if e.raw_os_error() == Some(libc::EINVAL) && self.fd_for(op) != buffered {
            return self.run_on(buffered, op);
        }
        Err(e)
    }

    fn run_on(&self, fd: RawFd, op: &mut IoOp) -> std::io::Result<()> {
        let write = match op.kind {
            IoKind::Flush => return self.flush(),
            IoKind::Read => false,
            IoKind::Write => true,
        };
        let flags = if write && op.dsync {
            libc::RWF_DSYNC
        } else {
            0
        };
        transfer(fd, op.offset, &mut op.iovecs.0, write, flags)
    }

    /// Drops `n` transferred bytes from the front of `iovecs`.
    pub fn advance(iovecs: &mut Vec<libc::iovec>, n: usize) {
        let first = advance(iovecs, 0, n);
        iovecs.drain(..first);
    }

    /// Makes every completed write durable.
    pub fn flush(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }

    /// Deallocates `len` bytes at `offset` (they read as zeros after).
    pub fn punch_hole(&self, offset: u64, len: u64) -> std::io::Result<()> {
        self.fallocate(
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            offset,
            len,
        )
    }

    /// Zeroes `len` bytes at `offset`, keeping them allocated where the file system can.
    pub fn zero_range(&self, offset: u64, len: u64) -> std::io::Result<()> {
        self.fallocate(
            libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE,
            offset,
            len,
        )
        .or_else(|_| self.punch_hole(offset, len))
    }

    fn fallocate(&self, mode: libc::c_int, offset: u64, len: u64) -> std::io::Result<()> {
        // SAFETY: fallocate on a descriptor this Disk owns; no memory is involved.
        let r = unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                mode,
                offset as libc::off_t,
                len as libc::off_t,
            )
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Drops `n` transferred bytes from the front of `iovecs[first..]`; returns the new
/// first iovec.
fn advance(iovecs: &mut [libc::iovec], mut first: usize, mut n: usize) -> usize {
    while n > 0 && first < iovecs.len() {
        let v = &mut iovecs[first];
        if n >= v.iov_len {
            n -= v.iov_len;
            first += 1;
        } else {
            // SAFETY: `n < iov_len`, so the new base stays inside the same buffer.
            v.iov_base = unsafe { v.iov_base.cast::<u8>().add(n).cast() };
            v.iov_len -= n;
            n = 0;
        }
    }
    first
}

/// Positioned vectored I/O over every iovec, resumed after short transfers.
fn transfer(
    fd: RawFd,
    mut offset: u64,
    iovecs: &mut [libc::iovec],
    write: bool,
    flags: libc::c_int,
) -> std::io::Result<()> {
    let mut first = 0;
    while first < iovecs.len() {
        let batch = &iovecs[first..(first + 1024).min(iovecs.len())];
        let (count, at) = (batch.len() as libc::c_int, offset as libc::off_t);
        // SAFETY: each iovec points into a guest RAM mapping, which stays mapped for
        // the VM's life, for its length; preadv2 writes and pwritev2 reads only
        // within them.
        let n = unsafe {
            if write {
                libc::pwritev2(fd, batch.as_ptr(), count, at, flags)
            } else {
                libc::preadv2(fd, batch.as_ptr(), count, at, flags)
            }
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            // Past the end of a file that shrank under us.
            return Err(ErrorKind::UnexpectedEof.into());
        }
        offset += n as u64;
        first = advance(iovecs, first, n as usize);
    }
    Ok(())
}

/// A regular file's length, or a block device's size.
fn file_size(file: &File) -> Option<u64> {
    use std::io::{Seek, SeekFrom};
    let meta = file.metadata().ok()?;
    if meta.is_file() {
        return Some(meta.len());
    }
    let mut f = file;
    f.seek(SeekFrom::End(0)).ok()
}
