//! The root bus: the host bridge and up to 31 devices, one function each, and the
//! configuration accesses that reach them.
//!
//! A configuration write that moves a BAR, or turns memory decoding on or off, is
//! passed to the [`BarMapper`], which moves the device on the machine's MMIO bus (and
//! its queue-notification eventfds in KVM).

use std::sync::{Arc, Mutex};

use gasang_bus::lock;

use vmm_sys_util::eventfd::EventFd;

use crate::config::{BarMapping, PciConfig, PciId};

/// Devices on the root bus, the host bridge included.
pub const SLOTS: usize = 32;

/// A PCI function.
pub trait PciDevice: Send {
    /// Its configuration space.
    fn config(&self) -> &PciConfig;

    /// Its configuration space, to change.
    fn config_mut(&mut self) -> &mut PciConfig;

    /// A guest read of configuration register `reg`. The default reads the space; a
    /// device with a window into its BARs there (virtio's PCI configuration access
    /// capability) fills it first.
    fn read_config(&mut self, reg: usize) -> u32 {
        self.config().read_reg(reg)
    }

    /// A guest write of `data` to byte `offset` of configuration register `reg`. The
    /// default applies it through the write masks; a device with live capabilities
    /// (MSI-X) looks at what changed.
    fn write_config(&mut self, reg: usize, offset: usize, data: &[u8]) {
        self.config_mut().write(reg, offset, data);
    }

    /// A load from BAR `bar` at `offset`.
    fn read_bar(&mut self, bar: u8, offset: u64, data: &mut [u8]);

    /// A store to BAR `bar` at `offset`.
    fn write_bar(&mut self, bar: u8, offset: u64, data: &[u8]);

    /// Places in its BARs where a write only signals an eventfd (virtio queue
    /// notifications), so that a backend can signal it without a VM exit.
    fn ioevents(&self) -> Vec<IoEvent> {
        Vec::new()
    }
}

/// A write to `offset` of BAR `bar` that signals `fd`.
#[derive(Debug)]
pub struct IoEvent {
    /// The BAR.
    pub bar: u8,
    /// Offset in the BAR.
    pub offset: u64,
    /// Signalled on each write.
    pub fd: EventFd,
}

/// A device as the root bus and its BAR regions share it.
pub type SharedPciDevice = Arc<Mutex<dyn PciDevice>>;

/// Puts BARs on the machine's MMIO bus and takes them off.
pub trait BarMapper: Send + Sync {
    /// `device`'s BAR is decoded at `mapping` now.
    fn map(&self, device: &SharedPciDevice, mapping: BarMapping);
    /// `device`'s BAR at `mapping` is no longer decoded there.
    fn unmap(&self, device: &SharedPciDevice, mapping: BarMapping);
}

/// The host bridge at 00.0: Red Hat's generic PCIe host bridge ID, which Linux
/// applies no quirk to.
#[derive(Debug)]
pub struct HostBridge {
    config: PciConfig,
}

impl Default for HostBridge {
    fn default() -> Self {
        let id = PciId {
            vendor: 0x1b36,
            device: 0x0008,
            revision: 0,
            class: 0x06_0000,
            subsystem_vendor: 0x1b36,
            subsystem: 0x0008,
        };
        Self {
            config: PciConfig::new(id, 0),
        }
    }
}

impl PciDevice for HostBridge {
    fn config(&self) -> &PciConfig {
        &self.config
    }
    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }
    fn read_bar(&mut self, _bar: u8, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }
    fn write_bar(&mut self, _bar: u8, _offset: u64, _data: &[u8]) {}
}

/// The root bus is full.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the PCI root bus has no free slot (31 devices at most)")]
pub struct PciBusFull;

/// A function's address on the root bus, as a configuration access names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciAddress {
    /// Bus number (only bus 0 exists).
    pub bus: u8,
    /// Device (slot) number, 0 to 31.
    pub device: u8,
    /// Function number, 0 to 7 (only function 0 exists).
    pub function: u8,
}

/// The root bus.
pub struct PciRoot {
    slots: Vec<Option<SharedPciDevice>>,
    mapper: Arc<dyn BarMapper>,
}

impl std::fmt::Debug for PciRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let used = self.slots.iter().filter(|s| s.is_some()).count();
        f.debug_struct("PciRoot").field("devices", &used).finish()
    }
}

impl PciRoot {
    /// A root bus with the host bridge in slot 0.
    pub fn new(mapper: Arc<dyn BarMapper>) -> Self {
        let mut slots: Vec<Option<SharedPciDevice>> = vec![None; SLOTS];
        slots[0] = Some(Arc::new(Mutex::new(HostBridge::default())));
        Self { slots, mapper }
    }

    /// Puts `device` in the first free slot and maps the BARs it decodes already.
    /// Returns the slot.
    pub fn add(&mut self, device: SharedPciDevice) -> Result<u8, PciBusFull> {
        let slot = self
            .slots
            .iter()
            .position(Option::is_none)
            .ok_or(PciBusFull)?;
        let mappings = lock(&device).config().mappings();
        for mapping in mappings {
            self.mapper.map(&device, mapping);
        }
        self.slots[slot] = Some(device);
        Ok(slot as u8)
    }

