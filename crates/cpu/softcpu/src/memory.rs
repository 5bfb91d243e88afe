//! Memory as the CPU sees it: linear addresses.

use std::collections::BTreeMap;

use crate::system::paging::PhysicalMemory;

/// Why memory was accessed (for faults: page faults report it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A data read.
    Read,
    /// A data write.
    Write,
    /// An instruction fetch.
    Execute,
    /// A read of a system structure (GDT, IDT, TSS): made with supervisor rights
    /// whatever the current privilege.
    System,
}

/// An access the memory could not satisfy: it becomes #PF (or #GP) in the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryFault {
    /// The first linear address that failed.
    pub addr: u64,
    /// What the access was.
    pub access: Access,
    /// The page-fault error code's P, U/S and RSVD bits, from the paging unit (0 for
    /// memory without one: a fault there is a missing page).
    pub reason: u32,
}

/// [`MemoryFault::reason`]: the address was not canonical (#GP, not #PF).
pub const NON_CANONICAL: u32 = 1 << 31;

impl MemoryFault {
    /// A fault at `addr` on a missing page.
    pub fn new(addr: u64, access: Access) -> Self {
        Self {
            addr,
            access,
            reason: 0,
        }
    }
}

/// The CPU's memory at linear addresses.
pub trait Memory {
    /// Reads `buf.len()` bytes at `addr`.
    fn read(&mut self, addr: u64, buf: &mut [u8], access: Access) -> Result<(), MemoryFault>;
    /// Writes `buf` at `addr`.
    fn write(&mut self, addr: u64, buf: &[u8]) -> Result<(), MemoryFault>;

    /// Reads `len` (1..=8) bytes at `addr` as a little-endian integer. Memories override
    /// it (and [`Memory::store`]) with a path that avoids the byte-slice copy: these two
    /// carry nearly every integer access.
    fn load(&mut self, addr: u64, len: usize, access: Access) -> Result<u64, MemoryFault> {
        let mut buf = [0u8; 8];
        self.read(addr, &mut buf[..len], access)?;
        Ok(u64::from_le_bytes(buf))
    }

    /// Writes the `len` (1..=8) low bytes of `value` at `addr`.
    fn store(&mut self, addr: u64, len: usize, value: u64) -> Result<(), MemoryFault> {
        self.write(addr, &value.to_le_bytes()[..len])
    }

    /// Reads `len` (1..=16) bytes at `addr` for an atomic read-modify-write, checked
    /// as a write (a locked instruction needs write access even if it stores nothing).
    fn read_for_update(&mut self, addr: u64, len: usize) -> Result<u128, MemoryFault> {
        let mut buf = [0u8; 16];
        self.read(addr, &mut buf[..len], Access::Write)?;
        Ok(u128::from_le_bytes(buf))
    }

    /// Stores the `len` low bytes of `new` at `addr` if the bytes there still equal
    /// `old`, atomically with respect to every other CPU sharing this memory; returns
    /// whether it stored. The default suits memory only one CPU uses.
    fn compare_exchange(
        &mut self,
        addr: u64,
        len: usize,
        old: u128,
        new: u128,
    ) -> Result<bool, MemoryFault> {
        if self.read_for_update(addr, len)? != old {
            return Ok(false);
        }
        self.write(addr, &new.to_le_bytes()[..len])?;
        Ok(true)
    }

    /// Faults as a read of the byte at `addr` would, without reading it: CLFLUSH's
    /// check, which must not touch a device register. The default reads the byte,
    /// which suits memories without devices.
    fn probe(&mut self, addr: u64) -> Result<(), MemoryFault> {
        self.read(addr, &mut [0], Access::Read)
    }

    /// The CPU's control state changed (control registers, EFER, privilege): a memory
    /// with a paging unit takes the new mode and drops the translations `flush` names.
    fn control(&mut self, _state: &crate::CpuState, _flush: crate::system::paging::Flush) {}

    /// Marks the page holding `addr` as holding decoded code, and returns its version:
    /// a number that changes whenever the page is written from then on. The CPU keeps
    /// decoded instructions only while their page's version stays the same, so that
    /// self-modifying code and newly loaded code are decoded afresh. `None` (the
    /// default) means the memory cannot tell, and nothing is cached.
    fn code_version(&mut self, _addr: u64) -> Option<u64> {
        None
    }

