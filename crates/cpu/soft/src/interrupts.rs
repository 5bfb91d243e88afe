//! The software backend's interrupt controllers, shared by every thread that raises
//! interrupts: the I/O APIC and one local APIC per vCPU, each behind its own lock, and
//! per vCPU the flags and the condition variable that wake it.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use gasang_bus::{lock, IrqLine, MsiMessage, MsiVector};
use gasang_irqchip::{Delivery, IoApic, Ipi, LocalApic, Pit};

/// What other threads share with one vCPU.
#[derive(Debug)]
pub struct VcpuSignals {
    /// Its local APIC ([`VcpuSignals::apic`] locks it).
    apic: Mutex<LocalApic>,
    /// The APIC may hold an interrupt the CPU can take: looked at before each block
    /// (a load), the APIC itself only when set.
    pub attention: AtomicBool,
    /// An NMI is pending (one at most, as on hardware: more merge into it).
    pub nmi: AtomicBool,
    /// Another thread asked the vCPU to return to the machine.
    pub kicked: AtomicBool,
    /// An INIT IPI arrived: the vCPU waits for a start-up IPI.
    pub init: AtomicBool,
    /// A start-up IPI arrived: 0x100 | its vector (0: none).
    pub sipi: AtomicU32,
    sleep: Mutex<()>,
    wake: Condvar,
}

impl VcpuSignals {
    fn new(apic_id: u8) -> Self {
        Self {
            apic: Mutex::new(LocalApic::new(apic_id)),
            attention: AtomicBool::new(false),
            nmi: AtomicBool::new(false),
            kicked: AtomicBool::new(false),
            init: AtomicBool::new(false),
            sipi: AtomicU32::new(0),
            sleep: Mutex::new(()),
            wake: Condvar::new(),
        }
    }

    /// Its local APIC, locked.
    pub fn apic(&self) -> MutexGuard<'_, LocalApic> {
        lock(&self.apic)
    }

    /// Wakes the vCPU if it sleeps.
    fn notify(&self) {
        // Taking the lock orders this with a sleeper's check of the flags.
        let _guard = lock(&self.sleep);
        self.wake.notify_all();
    }

    /// Requests `vector` in this vCPU's APIC and wakes it.
    pub fn request(&self, vector: u8, level: bool) {
        lock(&self.apic).request(vector, level);
        self.attention.store(true, Ordering::SeqCst);
        self.notify();
    }

    /// Raises an NMI on this vCPU and wakes it.
    pub fn request_nmi(&self) {
        self.nmi.store(true, Ordering::SeqCst);
        self.notify();
    }

    /// An INIT IPI: the vCPU waits for a start-up IPI. It drops a start-up IPI or NMI
    /// that came before it, here, where it arrives; one that follows it stands, even
    /// when the vCPU's thread sees both at once (a busy host delays it: Linux sends
    /// the start-up IPI right after the INIT).
    pub fn request_init(&self) {
        self.sipi.store(0, Ordering::SeqCst);
        self.nmi.store(false, Ordering::SeqCst);
        self.init.store(true, Ordering::SeqCst);
        self.notify();
    }

    /// A start-up IPI with `vector` (taken only while waiting for one).
    pub fn request_startup(&self, vector: u8) {
        self.sipi.store(0x100 | u32::from(vector), Ordering::SeqCst);
        self.notify();
    }

    /// The INIT and start-up IPIs that arrived since the last call: whether an INIT
    /// did, and the latest start-up IPI's vector.
    pub fn take_startup(&self) -> (bool, Option<u8>) {
        let init = self.init.swap(false, Ordering::SeqCst);
        let sipi = self.sipi.swap(0, Ordering::SeqCst);
        (init, (sipi != 0).then_some(sipi as u8))
    }

    /// Makes [`gasang_vcpu::Vcpu::run`] return soon.
    pub fn kick(&self) {
        self.kicked.store(true, Ordering::SeqCst);
        self.notify();
    }

    /// Whether an interrupt the CPU would take is pending: a maskable one if
    /// `interruptible`, an NMI if `nmi` (not blocked).
    pub fn interrupt_pending(&self, interruptible: bool, nmi: bool) -> bool {
        (interruptible && self.attention.load(Ordering::SeqCst))
            || (nmi && self.nmi.load(Ordering::SeqCst))
    }

    /// Sleeps until kicked, INIT or start-up IPI, until an interrupt is pending (see
    /// [`VcpuSignals::interrupt_pending`]), or for at most `timeout`.
    pub fn sleep(&self, interruptible: bool, nmi: bool, timeout: Option<Duration>) {
        let woken = || {
            self.kicked.load(Ordering::SeqCst)
                || self.init.load(Ordering::SeqCst)
                || self.sipi.load(Ordering::SeqCst) != 0
                || self.interrupt_pending(interruptible, nmi)
        };
        let guard = lock(&self.sleep);
        if woken() {
            return;
        }
        // Spurious wake-ups only make the caller look again.
        // Poisoning only means another thread panicked: waking is all that matters.
        match timeout {
            Some(t) => drop(self.wake.wait_timeout(guard, t)),
            None => drop(self.wake.wait(guard)),
        }
    }
}

