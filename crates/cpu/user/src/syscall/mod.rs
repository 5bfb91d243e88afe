//! The Linux system call layer: enough for busybox and static C programs. File and time
//! calls pass through to the host; memory calls act on the process's address space.

use std::collections::BTreeSet;

use gasang_softcpu::{Access, CpuState, Gpr, Memory};

use crate::memory::{UserMemory, PAGE};

mod files;

/// Where `mmap` without a hint looks for room (below it).
const MMAP_TOP: u64 = 0x7f00_0000_0000;

/// What a system call leads to.
pub enum Outcome {
    /// Continue with this return value in RAX.
    Return(i64),
    /// The process exited with this status.
    Exit(i32),
}

/// The process state system calls act on.
#[derive(Debug)]
pub struct Kernel {
    /// The address space.
    pub mem: UserMemory,
    /// Current program break.
    pub brk: u64,
    /// Where the heap starts (brk never goes below).
    pub brk_start: u64,
    /// Unimplemented calls already reported.
    reported: BTreeSet<u64>,
    /// The program's path, for `/proc/self/exe`.
    exe: Vec<u8>,
}

pub(crate) fn errno(e: i32) -> i64 {
    -i64::from(e)
}

/// The host's last error, as a negative return value.
pub(crate) fn host_error() -> i64 {
    errno(
        std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO),
    )
}

impl Kernel {
    /// A kernel for `mem` whose heap starts at `brk`.
    pub fn new(mem: UserMemory, brk: u64, exe: Vec<u8>) -> Self {
        Self {
            mem,
            brk,
            brk_start: brk,
            reported: BTreeSet::new(),
            exe,
        }
    }

    pub(crate) fn read_guest(&mut self, addr: u64, len: u64) -> Result<Vec<u8>, i64> {
        let len = usize::try_from(len).map_err(|_| errno(libc::EFAULT))?;
        let mut buf = vec![0u8; len.min(1 << 30)];
        self.mem
            .read(addr, &mut buf, Access::Read)
            .map_err(|_| errno(libc::EFAULT))?;
        Ok(buf)
    }

    pub(crate) fn write_guest(&mut self, addr: u64, bytes: &[u8]) -> Result<(), i64> {
        self.mem.write(addr, bytes).map_err(|_| errno(libc::EFAULT))
    }

    /// A NUL-terminated string from guest memory (at most 4 KiB, as PATH_MAX).
    pub(crate) fn c_string(&mut self, addr: u64) -> Result<std::ffi::CString, i64> {
        let mut bytes = Vec::new();
        for i in 0..4096 {
            let mut b = [0u8];
            self.mem
                .read(addr + i, &mut b, Access::Read)
                .map_err(|_| errno(libc::EFAULT))?;
            if b[0] == 0 {
                return std::ffi::CString::new(bytes).map_err(|_| errno(libc::EINVAL));
            }
            bytes.push(b[0]);
        }
        Err(errno(libc::ENAMETOOLONG))
    }

    /// Handles the system call in `st` (number in RAX, arguments in RDI, RSI, RDX, R10,
    /// R8, R9).
    pub fn syscall(&mut self, st: &mut CpuState) -> Outcome {
        let nr = st.reg(Gpr::Rax);
        let a = [Gpr::Rdi, Gpr::Rsi, Gpr::Rdx, Gpr::R10, Gpr::R8, Gpr::R9].map(|r| st.reg(r));
        let result = match nr {
            60 | 231 => return Outcome::Exit(a[0] as i32),
            9 => Ok(self.mmap(a)),
            10 | 28 => Ok(0), // mprotect, madvise: all mappings are read-write here
            11 => {
                self.mem.unmap(a[0] & !(PAGE - 1), a[1]);
                Ok(0)
            }
            12 => Ok(self.set_brk(a[0]) as i64),
            13 | 14 | 273 | 334 => Ok(0), // signals, robust futexes, rseq: accepted, unused
            16 => Ok(errno(libc::ENOTTY)),
            39 | 110 | 186 => Ok(i64::from(std::process::id())),
            102 | 104 | 107 | 108 => Ok(0),
            158 => self.arch_prctl(st, a[0], a[1]),
            218 => Ok(i64::from(std::process::id())),
            228 => self.clock_gettime(a[0], a[1]),
            318 => self.getrandom(a[0], a[1]),
            63 => self.uname(a[0]),
            302 => self.prlimit(a[0], a[1], a[2], a[3]),
            157 => Ok(errno(libc::EINVAL)), // prctl: no options here
            99 => self.sysinfo(a[0]),
            _ => match self.file_call(nr, a) {
                Some(result) => result,
                None => Ok(self.unimplemented(nr)),
            },
        };
        Outcome::Return(result.unwrap_or_else(|e| e))
    }

    pub(crate) fn host(ret: i64) -> i64 {
        if ret < 0 {
            host_error()
        } else {
            ret
        }
    }

