//! Memory as the CPU sees it: linear addresses.

use std::collections::BTreeMap;

/// Why memory was accessed (for faults: page faults report it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A data read.
    Read,
    /// A data write.
    Write,
    /// An instruction fetch.
    Execute,
}

/// An access the memory could not satisfy: it becomes #PF (or #GP) in the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryFault {
    /// The first linear address that failed.
    pub addr: u64,
    /// What the access was.
    pub access: Access,
}

/// The CPU's memory at linear addresses.
pub trait Memory {
    /// Reads `buf.len()` bytes at `addr`.
    fn read(&mut self, addr: u64, buf: &mut [u8], access: Access) -> Result<(), MemoryFault>;
    /// Writes `buf` at `addr`.
    fn write(&mut self, addr: u64, buf: &[u8]) -> Result<(), MemoryFault>;
}

/// Byte-addressable regions at fixed linear addresses; anything else faults.
#[derive(Debug, Default, Clone)]
pub struct FlatMemory {
    /// Keyed by start address.
    regions: BTreeMap<u64, Vec<u8>>,
}

impl FlatMemory {
    /// No memory at all.
    pub fn new() -> Self {
        Self::default()
    }

    /// Maps `bytes` at `addr` (regions must not overlap).
    pub fn map(&mut self, addr: u64, bytes: Vec<u8>) {
        self.regions.insert(addr, bytes);
    }

    /// The region holding `[addr, addr + len)`, and the offset of `addr` in it.
    fn find(&mut self, addr: u64, len: usize) -> Option<(&mut Vec<u8>, usize)> {
        let (start, region) = self.regions.range_mut(..=addr).next_back()?;
        let offset = usize::try_from(addr - start).ok()?;
        (offset.checked_add(len)? <= region.len()).then_some((region, offset))
    }

    /// The bytes at `[addr, addr + len)`, if mapped (for tests and loaders).
    pub fn slice(&mut self, addr: u64, len: usize) -> Option<&[u8]> {
        let (region, offset) = self.find(addr, len)?;
        Some(&region[offset..offset + len])
    }
}

impl Memory for FlatMemory {
    fn read(&mut self, addr: u64, buf: &mut [u8], access: Access) -> Result<(), MemoryFault> {
        let (region, offset) = self
            .find(addr, buf.len())
            .ok_or(MemoryFault { addr, access })?;
        buf.copy_from_slice(&region[offset..offset + buf.len()]);
        Ok(())
    }

    fn write(&mut self, addr: u64, buf: &[u8]) -> Result<(), MemoryFault> {
        let fault = MemoryFault {
            addr,
            access: Access::Write,
        };
        let (region, offset) = self.find(addr, buf.len()).ok_or(fault)?;
        region[offset..offset + buf.len()].copy_from_slice(buf);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_flat_memory_reads_back_writes_and_faults_outside() {
        let mut mem = FlatMemory::new();
        mem.map(0x1000, vec![0; 16]);
        mem.write(0x1004, &[1, 2, 3]).unwrap();
        let mut buf = [0u8; 4];
        mem.read(0x1003, &mut buf, Access::Read).unwrap();
        assert_eq!(buf, [0, 1, 2, 3]);
        let err = mem.read(0x100e, &mut buf, Access::Read).unwrap_err();
        assert_eq!(
            err,
            MemoryFault {
                addr: 0x100e,
                access: Access::Read
            }
        );
    }
}
