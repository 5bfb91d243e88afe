//! File and descriptor system calls: passed through to the host on the guest's own
//! descriptors (user-run shares gasang's), with guest memory copied in and out.

use std::ffi::CString;

use super::{errno, host_error, Kernel};

/// fcntl commands whose argument is an integer (the others pass pointers).
const FCNTL_INTEGER_COMMANDS: [i32; 6] = [
    libc::F_DUPFD,
    libc::F_DUPFD_CLOEXEC,
    libc::F_GETFD,
    libc::F_SETFD,
    libc::F_GETFL,
    libc::F_SETFL,
];

/// The largest single read or write, as Linux caps one call at about 2 GiB.
const MAX_IO: u64 = 1 << 20;

impl Kernel {
    /// File system calls; `None` for any other number.
    pub(super) fn file_call(&mut self, nr: u64, a: [u64; 6]) -> Option<Result<i64, i64>> {
        let at_fdcwd = libc::AT_FDCWD as u64;
        Some(match nr {
            0 => self.read(a[0], a[1], a[2], None),
            17 => self.read(a[0], a[1], a[2], Some(a[3])),
            1 => self.write(a[0], a[1], a[2]),
            20 => self.writev(a[0], a[1], a[2]),
            2 => self.openat(at_fdcwd, a[0], a[1], a[2]),
            257 => self.openat(a[0], a[1], a[2], a[3]),
            4 => self.fstatat(at_fdcwd, Some(a[0]), a[1], 0),
            6 => self.fstatat(at_fdcwd, Some(a[0]), a[1], libc::AT_SYMLINK_NOFOLLOW as u64),
            5 => self.fstatat(a[0], None, a[1], libc::AT_EMPTY_PATH as u64),
            262 => self.fstatat(a[0], Some(a[1]), a[2], a[3]),
            21 => self.path_call(at_fdcwd, a[0], |dir, p| {
                // SAFETY: `p` is NUL-terminated; the mode is a plain value.
                unsafe { libc::faccessat(dir, p, a[1] as i32, 0) }
            }),
            269 | 439 => self.path_call(a[0], a[1], |dir, p| {
                // SAFETY: as above.
                unsafe { libc::faccessat(dir, p, a[2] as i32, 0) }
            }),
            87 => self.path_call(at_fdcwd, a[0], |dir, p| {
                // SAFETY: `p` is NUL-terminated.
                unsafe { libc::unlinkat(dir, p, 0) }
            }),
            263 => self.path_call(a[0], a[1], |dir, p| {
                // SAFETY: as above; the flags are a plain value.
                unsafe { libc::unlinkat(dir, p, a[2] as i32) }
            }),
            89 => self.readlink(at_fdcwd, a[0], a[1], a[2]),
            267 => self.readlink(a[0], a[1], a[2], a[3]),
            79 => self.getcwd(a[0], a[1]),
            217 => self.getdents(a[0], a[1], a[2]),
            _ => return Self::descriptor_call(nr, a).map(Ok),
        })
    }

    /// Calls on descriptors alone, with no guest memory.
    fn descriptor_call(nr: u64, a: [u64; 6]) -> Option<i64> {
        let fd = a[0] as i32;
        if nr == 3 {
            return Some(Self::host(close(a[0])));
        }
        if nr == 72 && !FCNTL_INTEGER_COMMANDS.contains(&(a[1] as i32)) {
            return Some(errno(libc::EINVAL));
        }
        // SAFETY: each call takes descriptor numbers and integers only (for fcntl, only
        // the commands whose third argument is an integer), so no memory is involved.
        let ret = unsafe {
            match nr {
                8 => libc::lseek(fd, a[1] as i64, a[2] as i32),
                32 => i64::from(libc::dup(fd)),
                33 => i64::from(libc::dup2(fd, a[1] as i32)),
                292 => i64::from(libc::dup3(fd, a[1] as i32, a[2] as i32)),
                77 => i64::from(libc::ftruncate(fd, a[1] as i64)),
                72 => i64::from(libc::fcntl(fd, a[1] as i32, a[2] as i32)),
                _ => return None,
            }
        };
        Some(Self::host(ret))
    }

    fn read(&mut self, fd: u64, buf: u64, len: u64, at: Option<u64>) -> Result<i64, i64> {
        let mut bytes = vec![0u8; len.min(MAX_IO) as usize];
        let (fd, ptr, n) = (fd as i32, bytes.as_mut_ptr().cast(), bytes.len());
        let got = match at {
            // SAFETY: `bytes` is valid for `n` bytes; the fd is the guest's.
            None => unsafe { libc::read(fd, ptr, n) },
            // SAFETY: as above; the offset is a plain value.
            Some(offset) => unsafe { libc::pread(fd, ptr, n, offset as i64) },
        };
        if got < 0 {
            return Ok(host_error());
        }
        self.write_guest(buf, &bytes[..got as usize])?;
        Ok(got as i64)
    }

