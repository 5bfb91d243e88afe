//! Guest RAM for system mode: guest-physical `0..len` over host memory, with the code
//! versions every vCPU on it shares, so that a write by any of them (or by a device)
//! makes code decoded from that page stale on all of them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::paging::PhysicalMemory;

const PAGE: usize = 4096;

/// Per-page code versions (0: no code decoded from the page since it was last written)
/// and the generation that moves whenever one is dropped.
#[derive(Debug)]
struct CodePages {
    versions: Box<[AtomicU64]>,
    /// The last version handed out: versions are never reused.
    last_version: AtomicU64,
    generation: AtomicU64,
}

impl CodePages {
    /// Forgets the code decoded from pages `first..=last` (their bytes changed).
    #[inline]
    fn written(&self, first: usize, last: usize) {
        let mut dropped = false;
        for version in self.versions.get(first..=last).unwrap_or_default() {
            // Most written pages hold no code: a plain look first.
            if version.load(Ordering::Relaxed) != 0 {
                version.store(0, Ordering::Release);
                dropped = true;
            }
        }
        if dropped {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// Guest RAM at guest-physical address 0, shared by the vCPUs of one guest (each holds
/// a [`GuestRam::share`] of it). Addresses past its end read as all ones and ignore
/// writes; a platform puts devices there by wrapping it.
#[derive(Debug)]
pub struct GuestRam {
    base: *mut u8,
    len: usize,
    code: Arc<CodePages>,
}

// SAFETY: the mapping outlives every share (the contract of `GuestRam::new`), and the
// guest's concurrent accesses to its own memory are racy by design, as on hardware:
// every access is a plain byte copy or an atomic compare-exchange, never a reference.
unsafe impl Send for GuestRam {}

impl GuestRam {
    /// Guest RAM over the `len` bytes at `base`.
    ///
    /// # Safety
    /// `base` must be page-aligned, and `base..base + len` must stay mapped readable and
    /// writable for as long as this value and every share of it live.
    pub unsafe fn new(base: *mut u8, len: usize) -> Self {
        let pages = len.div_ceil(PAGE);
        Self {
            base,
            len,
            code: Arc::new(CodePages {
                versions: (0..pages).map(|_| AtomicU64::new(0)).collect(),
                last_version: AtomicU64::new(0),
                generation: AtomicU64::new(0),
            }),
        }
    }

    /// Another handle on the same RAM and code versions, for another vCPU.
    pub fn share(&self) -> Self {
        Self {
            base: self.base,
            len: self.len,
            code: Arc::clone(&self.code),
        }
    }

    /// The RAM's size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it has no bytes at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The part of `[addr, addr + len)` inside RAM, as a host offset and length.
    fn inside(&self, addr: u64, len: usize) -> Option<(usize, usize)> {
        let at = usize::try_from(addr).ok().filter(|&at| at < self.len)?;
        Some((at, len.min(self.len - at)))
    }
}

impl PhysicalMemory for GuestRam {
    fn read(&mut self, addr: u64, buf: &mut [u8]) {
        match self.inside(addr, buf.len()) {
            Some((at, n)) => {
                // SAFETY: `at + n <= len`, inside the mapping `new`'s contract keeps
                // alive; `buf` is a distinct host buffer.
                unsafe { std::ptr::copy_nonoverlapping(self.base.add(at), buf.as_mut_ptr(), n) };
                buf[n..].fill(0xff);
            }
            None => buf.fill(0xff),
        }
    }

    #[inline]
    fn load(&mut self, addr: u64, len: usize) -> u64 {
        match self.inside(addr, len) {
            Some((at, n)) if n == len => {
                // SAFETY: `len` (1..=8) bytes at `at` are inside the mapping; an
                // unaligned read of plain bytes, as the guest's own load is.
                let p = unsafe { self.base.add(at) };
                // SAFETY: as above, for each width.
                unsafe {
                    match len {
                        1 => u64::from(p.read()),
                        2 => u64::from(p.cast::<u16>().read_unaligned()),
                        4 => u64::from(p.cast::<u32>().read_unaligned()),
                        8 => p.cast::<u64>().read_unaligned(),
                        _ => {
                            let mut buf = [0u8; 8];
                            std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), len);
                            u64::from_le_bytes(buf)
                        }
                    }
                }
            }
            _ => {
                let mut buf = [0u8; 8];
                self.read(addr, &mut buf[..len]);
                u64::from_le_bytes(buf)
            }
        }
    }

    #[inline]
    fn store(&mut self, addr: u64, len: usize, value: u64) {
        match self.inside(addr, len) {
            Some((at, n)) if n == len && matches!(len, 1 | 2 | 4 | 8) => {
                // SAFETY: `len` bytes at `at` are inside the mapping, which is
                // writable; an unaligned write of plain bytes.
                unsafe {
                    let p = self.base.add(at);
                    match len {
                        1 => p.write(value as u8),
                        2 => p.cast::<u16>().write_unaligned(value as u16),
                        4 => p.cast::<u32>().write_unaligned(value as u32),
                        _ => p.cast::<u64>().write_unaligned(value),
                    }
                }
                self.code.written(at / PAGE, (at + len - 1) / PAGE);
            }
            _ => self.write(addr, &value.to_le_bytes()[..len]),
        }
    }

    fn write(&mut self, addr: u64, buf: &[u8]) {
        if let Some((at, n)) = self.inside(addr, buf.len()) {
            // SAFETY: as in `read`, with the mapping writable.
            unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), self.base.add(at), n) };
            self.code.written(at / PAGE, (at + n.max(1) - 1) / PAGE);
        }
    }

    fn compare_exchange(&mut self, addr: u64, len: usize, old: u128, new: u128) -> bool {
        match self.inside(addr, len) {
            Some((at, n)) if n == len && (len != 16 || at % 16 == 0) => {
                // SAFETY: `len` (1..=16) bytes at `at` are inside the mapping, 16-byte
                // aligned for 16 (`base` is page-aligned); the host compare-exchange
                // makes the update atomic against the other vCPUs.
                let stored =
                    unsafe { crate::atomic::compare_exchange(self.base.add(at), len, old, new) };
                if stored {
                    self.code.written(at / PAGE, (at + len - 1) / PAGE);
                }
                stored
            }
            // Past the end of RAM (nothing there to compare with), or 16 misaligned
            // bytes, which CMPXCHG16B refuses with #GP before it gets here.
            _ => false,
        }
    }

    fn code_version(&mut self, addr: u64) -> Option<u64> {
        let (at, _) = self.inside(addr, 1)?;
        let version = &self.code.versions[at / PAGE];
        let current = version.load(Ordering::Acquire);
        if current != 0 {
            return Some(current);
        }
        let fresh = self.code.last_version.fetch_add(1, Ordering::Relaxed) + 1;
        // Another vCPU may have marked the page meanwhile: its version wins.
        Some(
            match version.compare_exchange(0, fresh, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => fresh,
                Err(theirs) => theirs,
            },
        )
    }

    fn code_generation(&self) -> Option<u64> {
        Some(self.code.generation.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_guest_ram_code_versions_change_on_writes_from_any_share() {
        #[derive(Clone)]
        #[repr(align(4096))]
        struct Page(#[allow(dead_code)] [u8; PAGE]); // only its bytes, by pointer
        let mut pages = vec![Page([0; PAGE]); 3];
        // SAFETY: `pages` is page-aligned, outlives both handles and is not resized.
        let mut ram = unsafe { GuestRam::new(pages.as_mut_ptr().cast(), 3 * PAGE) };
        let mut other = ram.share();
        let v1 = ram.code_version(0x1000).unwrap();
        let g1 = ram.code_generation();
        assert_eq!(other.code_version(0x1fff), Some(v1), "one version per page");
        ram.write(0x2000, &[1]);
        assert_eq!(ram.code_generation(), g1, "no code on the written page");
        other.write(0x1ffe, &[1, 2, 3]); // crosses into page 2
        assert_ne!(ram.code_generation(), g1, "the code page was written");
        let v2 = ram.code_version(0x1000).unwrap();
        assert_ne!(v1, v2);
        assert!(other.compare_exchange(0x1000, 8, 0, 7));
        assert_ne!(ram.code_version(0x1000), Some(v2), "a locked write counts");
        let mut buf = [0u8; 4];
        ram.read(0x2ffe, &mut buf);
        assert_eq!(buf, [0, 0, 0xff, 0xff], "past the end reads as all ones");
        assert!(!ram.compare_exchange(0x2ffc, 8, 0, 1), "straddling the end");
        let v3 = ram.code_version(0x1000).unwrap();
        other.store(0x1003, 4, 0xdead_beef);
        assert_eq!(ram.load(0x1003, 4), 0xdead_beef);
        assert_eq!(ram.load(0x1004, 2), 0xbeef >> 8 | 0xad << 8);
        assert_ne!(ram.code_version(0x1000), Some(v3), "a typed store counts");
        assert_eq!(ram.load(0x2ffe, 4), 0xffff_0000, "past the end: all ones");
        assert_eq!(ram.code_version(0x3000), None);
    }
}
