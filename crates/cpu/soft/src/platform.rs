//! The machine as one software vCPU sees it: guest RAM, its local APIC and the I/O
//! APIC, everything else on the machine's buses; the APIC's MSRs; and CPUID completed
//! with the machine's topology and the APIC.

use std::sync::atomic::Ordering;
use std::sync::MutexGuard;

use gasang_irqchip::{ApicAction, LocalApic};
use gasang_softcpu::system::paging::PhysicalMemory;
use gasang_softcpu::system::ram::GuestRam;
use gasang_vcpu::{CpuTopology, IoHandler};

use crate::interrupts::{Interrupts, VcpuSignals};
use crate::{clock, kvmclock};

/// Where the local APIC's registers are (each vCPU sees its own there).
pub const LAPIC_BASE: u64 = 0xfee0_0000;
/// Where the I/O APIC's registers are.
pub const IOAPIC_BASE: u64 = 0xfec0_0000;
/// IA32_APIC_BASE: the base address, the global enable (bit 11) and, on the
/// bootstrap processor, the BSP flag (bit 8).
const MSR_APIC_BASE: u32 = 0x1b;
/// IA32_TSC_DEADLINE.
const MSR_TSC_DEADLINE: u32 = 0x6e0;

/// The PIT's ports (on KVM the kernel has them): its counters, control, and port
/// 0x61's channel-2 gate and output.
fn is_pit_port(port: u16) -> bool {
    matches!(port, 0x40..=0x43 | 0x61)
}

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
    /// The interrupt controllers.
    pub interrupts: &'a Interrupts,
    /// This vCPU's kvmclock MSRs: the wall clock's and the system time's.
    pub kvmclock: &'a mut [u64; 2],
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
        self.ram.contains(addr, len)
    }

    /// This vCPU's signals.
    fn me(&self) -> &VcpuSignals {
        &self.interrupts.cpus[self.index as usize]
    }

    /// This vCPU's local APIC, locked.
    fn apic(&self) -> MutexGuard<'_, LocalApic> {
        self.me().apic()
    }

    /// A read from the APICs' pages, if `addr` is in one (32-bit registers; other
    /// widths read as zeros).
    fn apic_read(&mut self, addr: u64, buf: &mut [u8]) -> bool {
        let value = match addr & !0xfff {
            LAPIC_BASE => self.apic().read((addr & 0xfff) as u32, clock::tsc()),
            IOAPIC_BASE => self.interrupts.ioapic_read(addr & 0xfff),
            _ => return false,
        };
        let bytes = if buf.len() == 4 {
            value.to_le_bytes()
        } else {
            [0; 4]
        };
        let n = buf.len().min(4);
        buf[..n].copy_from_slice(&bytes[..n]);
        true
    }

    /// A write to the APICs' pages, if `addr` is in one.
    fn apic_write(&mut self, addr: u64, buf: &[u8]) -> bool {
        let page = addr & !0xfff;
        if page != LAPIC_BASE && page != IOAPIC_BASE {
            return false;
        }
        let Ok(bytes) = <[u8; 4]>::try_from(buf) else {
            return true; // not a 32-bit access: ignored, as the APICs ignore it
        };
        let value = u32::from_le_bytes(bytes);
        if page == IOAPIC_BASE {
            self.interrupts.ioapic_write(addr & 0xfff, value);
            return true;
        }
        let action = {
            let mut apic = self.apic();
            let action = apic.write((addr & 0xfff) as u32, value, clock::tsc());
            // An EOI or a lower task priority may let a waiting interrupt through.
            let pending = apic.pending().is_some();
            self.me().attention.store(pending, Ordering::SeqCst);
            action
        };
        // Acted on with no APIC locked: an IPI may be to this vCPU itself.
        match action {
            Some(ApicAction::Ipi(ipi)) => self.interrupts.send_ipi(self.index as usize, ipi),
            Some(ApicAction::LevelEoi(vector)) => self.interrupts.level_eoi(vector),
            None => {}
        }
        true
    }
}