    fn write(&mut self, fd: u64, buf: u64, len: u64) -> Result<i64, i64> {
        let bytes = self.read_guest(buf, len.min(MAX_IO))?;
        // SAFETY: `bytes` is valid for its length; the fd is the guest's, passed through.
        Ok(Self::host(
            unsafe { libc::write(fd as i32, bytes.as_ptr().cast(), bytes.len()) } as i64,
        ))
    }

    fn writev(&mut self, fd: u64, iov: u64, count: u64) -> Result<i64, i64> {
        let mut all = Vec::new();
        for i in 0..count.min(1024) {
            let entry = self.read_guest(iov + 16 * i, 16)?;
            let base = u64::from_le_bytes(entry[..8].try_into().expect("8 bytes"));
            let len = u64::from_le_bytes(entry[8..].try_into().expect("8 bytes"));
            all.extend(self.read_guest(base, len.min(MAX_IO))?);
        }
        // SAFETY: as for `write`.
        Ok(Self::host(
            unsafe { libc::write(fd as i32, all.as_ptr().cast(), all.len()) } as i64,
        ))
    }

    /// Runs `f(dir, path)` on a guest path.
    fn path_call(
        &mut self,
        dir: u64,
        path: u64,
        f: impl FnOnce(i32, *const libc::c_char) -> i32,
    ) -> Result<i64, i64> {
        let path = self.c_string(path)?;
        Ok(Self::host(i64::from(f(dir as i32, path.as_ptr()))))
    }

    fn openat(&mut self, dir: u64, path: u64, flags: u64, mode: u64) -> Result<i64, i64> {
        self.path_call(dir, path, |dir, p| {
            // SAFETY: `p` is NUL-terminated; the other arguments are plain values.
            unsafe { libc::openat(dir, p, flags as i32, mode as u32) }
        })
    }

    /// stat, lstat, fstat, newfstatat; the host's `struct stat` is the guest's (x86-64).
    fn fstatat(&mut self, dir: u64, path: Option<u64>, out: u64, flags: u64) -> Result<i64, i64> {
        let path = match path {
            Some(p) => self.c_string(p)?,
            None => CString::default(),
        };
        // SAFETY: all-zero is a valid `stat` to be filled.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `path` is NUL-terminated and `st` is a valid out-pointer.
        let ret = unsafe { libc::fstatat(dir as i32, path.as_ptr(), &mut st, flags as i32) };
        if ret != 0 {
            return Ok(host_error());
        }
        // SAFETY: `stat` is plain old data; viewing it as bytes reads initialized memory.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                std::ptr::addr_of!(st).cast::<u8>(),
                std::mem::size_of::<libc::stat>(),
            )
        };
        self.write_guest(out, bytes)?;
        Ok(0)
    }

    /// readlink(at); `/proc/self/exe` names the guest program, not gasang.
    fn readlink(&mut self, dir: u64, path: u64, buf: u64, len: u64) -> Result<i64, i64> {
        let path = self.c_string(path)?;
        let target = if path.as_bytes() == b"/proc/self/exe" {
            self.exe.clone()
        } else {
            let mut out = vec![0u8; 4096];
            // SAFETY: `path` is NUL-terminated and `out` valid for its length.
            let n = unsafe {
                libc::readlinkat(
                    dir as i32,
                    path.as_ptr(),
                    out.as_mut_ptr().cast(),
                    out.len(),
                )
            };
            if n < 0 {
                return Ok(host_error());
            }
            out.truncate(n as usize);
            out
        };
        let n = target.len().min(len as usize);
        self.write_guest(buf, &target[..n])?;
        Ok(n as i64)
    }

    fn getcwd(&mut self, buf: u64, len: u64) -> Result<i64, i64> {
        let cwd = std::env::current_dir().map_err(|_| errno(libc::ENOENT))?;
        let mut bytes = cwd.into_os_string().into_encoded_bytes();
        bytes.push(0);
        if bytes.len() as u64 > len {
            return Ok(errno(libc::ERANGE));
        }
        self.write_guest(buf, &bytes)?;
        Ok(bytes.len() as i64)
    }

    /// getdents64: the host's records are the guest's (the same ABI).
    fn getdents(&mut self, fd: u64, buf: u64, len: u64) -> Result<i64, i64> {
        let mut bytes = vec![0u8; len.min(MAX_IO) as usize];
        // SAFETY: `bytes` is valid for its length; the fd is the guest's.
        let n = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                fd as i32,
                bytes.as_mut_ptr(),
                bytes.len(),
            )
        };
        if n < 0 {
            return Ok(host_error());
        }
        self.write_guest(buf, &bytes[..n as usize])?;
        Ok(n)
    }
}

/// close(2). The guest's standard streams are gasang's own: closing them would lose
/// gasang's error reporting, so they stay open on the host.
pub(super) fn close(fd: u64) -> i64 {
    if fd <= 2 {
        return 0;
    }
    // SAFETY: close(2) on a descriptor number; at worst EBADF.
    i64::from(unsafe { libc::close(fd as i32) })
}
