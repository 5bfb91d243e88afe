//! The machine's [`IoHandler`]: port I/O and MMIO to the buses, unknown accesses ignored.

use std::sync::atomic::{AtomicU64, Ordering};

use gasang_bus::{Bus, RangeTraps, RateLimit};
use gasang_vcpu::IoHandler;

/// The port and MMIO buses, as vCPU threads reach them.
#[derive(Debug, Default)]
pub struct MachineIo {
    /// Port I/O space.
    pub pio: Bus,
    /// MMIO space (everything that is not RAM).
    pub mmio: Bus,
    unknown: AtomicU64,
}

/// Unknown accesses log at most this often: a guest can make millions.
static UNKNOWN_LOG: RateLimit = RateLimit::new(10, 10);

/// Where the guest's trapped accesses went: the device traps of the software CPU,
/// and the port I/O and MMIO exits of KVM that reached gasang.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrapCounts {
    /// Per device on the port bus.
    pub pio: Vec<RangeTraps>,
    /// Per device on the MMIO bus (BARs as they are now).
    pub mmio: Vec<RangeTraps>,
    /// Accesses that reached no device.
    pub unknown: u64,
}

impl MachineIo {
    /// The trap counts so far.
    pub fn traps(&self) -> TrapCounts {
        TrapCounts {
            pio: self.pio.traps(),
            mmio: self.mmio.traps(),
            unknown: self.unknown_accesses(),
        }
    }

    /// Accesses that reached no device so far.
    pub fn unknown_accesses(&self) -> u64 {
        self.unknown.load(Ordering::Relaxed)
    }

    fn unknown(&self, what: &str, addr: u64, len: usize) {
        self.unknown.fetch_add(1, Ordering::Relaxed);
        if UNKNOWN_LOG.allow() {
            tracing::debug!("ignored {what} of {len} bytes at {addr:#x}: no device there");
        }
    }
}

impl IoHandler for MachineIo {
    fn pio_read(&self, port: u16, data: &mut [u8]) {
        if !self.pio.read(u64::from(port), data) {
            // An undriven ISA bus floats high.
            data.fill(0xff);
            self.unknown("port read", u64::from(port), data.len());
        }
    }

    fn pio_write(&self, port: u16, data: &[u8]) {
        if !self.pio.write(u64::from(port), data) {
            self.unknown("port write", u64::from(port), data.len());
        }
    }

    fn mmio_read(&self, addr: u64, data: &mut [u8]) {
        if !self.mmio.read(addr, data) {
            data.fill(0xff);
            self.unknown("MMIO read", addr, data.len());
        }
    }

    fn mmio_write(&self, addr: u64, data: &[u8]) {
        if !self.mmio.write(addr, data) {
            self.unknown("MMIO write", addr, data.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_unknown_port_reads_all_ones_and_is_counted() {
        let io = MachineIo::default();
        let mut data = [0u8; 2];
        io.pio_read(0x1234, &mut data);
        io.mmio_write(0xd000_0000, &[1, 2, 3, 4]);
        assert_eq!(data, [0xff, 0xff]);
        assert_eq!(io.unknown_accesses(), 2);
    }
}
