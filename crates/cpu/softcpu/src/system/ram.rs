//! Guest RAM for system mode: guest-physical ranges over host memory (below the MMIO
//! hole and above 4 GiB), with the code versions every vCPU on it shares, so that a
//! write by any of them (or by a device) makes code decoded from that page stale on
//! all of them.

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
    /// Counts pages that became code pages.
    marks: AtomicU64,
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

/// One range of guest RAM.
#[derive(Debug, Clone, Copy)]
struct Region {
    /// Its first guest-physical address (page-aligned).
    start: u64,
    /// Its length in bytes.
    len: usize,
    /// Where it is mapped in the host.
    base: *mut u8,
    /// The index of its first page among all regions' code versions.
    first_page: usize,
}

/// Where an access lands in RAM: the host address, how many of its bytes the region
/// holds from there, and the page's index among the code versions.
#[derive(Debug, Clone, Copy)]
struct Place {
    host: *mut u8,
    room: usize,
    page: usize,
    /// The offset within that page.
    offset: usize,
}

impl Place {
    /// The code-version indices of the first and last page of `len` bytes from here.
    fn pages(&self, len: usize) -> (usize, usize) {
        (self.page, self.page + (self.offset + len.max(1) - 1) / PAGE)
    }
}

/// Guest RAM, shared by the vCPUs of one guest (each holds a [`GuestRam::share`] of
/// it). Addresses outside it read as all ones and ignore writes; a platform puts
/// devices there by wrapping it.
#[derive(Debug)]
pub struct GuestRam {
    /// By ascending address; the first (low RAM, at 0) is the one most accesses hit.
    regions: Box<[Region]>,
    code: Arc<CodePages>,
}

// SAFETY: the mapping outlives every share (the contract of `GuestRam::new`), and the
// guest's concurrent accesses to its own memory are racy by design, as on hardware:
// every access is a plain byte copy or an atomic compare-exchange, never a reference.
unsafe impl Send for GuestRam {}

impl GuestRam {
    /// Guest RAM over the `len` bytes at `base`, at guest-physical 0.
    ///
    /// # Safety
    /// As for [`GuestRam::with_regions`].
    pub unsafe fn new(base: *mut u8, len: usize) -> Self {
        // SAFETY: the caller's contract is the same.
        unsafe { Self::with_regions(&[(0, base, len)]) }
    }

    /// Guest RAM over `(guest-physical start, host base, length)` ranges, ascending and
    /// apart, each start page-aligned.
    ///
    /// # Safety
    /// Each `base` must be page-aligned, and `base..base + len` must stay mapped readable
    /// and writable for as long as this value and every share of it live.
    pub unsafe fn with_regions(ranges: &[(u64, *mut u8, usize)]) -> Self {
        let mut pages = 0;
        let regions = ranges
            .iter()
            .map(|&(start, base, len)| {
                let region = Region {
                    start,
                    len,
                    base,
                    first_page: pages,
                };
                pages += len.div_ceil(PAGE);
                region
            })
            .collect();
        Self {
            regions,
            code: Arc::new(CodePages {
                versions: (0..pages).map(|_| AtomicU64::new(0)).collect(),
                last_version: AtomicU64::new(0),
                marks: AtomicU64::new(0),
                generation: AtomicU64::new(0),
            }),
        }
    }

    /// Another handle on the same RAM and code versions, for another vCPU.
    pub fn share(&self) -> Self {
        Self {
            regions: self.regions.clone(),
            code: Arc::clone(&self.code),
        }
    }

    /// Whether all of `[addr, addr + len)` is RAM.
    pub fn contains(&self, addr: u64, len: usize) -> bool {
        self.inside(addr).is_some_and(|place| place.room >= len)
    }

    /// Where `addr` is, if in RAM.
    #[inline]
    fn inside(&self, addr: u64) -> Option<Place> {
        let region = self
            .regions
            .iter()
            .find(|r| addr.wrapping_sub(r.start) < r.len as u64)?;
        let at = (addr - region.start) as usize;
        Some(Place {
            // SAFETY: `at < len`: inside the region's mapping (`with_regions`' contract).
            host: unsafe { region.base.add(at) },
            room: region.len - at,
            page: region.first_page + at / PAGE,
            offset: at % PAGE,
        })
    }
}

impl PhysicalMemory for GuestRam {
    fn read(&mut self, addr: u64, buf: &mut [u8]) {
        match self.inside(addr) {
            Some(place) => {
                let n = buf.len().min(place.room);
                // SAFETY: `n` bytes from `host` are inside the region's mapping, which
                // `with_regions`' contract keeps alive; `buf` is a distinct host buffer.
                unsafe { std::ptr::copy_nonoverlapping(place.host, buf.as_mut_ptr(), n) };
                buf[n..].fill(0xff);
            }
            None => buf.fill(0xff),
        }
    }

