//! The machine as one software vCPU sees it: guest RAM, everything else on the
//! machine's buses, and CPUID completed with the machine's topology.

use gasang_bus::IrqLine;
use gasang_softcpu::system::paging::PhysicalMemory;
use gasang_softcpu::system::ram::GuestRam;
use gasang_vcpu::{CpuTopology, IoHandler};

/// Guest-physical memory and ports for one vCPU, for the length of one run.
pub struct MachineBus<'a> {
    /// Guest RAM (shared with the other vCPUs).
    pub ram: &'a mut GuestRam,
    /// The machine's devices.
    pub io: &'a dyn IoHandler,
    /// The machine's CPUs.
    pub topology: CpuTopology,
    /// This vCPU.
    pub index: u32,
}

impl std::fmt::Debug for MachineBus<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MachineBus")
            .field("index", &self.index)
            .finish()
    }
}

impl MachineBus<'_> {
    /// Whether all of `[addr, addr + len)` is RAM (an access straddling RAM's end goes
    /// to the bus whole: devices never sit right after RAM).
    fn is_ram(&self, addr: u64, len: usize) -> bool {
        addr.checked_add(len as u64)
            .is_some_and(|end| end <= self.ram.len() as u64)
    }
}

impl PhysicalMemory for MachineBus<'_> {
    fn read(&mut self, addr: u64, buf: &mut [u8]) {
        if self.is_ram(addr, buf.len()) {
            self.ram.read(addr, buf);
        } else {
            self.io.mmio_read(addr, buf);
        }
    }

    fn write(&mut self, addr: u64, buf: &[u8]) {
        if self.is_ram(addr, buf.len()) {
            self.ram.write(addr, buf);
        } else {
            self.io.mmio_write(addr, buf);
        }
    }

    fn compare_exchange(&mut self, addr: u64, len: usize, old: u128, new: u128) -> bool {
        if self.is_ram(addr, len) {
            self.ram.compare_exchange(addr, len, old, new)
        } else {
            // A locked access to a device register: read, compare, write, as the bus
            // has no atomics (no guest does this to a device that cares).
            let mut buf = [0u8; 16];
            self.io.mmio_read(addr, &mut buf[..len]);
            let equal = u128::from_le_bytes(buf) == old;
            if equal {
                self.io.mmio_write(addr, &new.to_le_bytes()[..len]);
            }
            equal
        }
    }

    fn code_version(&mut self, addr: u64) -> Option<u64> {
        self.ram.code_version(addr)
    }

    fn code_generation(&self) -> Option<u64> {
        self.ram.code_generation()
    }

    fn port_read(&mut self, port: u16, data: &mut [u8]) {
        self.io.pio_read(port, data);
    }

    fn port_write(&mut self, port: u16, data: &[u8]) {
        self.io.pio_write(port, data);
    }

    fn cpuid(&mut self, leaf: u32, _sub: u32, [a, b, c, d]: [u32; 4]) -> [u32; 4] {
        match leaf {
            // The initial APIC ID and the logical processor count.
            1 => {
                let apic_id = self.topology.apic_id(self.index);
                let count = self.topology.vcpus().min(255);
                [a, (b & 0xffff) | (count << 16) | (apic_id << 24), c, d]
            }
            _ => [a, b, c, d],
        }
    }
}

/// An interrupt line of a controller the software backend does not have yet: its
/// changes are dropped (logged once per line).
#[derive(Debug)]
pub struct UnconnectedLine(pub u32);

impl IrqLine for UnconnectedLine {
    fn set_level(&self, high: bool) {
        if high {
            tracing::trace!(
                gsi = self.0,
                "interrupt dropped: no IOAPIC on this backend yet"
            );
        }
    }
}
