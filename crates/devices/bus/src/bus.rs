//! A bus: non-overlapping address ranges, each served by one device.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// A device reachable through a bus. Offsets are relative to the range's base.
///
/// Accesses come from vCPU threads; the bus serialises them per device with a mutex.
pub trait BusDevice: Send {
    /// Fills `data` with the bytes at `offset`. Unwritten bytes read as what the device chose.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// Stores `data` at `offset`.
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// A device as the bus holds it: shared with whoever else drives it (e.g. the event loop).
pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

/// Why a device could not be placed on the bus.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    /// The new range intersects one that is already taken.
    #[error("range {base:#x}+{len:#x} overlaps a device already on the bus")]
    Overlap {
        /// Base of the rejected range.
        base: u64,
        /// Length of the rejected range.
        len: u64,
    },
    /// A zero-length range, or one that wraps past the end of the address space.
    #[error("range {base:#x}+{len:#x} is empty or wraps around")]
    InvalidRange {
        /// Base of the rejected range.
        base: u64,
        /// Length of the rejected range.
        len: u64,
    },
}

#[derive(Clone)]
struct Slot {
    len: u64,
    device: SharedDevice,
    name: &'static str,
    /// Reads and writes that reached the device: each one a trap to gasang.
    counts: Arc<[AtomicU64; 2]>,
}

/// How often the guest reached one device's range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeTraps {
    /// The device's name.
    pub name: &'static str,
    /// Its range.
    pub base: u64,
    /// Its length.
    pub len: u64,
    /// Reads that reached it.
    pub reads: u64,
    /// Writes that reached it.
    pub writes: u64,
}

/// An address space of devices: the port I/O space or the MMIO space.
#[derive(Default)]
pub struct Bus {
    /// Keyed by base address. Reads dominate (every exit), so a reader-writer lock.
    slots: RwLock<BTreeMap<u64, Slot>>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let slots = self.slots.read().expect("bus lock poisoned");
        f.debug_list()
            .entries(slots.iter().map(|(base, s)| (base, s.len)))
            .finish()
    }
}