    fn unimplemented(&mut self, nr: u64) -> i64 {
        if self.reported.insert(nr) {
            tracing::warn!("user-run: system call {nr} is not implemented (ENOSYS)");
        }
        errno(libc::ENOSYS)
    }

    /// Anonymous mappings (file mappings are not supported yet: ENODEV).
    fn mmap(&mut self, a: [u64; 6]) -> i64 {
        let (addr, len, flags) = (a[0], a[1], a[3]);
        if flags & libc::MAP_ANONYMOUS as u64 == 0 {
            return errno(libc::ENODEV);
        }
        if len == 0 {
            return errno(libc::EINVAL);
        }
        let at = if flags & libc::MAP_FIXED as u64 != 0 {
            addr & !(PAGE - 1)
        } else {
            match self.mem.find_free(len, MMAP_TOP) {
                Some(at) => at,
                None => return errno(libc::ENOMEM),
            }
        };
        self.mem.map(at, len);
        at as i64
    }

    /// brk: grows or shrinks the heap; returns the (possibly unchanged) break.
    fn set_brk(&mut self, new: u64) -> u64 {
        if new < self.brk_start || new > self.brk_start + (1 << 30) {
            return self.brk;
        }
        let (old_end, new_end) = (self.brk.next_multiple_of(PAGE), new.next_multiple_of(PAGE));
        if new_end > old_end {
            self.mem.map(old_end, new_end - old_end);
        } else if new_end < old_end {
            self.mem.unmap(new_end, old_end - new_end);
        }
        self.brk = new;
        new
    }

    /// prlimit64 on the process itself: reports the host's limits; setting is accepted
    /// and ignored (user-run enforces none).
    fn prlimit(&mut self, pid: u64, resource: u64, _new: u64, old: u64) -> Result<i64, i64> {
        if pid != 0 && pid != u64::from(std::process::id()) {
            return Ok(errno(libc::ESRCH));
        }
        if old != 0 {
            let mut limit = libc::rlimit64 {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: `limit` is a valid out-pointer; the resource is a plain value.
            if unsafe { libc::getrlimit64(resource as _, &mut limit) } != 0 {
                return Ok(host_error());
            }
            let mut bytes = limit.rlim_cur.to_le_bytes().to_vec();
            bytes.extend(limit.rlim_max.to_le_bytes());
            self.write_guest(old, &bytes)?;
        }
        Ok(0)
    }

    /// sysinfo: the host's figures (glibc sizes qsort's buffer from them).
    fn sysinfo(&mut self, out: u64) -> Result<i64, i64> {
        // SAFETY: all-zero is a valid `sysinfo` to be filled.
        let mut info: libc::sysinfo = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid out-pointer.
        if unsafe { libc::sysinfo(&mut info) } != 0 {
            return Ok(host_error());
        }
        // SAFETY: `sysinfo` is plain old data of the guest's layout (x86-64).
        let bytes = unsafe {
            std::slice::from_raw_parts(
                std::ptr::addr_of!(info).cast::<u8>(),
                std::mem::size_of::<libc::sysinfo>(),
            )
        };
        self.write_guest(out, bytes)?;
        Ok(0)
    }

    fn arch_prctl(&mut self, st: &mut CpuState, code: u64, addr: u64) -> Result<i64, i64> {
        const ARCH_SET_FS: u64 = 0x1002;
        const ARCH_GET_FS: u64 = 0x1003;
        match code {
            ARCH_SET_FS => st.seg[4].base = addr,
            ARCH_GET_FS => self.write_guest(addr, &st.seg[4].base.to_le_bytes())?,
            _ => return Ok(errno(libc::EINVAL)),
        }
        Ok(0)
    }

    fn clock_gettime(&mut self, clock: u64, out: u64) -> Result<i64, i64> {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid timespec to fill.
        if unsafe { libc::clock_gettime(clock as i32, &mut ts) } != 0 {
            return Ok(host_error());
        }
        let mut bytes = ts.tv_sec.to_le_bytes().to_vec();
        bytes.extend(ts.tv_nsec.to_le_bytes());
        self.write_guest(out, &bytes)?;
        Ok(0)
    }

    fn getrandom(&mut self, buf: u64, len: u64) -> Result<i64, i64> {
        let mut bytes = vec![0u8; usize::try_from(len.min(1 << 16)).unwrap_or(0)];
        // SAFETY: `bytes` is valid for its length.
        let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
        if n < 0 {
            return Ok(host_error());
        }
        self.write_guest(buf, &bytes[..n as usize])?;
        Ok(n as i64)
    }

    fn uname(&mut self, out: u64) -> Result<i64, i64> {
        let fields: [&[u8]; 6] = [
            b"Linux",
            b"gasang",
            b"6.1.0",
            b"#1 gasang user-run",
            b"x86_64",
            b"(none)",
        ];
        let mut bytes = vec![0u8; 6 * 65];
        for (i, f) in fields.iter().enumerate() {
            bytes[i * 65..i * 65 + f.len()].copy_from_slice(f);
        }
        self.write_guest(out, &bytes)?;
        Ok(0)
    }
}
