//! A user process's address space: page-aligned mappings at fixed addresses.

use std::collections::BTreeMap;

use gasang_softcpu::{Access, Memory, MemoryFault};

/// The page size of the emulated process.
pub const PAGE: u64 = 4096;

/// Mappings keyed by start address; none overlap.
#[derive(Debug, Default)]
pub struct UserMemory {
    maps: BTreeMap<u64, Vec<u8>>,
}

impl UserMemory {
    /// An empty address space.
    pub fn new() -> Self {
        Self::default()
    }

    /// Maps `len` zeroed bytes at `addr` (page-aligned), replacing what was there.
    pub fn map(&mut self, addr: u64, len: u64) {
        let len = len.next_multiple_of(PAGE);
        self.unmap(addr, len);
        self.maps.insert(addr, vec![0; len as usize]);
    }

    /// Removes `[addr, addr + len)`, splitting mappings that straddle it.
    pub fn unmap(&mut self, addr: u64, len: u64) {
        let end = addr.saturating_add(len.next_multiple_of(PAGE));
        let hit: Vec<u64> = self
            .maps
            .range(..end)
            .filter(|(start, data)| **start + data.len() as u64 > addr)
            .map(|(start, _)| *start)
            .collect();
        for start in hit {
            let data = self.maps.remove(&start).expect("found above");
            let stop = start + data.len() as u64;
            if start < addr {
                self.maps
                    .insert(start, data[..(addr - start) as usize].to_vec());
            }
            if stop > end {
                self.maps
                    .insert(end, data[(end - start) as usize..].to_vec());
            }
        }
    }

    /// Whether every byte of `[addr, addr + len)` is mapped.
    pub fn is_mapped(&self, addr: u64, len: u64) -> bool {
        let mut at = addr;
        while at < addr + len {
            match self.chunk_len(at) {
                Some(n) => at += n,
                None => return false,
            }
        }
        true
    }

    /// The first address above every mapping below `limit` that leaves `len` free
    /// before the next mapping, searching down from `limit` (as Linux's mmap does).
    pub fn find_free(&self, len: u64, limit: u64) -> Option<u64> {
        let len = len.next_multiple_of(PAGE);
        let mut top = limit;
        for (start, data) in self.maps.range(..limit).rev() {
            let end = start + data.len() as u64;
            if top >= end && top - end >= len {
                return Some(top - len);
            }
            top = top.min(*start);
        }
        top.checked_sub(len).filter(|a| *a >= 0x1_0000)
    }

    /// Bytes mapped contiguously from `addr` within its mapping.
    fn chunk_len(&self, addr: u64) -> Option<u64> {
        let (start, data) = self.maps.range(..=addr).next_back()?;
        let end = start + data.len() as u64;
        (addr < end).then_some(end - addr)
    }

    fn slice_mut(&mut self, addr: u64) -> Option<&mut [u8]> {
        let (start, data) = self.maps.range_mut(..=addr).next_back()?;
        let offset = usize::try_from(addr - start).ok()?;
        data.get_mut(offset..)
    }
}

impl Memory for UserMemory {
    fn read(&mut self, addr: u64, buf: &mut [u8], access: Access) -> Result<(), MemoryFault> {
        let mut done = 0;
        while done < buf.len() {
            let at = addr.wrapping_add(done as u64);
            let src = self
                .slice_mut(at)
                .filter(|s| !s.is_empty())
                .ok_or(MemoryFault { addr: at, access })?;
            let n = src.len().min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&src[..n]);
            done += n;
        }
        Ok(())
    }

    fn write(&mut self, addr: u64, buf: &[u8]) -> Result<(), MemoryFault> {
        let mut done = 0;
        while done < buf.len() {
            let at = addr.wrapping_add(done as u64);
            let fault = MemoryFault {
                addr: at,
                access: Access::Write,
            };
            let dst = self.slice_mut(at).filter(|s| !s.is_empty()).ok_or(fault)?;
            let n = dst.len().min(buf.len() - done);
            dst[..n].copy_from_slice(&buf[done..done + n]);
            done += n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_user_memory_access_spans_adjacent_mappings() {
        let mut mem = UserMemory::new();
        mem.map(0x1000, PAGE);
        mem.map(0x2000, PAGE);
        mem.write(0x1ffe, &[1, 2, 3, 4]).unwrap();
        let mut buf = [0u8; 4];
        mem.read(0x1ffe, &mut buf, Access::Read).unwrap();
        assert_eq!(buf, [1, 2, 3, 4]);
    }

    #[test]
    fn test_user_memory_unmap_splits_a_mapping() {
        let mut mem = UserMemory::new();
        mem.map(0x10000, 3 * PAGE);
        mem.unmap(0x11000, PAGE);
        assert!(mem.is_mapped(0x10000, PAGE));
        assert!(!mem.is_mapped(0x11000, 1));
        assert!(mem.is_mapped(0x12000, PAGE));
        let mut buf = [0u8; 1];
        assert!(mem.read(0x11800, &mut buf, Access::Read).is_err());
    }

    #[test]
    fn test_user_memory_find_free_searches_down_from_limit() {
        let mut mem = UserMemory::new();
        mem.map(0x7000_0000, PAGE);
        assert_eq!(mem.find_free(PAGE, 0x7000_1000), Some(0x6fff_f000));
        assert_eq!(mem.find_free(PAGE, 0x8000_0000), Some(0x7fff_f000));
    }
}