impl Bus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Places `device` at `[base, base + len)`.
    pub fn insert(&self, device: SharedDevice, base: u64, len: u64) -> Result<(), BusError> {
        self.insert_named("device", device, base, len)
    }

    /// Places `device`, called `name` in trap counts, at `[base, base + len)`.
    pub fn insert_named(
        &self,
        name: &'static str,
        device: SharedDevice,
        base: u64,
        len: u64,
    ) -> Result<(), BusError> {
        let end = base
            .checked_add(len)
            .filter(|_| len > 0)
            .ok_or(BusError::InvalidRange { base, len })?;
        let mut slots = self.slots.write().expect("bus lock poisoned");
        let below = slots.range(..end).next_back();
        if let Some((b, s)) = below {
            if b + s.len > base {
                return Err(BusError::Overlap { base, len });
            }
        }
        let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        slots.insert(
            base,
            Slot {
                len,
                device,
                name,
                counts,
            },
        );
        Ok(())
    }

    /// Takes the device at `base` off the bus (a BAR that moved). Returns whether one
    /// was there.
    pub fn remove(&self, base: u64) -> bool {
        let mut slots = self.slots.write().expect("bus lock poisoned");
        slots.remove(&base).is_some()
    }

    /// Each device's range and how often the guest reached it.
    pub fn traps(&self) -> Vec<RangeTraps> {
        let slots = self.slots.read().expect("bus lock poisoned");
        slots
            .iter()
            .map(|(&base, s)| RangeTraps {
                name: s.name,
                base,
                len: s.len,
                reads: s.counts[0].load(Ordering::Relaxed),
                writes: s.counts[1].load(Ordering::Relaxed),
            })
            .collect()
    }

    /// The device covering `addr`, with `addr`'s offset into it; counts the access
    /// (`write` or not).
    fn find(&self, addr: u64, write: bool) -> Option<(SharedDevice, u64)> {
        let slots = self.slots.read().expect("bus lock poisoned");
        let (base, slot) = slots.range(..=addr).next_back()?;
        let offset = addr - base;
        if offset >= slot.len {
            return None;
        }
        slot.counts[usize::from(write)].fetch_add(1, Ordering::Relaxed);
        Some((slot.device.clone(), offset))
    }

    /// Reads from the device at `addr`. Returns false when no device is there.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        let Some((device, offset)) = self.find(addr, false) else {
            return false;
        };
        device
            .lock()
            .expect("device lock poisoned")
            .read(offset, data);
        true
    }

    /// Writes to the device at `addr`. Returns false when no device is there.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        let Some((device, offset)) = self.find(addr, true) else {
            return false;
        };
        device
            .lock()
            .expect("device lock poisoned")
            .write(offset, data);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Remembers the last write and answers reads with its offset.
    #[derive(Default)]
    struct Echo {
        last: Vec<(u64, Vec<u8>)>,
    }

    impl BusDevice for Echo {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.last.push((offset, data.to_vec()));
        }
    }

    fn echo() -> Arc<Mutex<Echo>> {
        Arc::new(Mutex::new(Echo::default()))
    }

    #[test]
    fn test_bus_read_reaches_device_at_offset() {
        let bus = Bus::new();
        bus.insert(echo(), 0x3f8, 8).unwrap();
        let mut data = [0u8; 1];
        assert!(bus.read(0x3fd, &mut data));
        assert_eq!(data, [5]);
    }

    #[test]
    fn test_bus_write_reaches_device_at_offset() {
        let bus = Bus::new();
        let dev = echo();
        bus.insert(dev.clone(), 0x1000, 0x100).unwrap();
        assert!(bus.write(0x1010, &[1, 2]));
        assert_eq!(dev.lock().unwrap().last, vec![(0x10, vec![1, 2])]);
    }

    #[test]
    fn test_bus_access_outside_any_range_is_unclaimed() {
        let bus = Bus::new();
        bus.insert(echo(), 0x60, 1).unwrap();
        let mut data = [0u8; 1];
        assert!(!bus.read(0x61, &mut data));
        assert!(!bus.write(0x5f, &data));
    }

    #[test]
    fn test_bus_insert_overlapping_range_returns_overlap() {
        let bus = Bus::new();
        bus.insert(echo(), 0x100, 0x10).unwrap();
        let err = bus.insert(echo(), 0x108, 0x10).unwrap_err();
        assert_eq!(
            err,
            BusError::Overlap {
                base: 0x108,
                len: 0x10
            }
        );
        let err = bus.insert(echo(), 0xf8, 0x10).unwrap_err();
        assert_eq!(
            err,
            BusError::Overlap {
                base: 0xf8,
                len: 0x10
            }
        );
    }

    #[test]
    fn test_bus_remove_frees_the_range() {
        let bus = Bus::new();
        bus.insert(echo(), 0x100, 0x10).unwrap();
        assert!(bus.remove(0x100));
        assert!(!bus.remove(0x100));
        assert!(!bus.read(0x100, &mut [0u8; 1]));
        bus.insert(echo(), 0x108, 0x10).unwrap();
    }

    #[test]
    fn test_bus_insert_adjacent_ranges_is_allowed() {
        let bus = Bus::new();
        bus.insert(echo(), 0x100, 0x10).unwrap();
        bus.insert(echo(), 0x110, 0x10).unwrap();
        bus.insert(echo(), 0xf0, 0x10).unwrap();
    }

    #[test]
    fn test_bus_insert_empty_or_wrapping_range_is_invalid() {
        let bus = Bus::new();
        assert!(matches!(
            bus.insert(echo(), 0x100, 0),
            Err(BusError::InvalidRange { .. })
        ));
        assert!(matches!(
            bus.insert(echo(), u64::MAX, 2),
            Err(BusError::InvalidRange { .. })
        ));
    }

    #[test]
    fn test_bus_counts_each_devices_reads_and_writes() {
        let bus = Bus::new();
        bus.insert_named("echo", Arc::new(Mutex::new(Echo::default())), 0x100, 8)
            .unwrap();
        let mut data = [0u8; 1];
        bus.write(0x101, &[1]);
        bus.write(0x102, &[2]);
        bus.read(0x103, &mut data);
        bus.read(0x200, &mut data); // no device: not counted
        let traps = bus.traps();
        assert_eq!(
            traps,
            vec![RangeTraps {
                name: "echo",
                base: 0x100,
                len: 8,
                reads: 1,
                writes: 2
            }]
        );
    }
}