    /// A number that changes whenever any page's code version changes (a code page is
    /// written, or memory is mapped or unmapped). While it stays the same, decoded code
    /// is known to be current without asking for each page's version; `None` (the
    /// default) means the memory cannot tell.
    fn code_generation(&self) -> Option<u64> {
        None
    }

    /// The host TLB translated code uses at the current privilege, if this memory keeps
    /// one (system mode's linear memory and `user-run`'s process memory do). `None`: no
    /// translated code runs.
    fn host_tlb(&mut self) -> Option<*mut crate::HostTlb> {
        None
    }

    /// Enters the page of linear `addr` in the host TLB if the `len` bytes at `addr`
    /// are RAM within one page that a read (or a write, if `write`) may touch directly;
    /// returns their host address. `None`: the access must take the interpreter's way
    /// (a fault, a device, a page crossing, a write to a page holding code).
    fn host_fill(&mut self, _addr: u64, _len: usize, _write: bool) -> Option<u64> {
        None
    }

    /// The machine behind this memory, for what is not memory: port I/O, the MSRs the
    /// CPU does not own, CPUID's platform leaves ([`PhysicalMemory`]'s hooks). `None`
    /// (the default, as for `user-run`): no machine, which the hooks' defaults describe.
    fn platform(&mut self) -> Option<&mut dyn PhysicalMemory> {
        None
    }
}

/// No machine at all: nothing but the [`PhysicalMemory`] hooks' defaults (ports that
/// read all ones, no MSRs, CPUID as the CPU's model says). What the CPU talks to when
/// its memory has no [`Memory::platform`].
pub(crate) struct NoPlatform;

impl PhysicalMemory for NoPlatform {
    fn read(&mut self, _addr: u64, buf: &mut [u8]) {
        buf.fill(0xff);
    }
    fn write(&mut self, _addr: u64, _buf: &[u8]) {}
}

/// Byte-addressable regions at fixed linear addresses; anything else faults.
#[derive(Debug, Default, Clone)]
pub struct FlatMemory {
    /// Keyed by start address.
    regions: BTreeMap<u64, Vec<u8>>,
    /// Versions of pages code was decoded from, by page number.
    code: BTreeMap<u64, u64>,
    /// The last version handed out: versions are never reused.
    next_version: u64,
    /// Changes whenever a code page's version does.
    generation: u64,
}

impl FlatMemory {
    /// No memory at all.
    pub fn new() -> Self {
        Self::default()
    }

    /// Maps `bytes` at `addr` (regions must not overlap).
    pub fn map(&mut self, addr: u64, bytes: Vec<u8>) {
        self.bump_code(addr, bytes.len());
        self.regions.insert(addr, bytes);
    }

    /// Gives a new version to the code pages under `[addr, addr + len)`.
    fn bump_code(&mut self, addr: u64, len: usize) {
        let (first, last) = (addr >> 12, addr.saturating_add(len.max(1) as u64 - 1) >> 12);
        for (_, version) in self.code.range_mut(first..=last) {
            self.next_version += 1;
            *version = self.next_version;
            self.generation += 1;
        }
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
            .ok_or(MemoryFault::new(addr, access))?;
        buf.copy_from_slice(&region[offset..offset + buf.len()]);
        Ok(())
    }

    fn write(&mut self, addr: u64, buf: &[u8]) -> Result<(), MemoryFault> {
        let fault = MemoryFault::new(addr, Access::Write);
        let (region, offset) = self.find(addr, buf.len()).ok_or(fault)?;
        region[offset..offset + buf.len()].copy_from_slice(buf);
        self.bump_code(addr, buf.len());
        Ok(())
    }

    fn code_version(&mut self, addr: u64) -> Option<u64> {
        let next = self.next_version + 1;
        let version = *self.code.entry(addr >> 12).or_insert(next);
        self.next_version = self.next_version.max(version);
        Some(version)
    }

    fn code_generation(&self) -> Option<u64> {
        Some(self.generation)
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
        assert_eq!(err, MemoryFault::new(0x100e, Access::Read));
    }
}