/// The I/O APIC, the PIT (whose channel 0 drives GSI 0) and every vCPU's signals.
#[derive(Debug)]
pub struct Interrupts {
    ioapic: Mutex<IoApic>,
    /// Time in nanoseconds ([`crate::clock::now_ns`]).
    pit: Mutex<Pit>,
    /// By vCPU index.
    pub cpus: Vec<Arc<VcpuSignals>>,
}

impl Interrupts {
    /// Controllers for vCPUs with `apic_ids` (by index); the I/O APIC's ID follows.
    pub fn new(apic_ids: &[u8]) -> Self {
        let ioapic_id = apic_ids.iter().max().map_or(0, |m| m.wrapping_add(1));
        Self {
            ioapic: Mutex::new(IoApic::new(ioapic_id)),
            pit: Mutex::new(Pit::new()),
            cpus: apic_ids
                .iter()
                .map(|&id| Arc::new(VcpuSignals::new(id)))
                .collect(),
        }
    }

    /// The vCPUs a destination names: an APIC ID (0xff: all), or a flat logical mask.
    fn targets(&self, logical: bool, destination: u8) -> Vec<&Arc<VcpuSignals>> {
        self.cpus
            .iter()
            .filter(|cpu| {
                let apic = lock(&cpu.apic);
                if logical {
                    apic.in_logical_destination(destination)
                } else {
                    destination == 0xff || apic.id() == destination
                }
            })
            .collect()
    }

    /// Hands an I/O APIC delivery to its local APICs (lowest priority: the first; NMI:
    /// each named vCPU's NMI).
    fn deliver(&self, d: Delivery) {
        if d.mode == 4 {
            for cpu in self.targets(d.logical, d.destination) {
                cpu.request_nmi();
            }
            return;
        }
        if d.mode > 1 {
            tracing::debug!(?d, "I/O APIC delivery mode not implemented: dropped");
            return;
        }
        let targets = self.targets(d.logical, d.destination);
        let targets = if d.mode == 1 {
            &targets[..targets.len().min(1)]
        } else {
            &targets[..]
        };
        for cpu in targets {
            cpu.request(d.vector, d.level);
        }
    }

    /// GSI `gsi` goes to `high`.
    pub fn set_level(&self, gsi: u32, high: bool) {
        let delivery = lock(&self.ioapic).set_level(gsi as usize, high);
        self.deliver_all(delivery);
    }

    /// A message-signalled interrupt: the address names the destination (bits 19:12,
    /// logical if bit 2), the data the vector and delivery mode (bits 10:8). MSIs are
    /// edge-triggered.
    pub fn msi(&self, message: MsiMessage) {
        self.deliver(Delivery {
            vector: message.data as u8,
            mode: ((message.data >> 8) & 7) as u8,
            logical: message.address & (1 << 2) != 0,
            destination: (message.address >> 12) as u8,
            level: false,
        });
    }

    /// A local APIC ended level-triggered `vector`.
    pub fn level_eoi(&self, vector: u8) {
        let again = lock(&self.ioapic).eoi(vector);
        self.deliver_all(again);
    }

