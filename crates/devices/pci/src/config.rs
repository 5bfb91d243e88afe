//! A type-0 PCI configuration space: the header, six BARs and a capability list.
//!
//! Every byte has a write mask: the guest changes only the bits a real device lets it
//! change (the command register's enables, BAR address bits, the interrupt line, the
//! capabilities' control fields). BAR sizing works as on hardware: writing all ones
//! to a BAR reads back the size mask.

/// Bytes of configuration space every function has (the PCI header and capabilities).
pub const CONFIG_SIZE: usize = 256;
const REGS: usize = CONFIG_SIZE / 4;

/// Command register: I/O space decoding.
pub const COMMAND_IO: u16 = 1 << 0;
/// Command register: memory space decoding.
pub const COMMAND_MEMORY: u16 = 1 << 1;
/// Command register: bus mastering (DMA, and MSI writes).
pub const COMMAND_MASTER: u16 = 1 << 2;
/// Command register: INTx disabled.
pub const COMMAND_INTX_DISABLE: u16 = 1 << 10;
/// Status register: a capability list exists.
const STATUS_CAP_LIST: u16 = 1 << 4;
/// Command bits the guest may set: I/O, memory, master, parity, SERR, INTx disable.
const COMMAND_WRITABLE: u32 = 0x0547;

const BAR0: usize = 4;
const CAPABILITIES_PTR: usize = 0x34;
const INTERRUPT_REG: usize = 0x3c / 4;
const FIRST_CAPABILITY: usize = 0x40;

/// The identity of a PCI function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciId {
    /// Vendor ID.
    pub vendor: u16,
    /// Device ID.
    pub device: u16,
    /// Revision ID.
    pub revision: u8,
    /// Class code, subclass and programming interface (24 bits).
    pub class: u32,
    /// Subsystem vendor ID.
    pub subsystem_vendor: u16,
    /// Subsystem ID.
    pub subsystem: u16,
}

/// What a BAR decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarKind {
    /// 32-bit memory space.
    Memory32,
    /// 64-bit memory space: this BAR and the next one.
    Memory64,
}

/// A BAR the device implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bar {
    /// Its index (0 to 5; a 64-bit BAR takes the next index too).
    pub index: u8,
    /// Its kind.
    pub kind: BarKind,
    /// Size in bytes, a power of two of at least 16.
    pub size: u64,
    /// Whether it is prefetchable.
    pub prefetchable: bool,
}

/// A BAR the guest decodes at an address now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarMapping {
    /// Which BAR.
    pub index: u8,
    /// Its guest-physical address.
    pub address: u64,
    /// Its size.
    pub size: u64,
}

/// The BAR or capability layout a device asked for is impossible (a gasang bug).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PciConfigError {
    /// The BAR's index is taken or out of range, or its size is not a power of two.
    #[error("BAR {0} is taken, out of range or badly sized")]
    Bar(u8),
    /// The capability list is full.
    #[error("no room for a capability of {0} bytes")]
    CapabilityFull(usize),
}

/// A function's configuration space.
#[derive(Debug, Clone)]
pub struct PciConfig {
    regs: [u32; REGS],
    writable: [u32; REGS],
    bars: [Option<Bar>; 6],
    /// The last capability's offset (0: none yet), and where the next one goes.
    last_capability: usize,
    next_capability: usize,
}

impl PciConfig {
    /// A header for `id`, interrupt pin `pin` (1 = INTA, 0 = none), with no BARs.
    pub fn new(id: PciId, pin: u8) -> Self {
        let mut config = Self {
            regs: [0; REGS],
            writable: [0; REGS],
            bars: [None; 6],
            last_capability: 0,
            next_capability: FIRST_CAPABILITY,
        };
        config.regs[0] = u32::from(id.vendor) | u32::from(id.device) << 16;
        config.regs[1] = 0;
        config.writable[1] = COMMAND_WRITABLE;
        config.regs[2] = u32::from(id.revision) | (id.class & 0xff_ffff) << 8;
        config.regs[11] = u32::from(id.subsystem_vendor) | u32::from(id.subsystem) << 16;
        config.regs[INTERRUPT_REG] = u32::from(pin) << 8;
        // The interrupt line is the guest's scratch byte.
        config.writable[INTERRUPT_REG] = 0xff;
        config
    }

