//! A hostile driver, written out: it sets devices up through their BAR as Linux's
//! driver does, then feeds them rings that loop, nest indirect tables, point outside
//! RAM, overflow lengths, run ahead of the ring, notify queues that do not exist,
//! and moves the BAR mid-I/O. The device threads must neither panic nor hang: a
//! device sets NEEDS_RESET where the ring is broken, works again after a reset, and
//! a second device keeps serving throughout.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gasang_bus::{lock, BusDevice, MsiMessage, MsiVector, NoIrq};
use gasang_memory::GuestMemory;
use gasang_pci::{BarMapper, BarMapping, PciConfigMmio, PciRoot, SharedPciDevice};
use gasang_virtio::rng::Rng;
use gasang_virtio::VirtioPci;
use vm_memory::{Bytes, GuestAddress};

const RAM: u64 = 1 << 20;
const QUEUE: u16 = 16;
const NEXT: u16 = 1;
const WRITE: u16 = 2;
const INDIRECT: u16 = 4;
const NEEDS_RESET: u8 = 0x40;

/// A bad ring: what it is, and how the driver writes it.
type BadRing = (&'static str, fn(&Driver));

struct NoMapper;
impl BarMapper for NoMapper {
    fn map(&self, _: &SharedPciDevice, _: BarMapping) {}
    fn unmap(&self, _: &SharedPciDevice, _: BarMapping) {}
}

struct Sink;
impl MsiVector for Sink {
    fn set_message(&self, _: Option<MsiMessage>) {}
    fn trigger(&self) {}
}

/// One rng device and the rings its driver keeps at `base` in RAM.
struct Driver {
    device: SharedPciDevice,
    memory: GuestMemory,
    base: u64,
    avail_idx: u16,
}

impl Driver {
    fn new(memory: &GuestMemory, base: u64) -> Self {
        let vectors: Vec<Box<dyn MsiVector>> = vec![Box::new(Sink), Box::new(Sink)];
        let pci = VirtioPci::new(
            Box::new(Rng::default()),
            memory.clone(),
            vectors,
            Box::new(NoIrq),
            0xc000_0000,
        )
        .unwrap();
        let mut driver = Self {
            device: Arc::new(Mutex::new(pci)),
            memory: memory.clone(),
            base,
            avail_idx: 0,
        };
        driver.start();
        driver
    }

    fn write(&self, offset: u64, value: u64, len: usize) {
        lock(&self.device).write_bar(0, offset, &value.to_le_bytes()[..len]);
    }

    fn status(&self) -> u8 {
        let mut b = [0u8];
        lock(&self.device).read_bar(0, 0x14, &mut b);
        b[0]
    }

    /// Resets the device and sets queue 0 up at `base`, as a driver does.
    fn start(&mut self) {
        self.write(0x14, 0, 1); // reset
        self.write(0x14, 1 | 2, 1); // ACKNOWLEDGE | DRIVER
        self.write(0x08, 1, 4); // driver_feature_select: high word
        self.write(0x0c, 1, 4); // VERSION_1
        self.write(0x14, 1 | 2 | 8, 1); // FEATURES_OK
        assert_eq!(self.status() & 8, 8, "features accepted");
        self.write(0x16, 0, 2); // queue_select
        self.write(0x18, u64::from(QUEUE), 2);
        // 64-bit fields in two halves, as Linux writes them.
        for (offset, addr) in [
            (0x20, self.base),
            (0x28, self.base + 0x1000),
            (0x30, self.base + 0x2000),
        ] {
            self.write(offset, addr & 0xffff_ffff, 4);
            self.write(offset + 4, addr >> 32, 4);
        }
        // Fresh rings before the device may look at them, as a driver allocates them.
        self.memory
            .write_obj(0u16, GuestAddress(self.base + 0x1002))
            .unwrap();
        self.memory
            .write_obj(0u16, GuestAddress(self.base + 0x2002))
            .unwrap();
        self.avail_idx = 0;
        self.write(0x1c, 1, 2); // queue_enable
        self.write(0x14, 1 | 2 | 8 | 4, 1); // DRIVER_OK
    }

    fn desc(&self, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let at = GuestAddress(self.base + u64::from(i) * 16);
        let mut d = [0u8; 16];
        d[..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..].copy_from_slice(&next.to_le_bytes());
        self.memory.write_slice(&d, at).unwrap();
    }

    /// Offers the chain at `head`, sets the available index to `idx` (normally one
    /// more) and notifies `queue`.
    fn offer(&mut self, head: u16, idx: Option<u16>, queue: u64) {
        let slot = self.base + 0x1004 + u64::from(self.avail_idx % QUEUE) * 2;
        self.memory.write_obj(head, GuestAddress(slot)).unwrap();
        self.avail_idx = idx.unwrap_or(self.avail_idx.wrapping_add(1));
        self.memory
            .write_obj(self.avail_idx, GuestAddress(self.base + 0x1002))
            .unwrap();
        self.write(0x3000 + 4 * queue, queue, 2);
    }

    fn used_idx(&self) -> u16 {
        self.memory
            .read_obj(GuestAddress(self.base + 0x2002))
            .unwrap()
    }

    /// Waits until the device used `n` chains in all, or asked for a reset.
    fn settle(&self, n: u16) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.used_idx() == n || self.status() & NEEDS_RESET != 0 {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    /// A good request: 64 bytes of entropy into `base + 0x8000`.
    fn good_request(&mut self) {
        let used = self.used_idx();
        self.desc(0, self.base + 0x8000, 64, WRITE, 0);
        self.offer(0, None, 0);
        assert!(
            self.settle(used.wrapping_add(1)),
            "a good request completes (status {:#x}, used {})",
            self.status(),
            self.used_idx()
        );
        assert_eq!(self.used_idx(), used.wrapping_add(1), "and is used");
    }
}

#[test]
fn test_hostile_rings_never_panic_or_hang_and_devices_recover() {
    let memory = GuestMemory::from_ranges(&[(GuestAddress(0), RAM as usize)]).unwrap();
    let mut victim = Driver::new(&memory, 0x10000);
    let mut bystander = Driver::new(&memory, 0x40000);
    let bad: [BadRing; 8] = [
        ("a chain that loops", |d| {
            d.desc(0, d.base + 0x8000, 8, WRITE | NEXT, 0)
        }),
        ("a chain longer than the queue", |d| {
            for i in 0..QUEUE {
                d.desc(i, d.base + 0x8000, 8, WRITE | NEXT, (i + 1) % QUEUE);
            }
        }),
        ("a buffer outside RAM", |d| {
            d.desc(0, RAM + 0x1000, 64, WRITE, 0)
        }),
        ("a buffer in the MMIO hole", |d| {
            d.desc(0, 0xfee0_0000, 64, WRITE, 0)
        }),
        ("a length that overflows", |d| {
            d.desc(0, d.base + 0x8000, u32::MAX, WRITE, 0)
        }),
        ("a next index beyond the queue", |d| {
            d.desc(0, d.base + 0x8000, 8, WRITE | NEXT, 999)
        }),
        ("an indirect table inside an indirect table", |d| {
            d.desc(0, d.base + 0x6000, 16, INDIRECT, 0);
            let mut inner = [0u8; 16];
            inner[..8].copy_from_slice(&(d.base + 0x6000).to_le_bytes());
            inner[8..12].copy_from_slice(&16u32.to_le_bytes());
            inner[12..14].copy_from_slice(&INDIRECT.to_le_bytes());
            d.memory
                .write_slice(&inner, GuestAddress(d.base + 0x6000))
                .unwrap();
        }),
        ("an indirect table outside RAM", |d| {
            d.desc(0, RAM * 4, 64, INDIRECT, 0)
        }),
    ];
    for (what, build) in &bad {
        build(&victim);
        let used = victim.used_idx();
        victim.offer(0, None, 0);
        assert!(
            victim.settle(used.wrapping_add(1)),
            "{what}: the device hung"
        );
        bystander.good_request();
        victim.start();
        victim.good_request();
    }
    // An available index far ahead of the ring: broken, NEEDS_RESET.
    victim.desc(0, victim.base + 0x8000, 64, WRITE, 0);
    victim.offer(0, Some(1000), 0);
    assert!(victim.settle(u16::MAX), "a runaway index hung the device");
    assert_eq!(
        victim.status() & NEEDS_RESET,
        NEEDS_RESET,
        "a runaway index needs a reset"
    );
    bystander.good_request();
    victim.start();
    victim.good_request();
    // Notifications of queues that do not exist are ignored.
    for queue in [1, 7, 1000] {
        victim.write(0x3000 + 4 * queue, queue, 2);
    }
    victim.good_request();
    // The BAR moved while requests are in flight: the rings are in RAM, not in the
    // BAR, so they complete.
    let mut root = PciRoot::new(Arc::new(NoMapper));
    root.add(victim.device.clone()).unwrap();
    let mut ecam = PciConfigMmio::new(Arc::new(root));
    for round in 0..20u32 {
        victim.desc(0, victim.base + 0x8000, 64, WRITE, 0);
        let used = victim.used_idx();
        victim.offer(0, None, 0);
        let bar = 0xc000_0000u32 + (round % 4) * 0x8000;
        ecam.write(1 << 15 | 0x10, &(bar | 4).to_le_bytes());
        assert!(victim.settle(used.wrapping_add(1)), "round {round}");
    }
    bystander.good_request();
}

#[test]
fn test_a_reset_device_serves_again() {
    let memory = GuestMemory::from_ranges(&[(GuestAddress(0), RAM as usize)]).unwrap();
    let mut d = Driver::new(&memory, 0x10000);
    d.good_request();
    d.start();
    d.good_request();
}