    fn device(&self, address: PciAddress) -> Option<&SharedPciDevice> {
        if address.bus != 0 || address.function != 0 {
            return None;
        }
        self.slots.get(usize::from(address.device))?.as_ref()
    }

    /// Reads configuration register `reg` of the function at `address`: all ones
    /// where there is none, as on hardware.
    pub fn read(&self, address: PciAddress, reg: usize) -> u32 {
        self.device(address)
            .map_or(u32::MAX, |d| lock(d).read_config(reg))
    }

    /// Writes `data` at byte `offset` of register `reg` of the function at `address`,
    /// and moves its BARs if that changed where they decode.
    pub fn write(&self, address: PciAddress, reg: usize, offset: usize, data: &[u8]) {
        let Some(device) = self.device(address) else {
            return;
        };
        let (before, after) = {
            let mut d = lock(device);
            let before = d.config().mappings();
            d.write_config(reg, offset, data);
            (before, d.config().mappings())
        };
        for gone in before.iter().filter(|m| !after.contains(m)) {
            self.mapper.unmap(device, *gone);
        }
        for new in after.iter().filter(|m| !before.contains(m)) {
            self.mapper.map(device, *new);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::{Bar, BarKind, COMMAND_MEMORY};

    /// Records the mapper's calls.
    #[derive(Default)]
    pub struct Mappings(pub Mutex<Vec<(bool, BarMapping)>>);

    impl BarMapper for Mappings {
        fn map(&self, _device: &SharedPciDevice, mapping: BarMapping) {
            self.0.lock().unwrap().push((true, mapping));
        }
        fn unmap(&self, _device: &SharedPciDevice, mapping: BarMapping) {
            self.0.lock().unwrap().push((false, mapping));
        }
    }

    pub struct Plain(pub PciConfig);

    impl PciDevice for Plain {
        fn config(&self) -> &PciConfig {
            &self.0
        }
        fn config_mut(&mut self) -> &mut PciConfig {
            &mut self.0
        }
        fn read_bar(&mut self, bar: u8, offset: u64, data: &mut [u8]) {
            data.fill(bar.wrapping_add(offset as u8));
        }
        fn write_bar(&mut self, _bar: u8, _offset: u64, _data: &[u8]) {}
    }

    pub fn plain() -> SharedPciDevice {
        let id = PciId {
            vendor: 0x1af4,
            device: 0x1044,
            revision: 1,
            class: 0xff00,
            subsystem_vendor: 0x1af4,
            subsystem: 0x40,
        };
        let mut config = PciConfig::new(id, 1);
        let bar = Bar {
            index: 0,
            kind: BarKind::Memory32,
            size: 0x1000,
            prefetchable: false,
        };
        config.add_bar(bar).unwrap();
        config.set_bar_address(0, 0xc000_0000);
        config.set_command(COMMAND_MEMORY);
        Arc::new(Mutex::new(Plain(config)))
    }

    pub fn at(device: u8) -> PciAddress {
        PciAddress {
            bus: 0,
            device,
            function: 0,
        }
    }

    fn mapping(address: u64) -> BarMapping {
        BarMapping {
            index: 0,
            address,
            size: 0x1000,
        }
    }

    #[test]
    fn test_root_has_host_bridge_and_floats_empty_slots() {
        let root = PciRoot::new(Arc::new(Mappings::default()));
        assert_eq!(root.read(at(0), 0), 0x0008_1b36);
        assert_eq!(root.read(at(0), 2) >> 8, 0x06_0000);
        assert_eq!(root.read(at(1), 0), u32::MAX);
        let other_function = PciAddress {
            function: 1,
            ..at(0)
        };
        assert_eq!(root.read(other_function, 0), u32::MAX);
    }

    #[test]
    fn test_root_maps_bars_at_add_and_moves_them_on_writes() {
        let mappings = Arc::new(Mappings::default());
        let mut root = PciRoot::new(mappings.clone());
        assert_eq!(root.add(plain()), Ok(1));
        root.write(at(1), 1, 0, &[0, 0]);
        root.write(at(1), 4, 0, &0xd000_0000u32.to_le_bytes());
        root.write(at(1), 1, 0, &COMMAND_MEMORY.to_le_bytes());
        let calls = mappings.0.lock().unwrap().clone();
        let expected = [
            (true, mapping(0xc000_0000)),
            (false, mapping(0xc000_0000)),
            (true, mapping(0xd000_0000)),
        ];
        assert_eq!(calls, expected);
    }

    #[test]
    fn test_root_refuses_a_33rd_device() {
        let mut root = PciRoot::new(Arc::new(Mappings::default()));
        for _ in 1..SLOTS {
            root.add(plain()).unwrap();
        }
        assert_eq!(root.add(plain()), Err(PciBusFull));
    }
}