    /// Adds `bar`. Its address starts at 0 (unassigned).
    pub fn add_bar(&mut self, bar: Bar) -> Result<(), PciConfigError> {
        let i = usize::from(bar.index);
        let wide = bar.kind == BarKind::Memory64;
        let last = i + usize::from(wide);
        if last > 5
            || !bar.size.is_power_of_two()
            || bar.size < 16
            || self.occupied(i)
            || self.occupied(last)
        {
            return Err(PciConfigError::Bar(bar.index));
        }
        if !wide && bar.size > 1 << 31 {
            return Err(PciConfigError::Bar(bar.index));
        }
        let mask = !(bar.size - 1);
        let flags = u32::from(wide) << 2 | u32::from(bar.prefetchable) << 3;
        self.regs[BAR0 + i] = flags;
        self.writable[BAR0 + i] = mask as u32;
        if wide {
            self.writable[BAR0 + i + 1] = (mask >> 32) as u32;
        }
        self.bars[i] = Some(bar);
        Ok(())
    }

    /// Whether BAR register `reg` belongs to a BAR already.
    fn occupied(&self, reg: usize) -> bool {
        self.bars().any(|b| {
            let first = usize::from(b.index);
            reg == first || (b.kind == BarKind::Memory64 && reg == first + 1)
        })
    }

    /// Sets `bar`'s address, as firmware assigns it before the guest boots.
    pub fn set_bar_address(&mut self, index: u8, address: u64) {
        let Some(bar) = self.bars.get(usize::from(index)).copied().flatten() else {
            return;
        };
        let i = BAR0 + usize::from(index);
        let mask = !(bar.size - 1);
        self.regs[i] = (self.regs[i] & 0xf) | (address & mask) as u32;
        if bar.kind == BarKind::Memory64 {
            self.regs[i + 1] = ((address & mask) >> 32) as u32;
        }
    }

    /// The BARs the device implements.
    pub fn bars(&self) -> impl Iterator<Item = Bar> + '_ {
        self.bars.iter().flatten().copied()
    }

    fn bar_address(&self, bar: &Bar) -> u64 {
        let i = BAR0 + usize::from(bar.index);
        let low = u64::from(self.regs[i] & !0xf);
        match bar.kind {
            BarKind::Memory32 => low,
            BarKind::Memory64 => low | u64::from(self.regs[i + 1]) << 32,
        }
    }

    /// The BARs the guest decodes now: memory decoding on, address assigned.
    pub fn mappings(&self) -> Vec<BarMapping> {
        if self.command() & COMMAND_MEMORY == 0 {
            return Vec::new();
        }
        self.bars()
            .map(|bar| BarMapping {
                index: bar.index,
                address: self.bar_address(&bar),
                size: bar.size,
            })
            .filter(|m| m.address != 0)
            .collect()
    }

    /// The command register.
    pub fn command(&self) -> u16 {
        self.regs[1] as u16
    }

    /// Sets the command register (as firmware does before boot).
    pub fn set_command(&mut self, command: u16) {
        self.regs[1] = (self.regs[1] & !0xffff) | u32::from(command);
    }

    /// Appends a capability: `body` starts with its ID and a placeholder next-pointer
    /// byte. `writable` masks the bytes of `body` the guest may change (shorter: the
    /// rest read-only). Returns its offset in configuration space.
    pub fn add_capability(
        &mut self,
        body: &[u8],
        writable: &[u8],
    ) -> Result<usize, PciConfigError> {
        let offset = self.next_capability;
        let end = offset + body.len();
        if body.len() < 2 || end > CONFIG_SIZE {
            return Err(PciConfigError::CapabilityFull(body.len()));
        }
        for (k, &byte) in body.iter().enumerate() {
            self.set_byte(offset + k, byte);
            let mask = writable.get(k).copied().unwrap_or(0);
            set_byte_of(&mut self.writable, offset + k, mask);
        }
        // The new capability ends the list; the previous one points to it.
        self.set_byte(offset + 1, 0);
        let link = if self.last_capability == 0 {
            CAPABILITIES_PTR
        } else {
            self.last_capability + 1
        };
        self.set_byte(link, offset as u8);
        self.regs[1] |= u32::from(STATUS_CAP_LIST) << 16;
        self.last_capability = offset;
        self.next_capability = end.next_multiple_of(4);
        Ok(offset)
    }

    fn set_byte(&mut self, offset: usize, value: u8) {
        set_byte_of(&mut self.regs, offset, value);
    }

    /// The byte at `offset`.
    pub fn byte(&self, offset: usize) -> u8 {
        self.regs
            .get(offset / 4)
            .map_or(0, |r| (r >> (8 * (offset % 4))) as u8)
    }

    /// The 32-bit register `reg` (byte offset `4 * reg`); beyond the space, 0.
    pub fn read_reg(&self, reg: usize) -> u32 {
        self.regs.get(reg).copied().unwrap_or(0)
    }

    /// Writes `data` at byte `offset` of register `reg`, through the write masks.
    /// Out-of-range writes are dropped.
    pub fn write(&mut self, reg: usize, offset: usize, data: &[u8]) {
        if reg >= REGS || offset + data.len() > 4 {
            return;
        }
        let mut value = self.regs[reg].to_le_bytes();
        let mask = self.writable[reg].to_le_bytes();
        for (k, &byte) in data.iter().enumerate() {
            let at = offset + k;
            value[at] = (value[at] & !mask[at]) | (byte & mask[at]);
        }
        self.regs[reg] = u32::from_le_bytes(value);
    }

    /// Sets the bytes at `offset` from the device's side (no write mask): for the
    /// fields of capabilities that the device updates.
    pub fn set_bytes(&mut self, offset: usize, data: &[u8]) {
        for (k, &byte) in data.iter().enumerate() {
            if offset + k < CONFIG_SIZE {
                self.set_byte(offset + k, byte);
            }
        }
    }
}