    fn deliver_all(&self, deliveries: impl IntoIterator<Item = Delivery>) {
        // Delivered after the I/O APIC's lock is released: the APIC locks come after.
        for d in deliveries {
            self.deliver(d);
        }
    }

    /// The PIT, locked.
    pub fn pit(&self) -> MutexGuard<'_, Pit> {
        lock(&self.pit)
    }

    /// Advances the PIT to `now` (ns): an edge on GSI 0 if channel 0 expired. Returns
    /// when it next expires.
    pub fn tick_pit(&self, now: u64) -> Option<u64> {
        let (edge, next) = {
            let mut pit = lock(&self.pit);
            (pit.tick(now), pit.next_irq())
        };
        if edge {
            self.set_level(0, true);
            self.set_level(0, false);
        }
        next
    }

    /// Reads the I/O APIC register at `offset`.
    pub fn ioapic_read(&self, offset: u64) -> u32 {
        lock(&self.ioapic).read(offset)
    }

    /// Writes the I/O APIC register at `offset`.
    pub fn ioapic_write(&self, offset: u64, value: u32) {
        let delivery = lock(&self.ioapic).write(offset, value);
        self.deliver_all(delivery);
    }

    /// Sends an IPI from vCPU `from`: fixed and lowest priority (delivered as fixed),
    /// NMI, INIT (the target then waits for a start-up IPI; a level de-assert does
    /// nothing) and start-up. Others (SMI, ExtINT) are dropped and logged.
    pub fn send_ipi(&self, from: usize, ipi: Ipi) {
        let targets: Vec<&Arc<VcpuSignals>> = match ipi.shorthand {
            1 => self.cpus.get(from).into_iter().collect(),
            2 => self.cpus.iter().collect(),
            3 => (self.cpus.iter().enumerate())
                .filter(|(i, _)| *i != from)
                .map(|(_, c)| c)
                .collect(),
            _ => self.targets(ipi.logical, ipi.destination),
        };
        match ipi.mode {
            0 | 1 => targets
                .iter()
                .for_each(|cpu| cpu.request(ipi.vector, false)),
            4 => targets.iter().for_each(|cpu| cpu.request_nmi()),
            5 if !ipi.assert => {}
            5 => targets.iter().for_each(|cpu| cpu.request_init()),
            6 => targets
                .iter()
                .for_each(|cpu| cpu.request_startup(ipi.vector)),
            mode => tracing::debug!(?ipi, mode, "IPI delivery mode not implemented: dropped"),
        }
    }
}

/// An input of the software backend's I/O APIC.
#[derive(Debug)]
pub struct SoftIrqLine {
    /// The controllers.
    pub interrupts: Arc<Interrupts>,
    /// The input.
    pub gsi: u32,
}

impl IrqLine for SoftIrqLine {
    fn set_level(&self, high: bool) {
        self.interrupts.set_level(self.gsi, high);
    }
}

/// An MSI vector of this backend: the message, handed to the local APICs on each
/// trigger.
#[derive(Debug)]
pub struct SoftMsi {
    /// The controllers.
    pub interrupts: Arc<Interrupts>,
    /// The programmed message; none while masked.
    pub message: Mutex<Option<MsiMessage>>,
}

impl MsiVector for SoftMsi {
    fn set_message(&self, message: Option<MsiMessage>) {
        *lock(&self.message) = message;
    }

