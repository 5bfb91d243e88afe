//! A raw disk image on the host: opened and locked once, then read and written at
//! offsets straight from and into guest memory.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use gasang_memory::GuestMemory;
use vm_memory::{GuestMemoryBackend, VolatileSlice};

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
    /// It is not a regular file or block device, or its size cannot be read.
    #[error("disk image {0} is not a regular file or block device")]
    NotAnImage(PathBuf),
}

/// An open, locked image.
#[derive(Debug)]
pub struct Disk {
    file: File,
    read_only: bool,
    sectors: u64,
}

impl Disk {
    /// Opens `path` (read-only if `read_only`) and locks it as QEMU does: shared for
    /// a read-only disk, exclusive for a writable one.
    pub fn open(path: &Path, read_only: bool) -> Result<Self, DiskError> {
        let file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)
            .map_err(|source| DiskError::Open {
                path: path.to_owned(),
                source,
            })?;
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
        let bytes = file_size(&file).ok_or_else(|| DiskError::NotAnImage(path.to_owned()))?;
        Ok(Self {
            file,
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

    /// Reads the disk at `offset` into the guest buffers `data`.
    pub fn read_into(
        &self,
        memory: &GuestMemory,
        offset: u64,
        data: &[Segment],
    ) -> std::io::Result<()> {
        let slices = guest_slices(memory, data)?;
        self.vectored(offset, &slices, false)
    }

    /// Writes the guest buffers `data` to the disk at `offset`.
    pub fn write_from(
        &self,
        memory: &GuestMemory,
        offset: u64,
        data: &[Segment],
    ) -> std::io::Result<()> {
        let slices = guest_slices(memory, data)?;
        self.vectored(offset, &slices, true)
    }

    /// Positioned vectored I/O over every slice, resumed after short transfers.
    fn vectored(
        &self,
        mut offset: u64,
        slices: &[VolatileSlice<'_, ()>],
        write: bool,
    ) -> std::io::Result<()> {
        let mut iovecs: Vec<libc::iovec> = slices
            .iter()
            .map(|s| libc::iovec {
                iov_base: s.ptr_guard_mut().as_ptr().cast(),
                iov_len: s.len(),
            })
            .collect();
        let mut first = 0;
        while first < iovecs.len() {
            let batch = &iovecs[first..(first + 1024).min(iovecs.len())];
            let fd = self.file.as_raw_fd();
            let count = batch.len() as libc::c_int;
            let at = offset as libc::off_t;
            // SAFETY: each iovec points into a guest RAM mapping that `memory` (borrowed
            // by the caller for this call) keeps mapped, for the slice's length;
            // preadv writes and pwritev reads only within them.
            let n = unsafe {
                if write {
                    libc::pwritev(fd, batch.as_ptr(), count, at)
                } else {
                    libc::preadv(fd, batch.as_ptr(), count, at)
                }
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                // Past the end of a file that shrank under us.
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            offset += n as u64;
            first = advance(&mut iovecs, first, n as usize);
        }
        Ok(())
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

/// The host slices behind guest buffers; an error if any lies outside guest RAM.
fn guest_slices<'a>(
    memory: &'a GuestMemory,
    data: &[Segment],
) -> std::io::Result<Vec<VolatileSlice<'a, ()>>> {
    let mut slices = Vec::with_capacity(data.len());
    for s in data {
        for slice in memory.get_slices(s.addr, s.len as usize) {
            slices.push(slice.map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?);
        }
    }
    Ok(slices)
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
