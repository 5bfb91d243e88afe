//! Configuration accesses: the legacy port pair 0xCF8/0xCFC (configuration
//! mechanism #1) and the memory-mapped ECAM window of PCI Express.

use std::sync::Arc;

use gasang_bus::BusDevice;

use crate::root::{PciAddress, PciRoot};

/// Ports the port accessor spans: the address register at 0xCF8, data at 0xCFC.
pub const CONFIG_IO_LEN: u64 = 8;
/// Bytes of ECAM per bus (32 devices, 8 functions, 4 KiB each).
pub const ECAM_BUS_SIZE: u64 = 1 << 20;
const ENABLE: u32 = 1 << 31;

/// The 0xCF8/0xCFC port pair.
#[derive(Debug)]
pub struct PciConfigIo {
    root: Arc<PciRoot>,
    address: u32,
}

impl PciConfigIo {
    /// Accesses to `root`.
    pub fn new(root: Arc<PciRoot>) -> Self {
        Self { root, address: 0 }
    }

    /// The function and register the address register selects, if enabled; and the
    /// byte in the register that `offset` (0xCFC..0xCFF) reaches.
    fn selected(&self, port_offset: u64, len: usize) -> Option<(PciAddress, usize, usize)> {
        let byte = (port_offset - 4) as usize;
        if self.address & ENABLE == 0 || byte + len > 4 {
            return None;
        }
        let address = PciAddress {
            bus: (self.address >> 16) as u8,
            device: (self.address >> 11) as u8 & 0x1f,
            function: (self.address >> 8) as u8 & 7,
        };
        Some((address, (self.address as usize & 0xfc) >> 2, byte))
    }
}

impl BusDevice for PciConfigIo {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        if offset == 0 && data.len() == 4 {
            data.copy_from_slice(&self.address.to_le_bytes());
        } else if offset >= 4 {
            if let Some((address, reg, byte)) = self.selected(offset, data.len()) {
                let value = self.root.read(address, reg).to_le_bytes();
                data.copy_from_slice(&value[byte..byte + data.len()]);
            }
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset == 0 && data.len() == 4 {
            self.address = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
        } else if offset >= 4 {
            if let Some((address, reg, byte)) = self.selected(offset, data.len()) {
                self.root.write(address, reg, byte, data);
            }
        }
    }
}

/// The ECAM window of bus 0.
#[derive(Debug)]
pub struct PciConfigMmio {
    root: Arc<PciRoot>,
}

impl PciConfigMmio {
    /// Accesses to `root`.
    pub fn new(root: Arc<PciRoot>) -> Self {
        Self { root }
    }
}

/// The function, register and byte an ECAM offset names, for an access of `len`
/// bytes that stays in one register and in the standard configuration space.
fn ecam_target(offset: u64, len: usize) -> Option<(PciAddress, usize, usize)> {
    let byte = (offset & 3) as usize;
    let within = (offset & 0xfff) as usize;
    if byte + len > 4 || within >= crate::config::CONFIG_SIZE {
        return None;
    }
    let address = PciAddress {
        bus: (offset >> 20) as u8,
        device: (offset >> 15) as u8 & 0x1f,
        function: (offset >> 12) as u8 & 7,
    };
    Some((address, within >> 2, byte))
}

impl BusDevice for PciConfigMmio {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let Some((address, reg, byte)) = ecam_target(offset, data.len()) else {
            // The extended space (0x100..0x1000) of a function is empty: no
            // extended capabilities. Unaligned accesses read zeros too.
            data.fill(0);
            return;
        };
        let value = self.root.read(address, reg).to_le_bytes();
        data.copy_from_slice(&value[byte..byte + data.len()]);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let Some((address, reg, byte)) = ecam_target(offset, data.len()) {
            self.root.write(address, reg, byte, data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::root::tests::{plain, Mappings};

    fn root() -> Arc<PciRoot> {
        let mut root = PciRoot::new(Arc::new(Mappings::default()));
        root.add(plain()).unwrap();
        Arc::new(root)
    }

    fn cf8(device: u8, reg: u8) -> [u8; 4] {
        (ENABLE | u32::from(device) << 11 | u32::from(reg)).to_le_bytes()
    }

    #[test]
    fn test_config_io_reads_ids_through_address_register() {
        let mut io = PciConfigIo::new(root());
        io.write(0, &cf8(1, 0));
        let mut word = [0u8; 4];
        io.read(4, &mut word);
        assert_eq!(u32::from_le_bytes(word), 0x1044_1af4);
        let mut half = [0u8; 2];
        io.read(6, &mut half);
        assert_eq!(u16::from_le_bytes(half), 0x1044);
        io.read(0, &mut word);
        assert_eq!(word, cf8(1, 0));
    }

    #[test]
    fn test_config_io_disabled_or_empty_reads_all_ones() {
        let mut io = PciConfigIo::new(root());
        let mut word = [0u8; 4];
        io.write(0, &0u32.to_le_bytes());
        io.read(4, &mut word);
        assert_eq!(word, [0xff; 4]);
        io.write(0, &cf8(7, 0));
        io.read(4, &mut word);
        assert_eq!(word, [0xff; 4]);
    }

    #[test]
    fn test_ecam_reaches_registers_and_extended_space_is_empty() {
        let mut ecam = PciConfigMmio::new(root());
        let mut word = [0u8; 4];
        ecam.read(1 << 15, &mut word);
        assert_eq!(u32::from_le_bytes(word), 0x1044_1af4);
        ecam.write((1 << 15) | 0x3c, &[0x0b]);
        let mut byte = [0u8; 1];
        ecam.read((1 << 15) | 0x3c, &mut byte);
        assert_eq!(byte, [0x0b]);
        ecam.read((1 << 15) | 0x100, &mut word);
        assert_eq!(word, [0; 4]);
        ecam.read((1 << 15) | 0x3, &mut word);
        assert_eq!(word, [0; 4]);
    }
}