    fn trigger(&self) {
        let message = *lock(&self.message);
        if let Some(message) = message {
            self.interrupts.msi(message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Software-enables every APIC (SVR bit 8), as a guest does.
    fn enabled(ids: &[u8]) -> Interrupts {
        let irq = Interrupts::new(ids);
        for cpu in &irq.cpus {
            lock(&cpu.apic).write(0xf0, 0x1ff, 0);
        }
        irq
    }

    fn take(cpu: &VcpuSignals) -> Option<u8> {
        lock(&cpu.apic).take()
    }

    #[test]
    fn test_ioapic_line_reaches_the_named_apic_and_wakes_it() {
        let irq = enabled(&[0, 1]);
        irq.ioapic_write(0, 0x10 + 2 * 4);
        irq.ioapic_write(0x10, 0x24);
        irq.ioapic_write(0, 0x11 + 2 * 4);
        irq.ioapic_write(0x10, 1 << 24);
        irq.set_level(4, true);
        assert!(irq.cpus[1].attention.load(Ordering::SeqCst));
        assert!(!irq.cpus[0].attention.load(Ordering::SeqCst));
        assert_eq!(take(&irq.cpus[1]), Some(0x24));
        // A sleeping vCPU with attention set returns at once.
        irq.cpus[1].sleep(true, false, None);
    }

    #[test]
    fn test_ipi_shorthands_and_logical_destinations() {
        let irq = enabled(&[0, 1, 2]);
        let fixed = |vector, logical, destination, shorthand| Ipi {
            vector,
            mode: 0,
            logical,
            destination,
            shorthand,
            assert: true,
        };
        irq.send_ipi(1, fixed(0x40, false, 0, 3));
        let got: Vec<_> = irq.cpus.iter().map(|c| take(c)).collect();
        assert_eq!(got, [Some(0x40), None, Some(0x40)], "all but self");
        let init = Ipi {
            mode: 5,
            ..fixed(0, false, 1, 0)
        };
        irq.send_ipi(
            0,
            Ipi {
                assert: false,
                ..init
            },
        );
        assert!(
            !irq.cpus[1].init.load(Ordering::SeqCst),
            "a de-assert does nothing"
        );
        irq.send_ipi(0, init);
        irq.send_ipi(
            0,
            Ipi {
                mode: 6,
                ..fixed(0x9a, false, 1, 0)
            },
        );
        assert!(irq.cpus[1].init.load(Ordering::SeqCst));
        assert_eq!(irq.cpus[1].sipi.load(Ordering::SeqCst), 0x19a);
        lock(&irq.cpus[2].apic).write(0xd0, 0x0400_0000, 0); // logical ID bit 2
        irq.send_ipi(0, fixed(0x50, true, 0x04, 0));
        assert_eq!(take(&irq.cpus[2]), Some(0x50));
        assert_eq!(take(&irq.cpus[1]), None);
        let nmi = Ipi {
            mode: 4,
            ..fixed(0, false, 2, 0)
        };
        irq.send_ipi(0, nmi);
        let nmis: Vec<_> = irq
            .cpus
            .iter()
            .map(|c| c.nmi.load(Ordering::SeqCst))
            .collect();
        assert_eq!(nmis, [false, false, true], "an NMI IPI to APIC 2");
        assert_eq!(take(&irq.cpus[2]), None, "not through the APIC's vectors");
        irq.cpus[2].sleep(false, true, None); // returns: the NMI wakes it
    }

    #[test]
    fn test_startup_ipi_after_init_stands_when_both_are_taken_at_once() {
        let irq = enabled(&[0, 1]);
        let cpu = &irq.cpus[1];
        cpu.request_startup(0x10);
        cpu.request_nmi();
        cpu.request_init();
        cpu.request_startup(0x9a);
        assert_eq!(cpu.take_startup(), (true, Some(0x9a)), "INIT, then SIPI");
        assert!(!cpu.nmi.load(Ordering::SeqCst), "INIT drops an earlier NMI");
        assert_eq!(cpu.take_startup(), (false, None), "taken once");
        cpu.request_startup(0x9a);
        cpu.request_init();
        assert_eq!(
            cpu.take_startup(),
            (true, None),
            "a SIPI before INIT is gone"
        );
    }

    #[test]
    fn test_ioapic_nmi_delivery_raises_nmi() {
        let irq = enabled(&[0, 1]);
        irq.ioapic_write(0, 0x10 + 2 * 5);
        irq.ioapic_write(0x10, 4 << 8); // delivery mode NMI, edge
        irq.ioapic_write(0, 0x11 + 2 * 5);
        irq.ioapic_write(0x10, 1 << 24);
        irq.set_level(5, true);
        assert!(irq.cpus[1].nmi.load(Ordering::SeqCst));
        assert!(!irq.cpus[0].nmi.load(Ordering::SeqCst));
        assert!(!irq.cpus[1].attention.load(Ordering::SeqCst));
    }
}