    #[inline]
    fn load(&mut self, addr: u64, len: usize) -> u64 {
        match self.inside(addr) {
            Some(place) if place.room >= len => {
                // `len` (1..=8) bytes at `p` are inside the mapping.
                let p = place.host;
                // SAFETY: `len` bytes at `p` are mapped; an unaligned read of plain
                // bytes, as the guest's own load is.
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
        match self.inside(addr) {
            Some(place) if place.room >= len && matches!(len, 1 | 2 | 4 | 8) => {
                // SAFETY: `len` bytes at `host` are inside the mapping, which is
                // writable; an unaligned write of plain bytes.
                unsafe {
                    let p = place.host;
                    match len {
                        1 => p.write(value as u8),
                        2 => p.cast::<u16>().write_unaligned(value as u16),
                        4 => p.cast::<u32>().write_unaligned(value as u32),
                        _ => p.cast::<u64>().write_unaligned(value),
                    }
                }
                let (first, last) = place.pages(len);
                self.code.written(first, last);
            }
            _ => self.write(addr, &value.to_le_bytes()[..len]),
        }
    }

    fn write(&mut self, addr: u64, buf: &[u8]) {
        if let Some(place) = self.inside(addr) {
            let n = buf.len().min(place.room);
            // SAFETY: as in `read`, with the mapping writable.
            unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), place.host, n) };
            let (first, last) = place.pages(n);
            self.code.written(first, last);
        }
    }

    fn compare_exchange(&mut self, addr: u64, len: usize, old: u128, new: u128) -> bool {
        match self.inside(addr) {
            Some(place) if place.room >= len && (len != 16 || place.offset % 16 == 0) => {
                // SAFETY: `len` (1..=16) bytes at `host` are inside the mapping, 16-byte
                // aligned for 16 (regions are page-aligned); the host compare-exchange
                // makes the update atomic against the other vCPUs.
                let stored = unsafe { crate::atomic::compare_exchange(place.host, len, old, new) };
                if stored {
                    let (first, last) = place.pages(len);
                    self.code.written(first, last);
                }
                stored
            }
            // Past the end of RAM, where nothing holds a value to compare with (the
            // write is ignored), or 16 misaligned bytes, which CMPXCHG16B refuses with
            // #GP before it gets here. Stored, as far as there is anything to store
            // to: refusing would make the locked instruction retry forever.
            _ => {
                self.write(addr, &new.to_le_bytes()[..len]);
                true
            }
        }
    }

    fn code_version(&mut self, addr: u64) -> Option<u64> {
        let version = &self.code.versions[self.inside(addr)?.page];
        let current = version.load(Ordering::Acquire);
        if current != 0 {
            return Some(current);
        }
        let fresh = self.code.last_version.fetch_add(1, Ordering::Relaxed) + 1;
        // Another vCPU may have marked the page meanwhile: its version wins.
        Some(
            match version.compare_exchange(0, fresh, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    self.code.marks.fetch_add(1, Ordering::AcqRel);
                    fresh
                }
                Err(theirs) => theirs,
            },
        )
    }

    fn host_page(&mut self, page: u64, write: bool) -> Option<u64> {
        let place = self.inside(page)?;
        if place.room < PAGE
            || (write && self.code.versions[place.page].load(Ordering::Acquire) != 0)
        {
            return None;
        }
        Some(place.host as u64)
    }

    fn code_marks(&self) -> u64 {
        self.code.marks.load(Ordering::Acquire)
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
        // Straddling the end: no atomics there; the part in RAM is stored.
        assert!(ram.compare_exchange(0x2ffc, 8, 0, 0x0102_0304_0000_0708));
        assert_eq!(ram.load(0x2ffc, 4), 0x0708);
        assert!(
            ram.compare_exchange(0x5000, 8, 0, 1),
            "past the end: stored to nothing"
        );
        let v3 = ram.code_version(0x1000).unwrap();
        other.store(0x1003, 4, 0xdead_beef);
        assert_eq!(ram.load(0x1003, 4), 0xdead_beef);
        assert_eq!(ram.load(0x1004, 2), 0xbeef >> 8 | 0xad << 8);
        assert_ne!(ram.code_version(0x1000), Some(v3), "a typed store counts");
        assert_eq!(ram.load(0x2ffe, 4), 0xffff_0000, "past the end: all ones");
        assert_eq!(ram.code_version(0x3000), None);
    }

    #[test]
    fn test_guest_ram_regions_map_their_own_addresses_and_pages() {
        #[derive(Clone)]
        #[repr(align(4096))]
        struct Page(#[allow(dead_code)] [u8; PAGE]); // only its bytes, by pointer
        let mut low = vec![Page([0; PAGE]); 2];
        let mut high = vec![Page([0; PAGE]); 1];
        const HIGH: u64 = 0x1_0000_0000;
        // SAFETY: both are page-aligned, outlive `ram` and are not resized.
        let mut ram = unsafe {
            GuestRam::with_regions(&[
                (0, low.as_mut_ptr().cast(), 2 * PAGE),
                (HIGH, high.as_mut_ptr().cast(), PAGE),
            ])
        };
        ram.store(HIGH + 8, 8, 0x1122_3344_5566_7788);
        assert_eq!(ram.load(HIGH + 8, 8), 0x1122_3344_5566_7788);
        assert_eq!(ram.load(8, 8), 0, "low RAM is apart");
        assert!(ram.contains(HIGH, PAGE) && !ram.contains(HIGH, PAGE + 1));
        assert!(
            !ram.contains(2 * PAGE as u64, 1),
            "the hole between is not RAM"
        );
        assert_eq!(ram.load(2 * PAGE as u64, 4), 0xffff_ffff);
        let (v_low, v_high) = (ram.code_version(0x1000), ram.code_version(HIGH));
        assert!(v_low.is_some() && v_high.is_some() && v_low != v_high);
        let g = ram.code_generation();
        ram.write(HIGH + 0xfff, &[1]);
        assert_ne!(ram.code_generation(), g, "the high page's code was dropped");
        assert_eq!(ram.code_version(0x1000), v_low, "and only it");
        assert!(
            ram.compare_exchange(HIGH + 16, 16, 0, 5),
            "16 aligned bytes up high"
        );
        assert_eq!(ram.load(HIGH + 16, 8), 5);
    }
}
