//! Guest RAM around the MMIO hole, and the memory map the guest is told about.

use vm_memory::GuestAddress;

use crate::layout::{ACPI_TABLES_END, EBDA, MMIO_HOLE, MMIO_HOLE_END};
use crate::{GuestMemory, MemorySize};

/// Guest RAM could not be created.
#[derive(Debug, thiserror::Error)]
pub enum GuestMemoryError {
    /// The host would not map the memory.
    #[error("cannot map {size} of guest memory")]
    Map {
        /// What was asked for.
        size: MemorySize,
        /// The host's refusal.
        #[source]
        source: vm_memory::mmap::FromRangesError,
    },
}

/// What the guest may do with a range of physical addresses (the e820 types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeKind {
    /// Usable RAM (e820 type 1).
    Ram,
    /// Firmware and ACPI area the OS must leave alone (e820 type 2).
    Reserved,
}

impl RangeKind {
    /// The e820 / PVH memory map type number.
    pub fn e820_type(self) -> u32 {
        match self {
            RangeKind::Ram => 1,
            RangeKind::Reserved => 2,
        }
    }
}

/// One entry of the guest's memory map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryRange {
    /// First address.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
    /// Usable or reserved.
    pub kind: RangeKind,
}

/// The RAM regions backing `size` bytes: below the MMIO hole, then above 4 GiB.
fn backing_regions(size: u64) -> Vec<(GuestAddress, usize)> {
    let low = size.min(MMIO_HOLE);
    let mut regions = vec![(GuestAddress(0), to_usize(low))];
    if size > MMIO_HOLE {
        regions.push((GuestAddress(MMIO_HOLE_END), to_usize(size - MMIO_HOLE)));
    }
    regions
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).expect("gasang is built for 64-bit hosts")
}

/// Maps `size` bytes of guest RAM, leaving the MMIO hole unbacked.
///
/// The mapping is private and anonymous; pages are only allocated when touched.
pub fn create_guest_memory(size: MemorySize) -> Result<GuestMemory, GuestMemoryError> {
    GuestMemory::from_ranges(&backing_regions(size.bytes()))
        .map_err(|source| GuestMemoryError::Map { size, source })
}

/// The memory map (e820) for a guest of `size` bytes, in address order.
pub fn ram_ranges(size: MemorySize) -> Vec<MemoryRange> {
    let size = size.bytes();
    let low_end = size.min(MMIO_HOLE);
    let mut ranges = vec![
        MemoryRange {
            start: 0,
            len: EBDA,
            kind: RangeKind::Ram,
        },
        MemoryRange {
            start: EBDA,
            len: ACPI_TABLES_END - EBDA,
            kind: RangeKind::Reserved,
        },
        MemoryRange {
            start: ACPI_TABLES_END,
            len: low_end - ACPI_TABLES_END,
            kind: RangeKind::Ram,
        },
    ];
    if size > MMIO_HOLE {
        ranges.push(MemoryRange {
            start: MMIO_HOLE_END,
            len: size - MMIO_HOLE,
            kind: RangeKind::Ram,
        });
    }
    ranges
}

#[cfg(test)]
mod tests {
    use vm_memory::GuestMemoryBackend;

    use super::*;

    fn mib(n: u64) -> MemorySize {
        MemorySize::new(n << 20).unwrap()
    }

    #[test]
    fn test_ram_ranges_small_guest_has_one_low_ram_range_above_1m() {
        let ranges = ram_ranges(mib(512));
        assert_eq!(ranges.len(), 3);
        assert_eq!(
            ranges[0],
            MemoryRange {
                start: 0,
                len: 0x9fc00,
                kind: RangeKind::Ram
            }
        );
        assert_eq!(ranges[1].kind, RangeKind::Reserved);
        assert_eq!(
            ranges[2],
            MemoryRange {
                start: 0x100000,
                len: (512 << 20) - 0x100000,
                kind: RangeKind::Ram
            }
        );
    }

    #[test]
    fn test_ram_ranges_large_guest_skips_mmio_hole() {
        let ranges = ram_ranges(mib(4096));
        assert_eq!(ranges[2].start + ranges[2].len, MMIO_HOLE);
        assert_eq!(
            ranges[3],
            MemoryRange {
                start: 1 << 32,
                len: 1 << 30,
                kind: RangeKind::Ram
            }
        );
    }

    #[test]
    fn test_create_guest_memory_has_no_ram_in_mmio_hole() {
        let mem = create_guest_memory(mib(4096)).unwrap();
        assert_eq!(mem.num_regions(), 2);
        assert!(mem.address_in_range(GuestAddress(MMIO_HOLE - 1)));
        assert!(!mem.address_in_range(GuestAddress(MMIO_HOLE)));
        assert!(mem.address_in_range(GuestAddress(MMIO_HOLE_END)));
        assert!(!mem.address_in_range(GuestAddress(MMIO_HOLE_END + (1 << 30))));
    }
}