fn set_byte_of(regs: &mut [u32; REGS], offset: usize, value: u8) {
    let shift = 8 * (offset % 4);
    let r = &mut regs[offset / 4];
    *r = (*r & !(0xff << shift)) | u32::from(value) << shift;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> PciId {
        PciId {
            vendor: 0x1af4,
            device: 0x1042,
            revision: 1,
            class: 0x01_8000,
            subsystem_vendor: 0x1af4,
            subsystem: 0x40,
        }
    }

    fn bar64(index: u8, size: u64) -> Bar {
        Bar {
            index,
            kind: BarKind::Memory64,
            size,
            prefetchable: false,
        }
    }

    #[test]
    fn test_config_header_reads_identity_and_pin() {
        let config = PciConfig::new(id(), 1);
        assert_eq!(config.read_reg(0), 0x1042_1af4);
        assert_eq!(config.read_reg(2), 0x0180_0001);
        assert_eq!(config.read_reg(11), 0x0040_1af4);
        assert_eq!(config.read_reg(15) >> 8 & 0xff, 1);
        assert_eq!(config.read_reg(64), 0);
    }

    #[test]
    fn test_config_read_only_fields_ignore_writes() {
        let mut config = PciConfig::new(id(), 1);
        config.write(0, 0, &[0, 0, 0, 0]);
        config.write(2, 0, &[0xff; 4]);
        config.write(1, 0, &[0xff, 0xff]);
        assert_eq!(config.read_reg(0), 0x1042_1af4);
        assert_eq!(config.read_reg(2), 0x0180_0001);
        assert_eq!(config.command(), 0x0547);
    }

    #[test]
    fn test_bar_sizing_reads_back_size_mask() {
        let mut config = PciConfig::new(id(), 0);
        config.add_bar(bar64(0, 0x8000)).unwrap();
        config.write(4, 0, &[0xff; 4]);
        config.write(5, 0, &[0xff; 4]);
        assert_eq!(config.read_reg(4), 0xffff_8004);
        assert_eq!(config.read_reg(5), 0xffff_ffff);
    }

    #[test]
    fn test_bar_mapping_needs_memory_decoding() {
        let mut config = PciConfig::new(id(), 0);
        config.add_bar(bar64(2, 0x1000)).unwrap();
        config.set_bar_address(2, 0x1_2345_6000);
        assert!(config.mappings().is_empty());
        config.write(1, 0, &COMMAND_MEMORY.to_le_bytes());
        let mapping = BarMapping {
            index: 2,
            address: 0x1_2345_6000,
            size: 0x1000,
        };
        assert_eq!(config.mappings(), [mapping]);
    }

    #[test]
    fn test_bar_layout_errors_are_refused() {
        let mut config = PciConfig::new(id(), 0);
        config.add_bar(bar64(0, 0x1000)).unwrap();
        assert_eq!(
            config.add_bar(bar64(1, 0x1000)),
            Err(PciConfigError::Bar(1))
        );
        assert_eq!(
            config.add_bar(bar64(5, 0x1000)),
            Err(PciConfigError::Bar(5))
        );
        assert_eq!(
            config.add_bar(bar64(2, 0x1001)),
            Err(PciConfigError::Bar(2))
        );
    }

    #[test]
    fn test_capabilities_are_linked_in_order() {
        let mut config = PciConfig::new(id(), 0);
        let first = config.add_capability(&[0x11, 0, 1, 2, 3, 4], &[]).unwrap();
        let second = config.add_capability(&[0x09, 0, 7], &[0, 0, 0xff]).unwrap();
        assert_eq!((first, second), (0x40, 0x48));
        assert_eq!(config.byte(CAPABILITIES_PTR), 0x40);
        assert_eq!(config.byte(0x41), 0x48);
        assert_eq!(config.byte(0x49), 0);
        assert_ne!(config.read_reg(1) >> 16 & u32::from(STATUS_CAP_LIST), 0);
        config.write(0x48 / 4, 0, &[0xee, 0xee, 0xee]);
        assert_eq!(config.byte(0x48), 0x09);
        assert_eq!(config.byte(0x4a), 0xee);
    }
}