impl PhysicalMemory for MachineBus<'_> {
    fn read(&mut self, addr: u64, buf: &mut [u8]) {
        if self.is_ram(addr, buf.len()) {
            self.ram.read(addr, buf);
        } else if !self.apic_read(addr, buf) {
            self.io.mmio_read(addr, buf);
        }
    }

    fn write(&mut self, addr: u64, buf: &[u8]) {
        if self.is_ram(addr, buf.len()) {
            self.ram.write(addr, buf);
        } else if !self.apic_write(addr, buf) {
            self.io.mmio_write(addr, buf);
        }
    }

    #[inline]
    fn load(&mut self, addr: u64, len: usize) -> u64 {
        if self.is_ram(addr, len) {
            return self.ram.load(addr, len);
        }
        let mut buf = [0u8; 8];
        self.read(addr, &mut buf[..len]);
        u64::from_le_bytes(buf)
    }

    #[inline]
    fn store(&mut self, addr: u64, len: usize, value: u64) {
        if self.is_ram(addr, len) {
            self.ram.store(addr, len, value);
        } else {
            self.write(addr, &value.to_le_bytes()[..len]);
        }
    }

    fn compare_exchange(&mut self, addr: u64, len: usize, old: u128, new: u128) -> bool {
        if self.is_ram(addr, len) {
            self.ram.compare_exchange(addr, len, old, new)
        } else {
            // A locked access to a device register (or to nothing): the bus has no
            // atomics, so as on hardware the device sees the instruction's one read
            // and then this write. Reading again to compare would retry forever on a
            // register that changes between reads.
            self.write(addr, &new.to_le_bytes()[..len]);
            true
        }
    }

    fn code_version(&mut self, addr: u64) -> Option<u64> {
        self.ram.code_version(addr)
    }

    fn code_generation(&self) -> Option<u64> {
        self.ram.code_generation()
    }

    fn host_page(&mut self, page: u64, write: bool) -> Option<u64> {
        self.ram.host_page(page, write)
    }

    fn code_marks(&self) -> u64 {
        self.ram.code_marks()
    }

    fn port_read(&mut self, port: u16, data: &mut [u8]) {
        if is_pit_port(port) {
            let byte = self.interrupts.pit().read(port, clock::now_ns());
            data.fill(0);
            data[0] = byte;
        } else {
            self.io.pio_read(port, data);
        }
    }

    fn port_write(&mut self, port: u16, data: &[u8]) {
        if is_pit_port(port) {
            self.interrupts.pit().write(port, data[0], clock::now_ns());
        } else {
            self.io.pio_write(port, data);
        }
    }

    fn msr_read(&mut self, number: u32) -> Option<u64> {
        match number {
            MSR_APIC_BASE => {
                let bsp = if self.index == 0 { 1 << 8 } else { 0 };
                Some(LAPIC_BASE | (1 << 11) | bsp)
            }
            MSR_TSC_DEADLINE => Some(self.apic().tsc_deadline()),
            kvmclock::MSR_WALL_CLOCK => Some(self.kvmclock[0]),
            kvmclock::MSR_SYSTEM_TIME => Some(self.kvmclock[1]),
            _ => None,
        }
    }

    fn msr_write(&mut self, number: u32, value: u64) -> Option<()> {
        match number {
            // Moving or disabling the APIC is not implemented: only its value stays.
            MSR_APIC_BASE => (value & !0x100 == LAPIC_BASE | (1 << 11)).then_some(()),
            MSR_TSC_DEADLINE => {
                self.apic().set_tsc_deadline(value);
                Some(())
            }
            kvmclock::MSR_WALL_CLOCK => {
                self.kvmclock[0] = value;
                let wall = kvmclock::wall_clock(0, clock::now_ns());
                self.ram.write(value, &wall);
                Some(())
            }
            kvmclock::MSR_SYSTEM_TIME => {
                self.kvmclock[1] = value;
                if value & 1 != 0 {
                    // The guest's system time is the host's monotonic clock.
                    let (tsc, now) = (clock::tsc(), clock::now_ns());
                    let info = kvmclock::time_info(0, tsc, now, clock::tsc_hz());
                    self.ram.write(value & !1, &info);
                }
                Some(())
            }
            _ => None,
        }
    }

    fn cpuid(&mut self, leaf: u32, sub: u32, [a, b, c, d]: [u32; 4]) -> [u32; 4] {
        let hz = clock::tsc_hz();
        let khz = u32::try_from(hz / 1000).unwrap_or(u32::MAX);
        match leaf {
            // Up to leaf 0x15, which states the TSC's rate.
            0 => [a.max(0x15), b, c, d],
            // TSC = crystal (ECX) * EBX / EAX.
            0x15 => match u32::try_from(hz) {
                Ok(hz) => [1, 1, hz, 0],
                Err(_) => [1, 2, u32::try_from(hz / 2).unwrap_or(u32::MAX), 0],
            },
            // KVM's paravirtual interface, as far as implemented: kvmclock.
            0x4000_0000 => {
                let sig: Vec<u32> = kvmclock::SIGNATURE
                    .chunks(4)
                    .map(|w| u32::from_le_bytes(w.try_into().expect("4-byte chunks")))
                    .collect();
                [0x4000_0010, sig[0], sig[1], sig[2]]
            }
            0x4000_0001 => [kvmclock::FEATURES, 0, 0, 0],
            // The hypervisor timing leaf: TSC and APIC timer rates in kHz.
            0x4000_0010 => [khz, khz, 0, 0],
            // The topology's APIC ID and counts; the APIC (EDX 9) and its TSC-deadline
            // timer (ECX 24); ECX 31: a hypervisor is present (its leaves are
            // 0x4000_0000 on).
            1 => {
                let [a, b, c, d] = self.topology.cpuid(self.index, 1, 0, [a, b, c, d]);
                [a, b, c | (1 << 24) | (1 << 31), d | (1 << 9)]
            }
            4 | 0xb => self.topology.cpuid(self.index, leaf, sub, [a, b, c, d]),
            _ => [a, b, c, d],
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// A device register that counts its reads, and records writes.
    #[derive(Default)]
    struct Counter {
        reads: AtomicU32,
        writes: std::sync::Mutex<Vec<u8>>,
    }

    impl IoHandler for Counter {
        fn pio_read(&self, _port: u16, _data: &mut [u8]) {}
        fn pio_write(&self, _port: u16, _data: &[u8]) {}
        fn mmio_read(&self, _addr: u64, data: &mut [u8]) {
            let n = self.reads.fetch_add(1, Ordering::SeqCst);
            data.fill(n as u8);
        }
        fn mmio_write(&self, _addr: u64, data: &[u8]) {
            self.writes.lock().unwrap().extend_from_slice(data);
        }
    }

    /// A locked update of a device register reads it once and writes it once, however
    /// the register changes between reads (comparing with a second read would retry
    /// forever).
    #[test]
    fn test_locked_update_of_a_device_register_is_one_read_and_one_write() {
        let mut page = vec![0u8; 2 * 4096];
        let base = page
            .as_mut_ptr()
            .wrapping_add(page.as_ptr().align_offset(4096));
        // SAFETY: one page-aligned page inside `page`, which outlives `ram`.
        let mut ram = unsafe { GuestRam::new(base, 4096) };
        let io = Counter::default();
        let interrupts = Interrupts::new(&[0]);
        let mut kvmclock = [0; 2];
        let mut bus = MachineBus {
            ram: &mut ram,
            io: &io,
            topology: CpuTopology::new(1).unwrap(),
            index: 0,
            interrupts: &interrupts,
            kvmclock: &mut kvmclock,
        };
        const DEVICE: u64 = 0xd000_0000;
        let mut old = [0u8; 4];
        bus.read(DEVICE, &mut old);
        assert!(bus.compare_exchange(DEVICE, 4, u128::from(u32::from_le_bytes(old)), 7));
        assert_eq!(io.reads.load(Ordering::SeqCst), 1, "one read");
        assert_eq!(*io.writes.lock().unwrap(), 7u32.to_le_bytes(), "one write");
    }
}
