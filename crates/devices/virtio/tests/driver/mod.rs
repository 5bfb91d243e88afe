//! A driver written out by hand: it sets a device up through its BAR as Linux's driver
//! does, then writes whatever rings a test asks for into the queue under attack.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gasang_bus::{lock, MsiMessage, MsiVector, NoIrq};
use gasang_memory::GuestMemory;
use gasang_pci::{BarMapper, BarMapping, SharedPciDevice};
use gasang_virtio::{VirtioDevice, VirtioPci};
use vm_memory::{Bytes, GuestAddress};

/// Guest RAM: 1 MiB.
pub const RAM: u64 = 1 << 20;
/// Entries in every queue the driver sets up.
pub const QUEUE: u16 = 16;
/// Descriptor flag: the chain goes on.
pub const NEXT: u16 = 1;
/// Descriptor flag: the device writes this buffer.
pub const WRITE: u16 = 2;
/// Descriptor flag: the buffer is a table of descriptors.
pub const INDIRECT: u16 = 4;
/// Device status bit: the device needs a reset.
pub const NEEDS_RESET: u8 = 0x40;

/// Maps nothing: the BAR is reached through `write_bar` directly.
pub struct NoMapper;
impl BarMapper for NoMapper {
    fn map(&self, _: &SharedPciDevice, _: BarMapping) {}
    fn unmap(&self, _: &SharedPciDevice, _: BarMapping) {}
}

struct Sink;
impl MsiVector for Sink {
    fn set_message(&self, _: Option<MsiMessage>) {}
    fn trigger(&self) {}
}

/// One device, and the rings its driver keeps from `base` in RAM: the queue under
/// attack at `base` (descriptors, then available ring at +0x1000, used at +0x2000),
/// the others after it. Buffers go at `base + 0x6000..0xa000`.
pub struct Driver {
    pub device: SharedPciDevice,
    pub memory: GuestMemory,
    pub base: u64,
    /// The queue the test writes chains into.
    pub attack: u16,
    /// WRITE for a queue the device fills, 0 for one it reads.
    pub dir: u16,
    queues: u16,
    avail_idx: u16,
}

impl Driver {
    /// Starts `device` with its rings at `base`, `attack` being the queue under test.
    pub fn new(
        memory: &GuestMemory,
        base: u64,
        device: Box<dyn VirtioDevice>,
        attack: u16,
    ) -> Self {
        let queues = device.queue_sizes().len() as u16;
        let vectors = (0..=queues).map(|_| Box::new(Sink) as Box<dyn MsiVector>);
        let pci = VirtioPci::new(
            device,
            memory.clone(),
            vectors.collect(),
            Box::new(NoIrq),
            0xc000_0000,
        )
        .unwrap();
        let mut driver = Self {
            device: Arc::new(Mutex::new(pci)),
            memory: memory.clone(),
            base,
            attack,
            dir: WRITE,
            queues,
            avail_idx: 0,
        };
        driver.start();
        driver
    }

    pub fn write(&self, offset: u64, value: u64, len: usize) {
        lock(&self.device).write_bar(0, offset, &value.to_le_bytes()[..len]);
    }

    pub fn status(&self) -> u8 {
        let mut b = [0u8];
        lock(&self.device).read_bar(0, 0x14, &mut b);
        b[0]
    }

    /// Where queue `q`'s rings start.
    fn rings(&self, q: u16) -> u64 {
        match q {
            q if q == self.attack => self.base,
            q => self.base + 0xa000 + u64::from(q) * 0x3000,
        }
    }

    /// Resets the device and sets every queue up, as a driver does.
    pub fn start(&mut self) {
        self.write(0x14, 0, 1); // reset
        self.write(0x14, 1 | 2, 1); // ACKNOWLEDGE | DRIVER
        self.write(0x08, 1, 4); // driver_feature_select: high word
        self.write(0x0c, 1, 4); // VERSION_1
        self.write(0x14, 1 | 2 | 8, 1); // FEATURES_OK
        assert_eq!(self.status() & 8, 8, "features accepted");
        for q in 0..self.queues {
            self.set_queue(q);
        }
        self.avail_idx = 0;
        self.write(0x14, 1 | 2 | 8 | 4, 1); // DRIVER_OK
    }

    fn set_queue(&self, q: u16) {
        let at = self.rings(q);
        self.write(0x16, u64::from(q), 2); // queue_select
        self.write(0x18, u64::from(QUEUE), 2);
        // 64-bit fields in two halves, as Linux writes them.
        for (offset, addr) in [(0x20, at), (0x28, at + 0x1000), (0x30, at + 0x2000)] {
            self.write(offset, addr & 0xffff_ffff, 4);
            self.write(offset + 4, addr >> 32, 4);
        }
        // Fresh rings before the device may look at them, as a driver allocates them.
        for index in [at + 0x1002, at + 0x2002] {
            self.memory.write_obj(0u16, GuestAddress(index)).unwrap();
        }
        self.write(0x1c, 1, 2); // queue_enable
    }

    pub fn desc(&self, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let at = GuestAddress(self.base + u64::from(i) * 16);
        let mut d = [0u8; 16];
        d[..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..].copy_from_slice(&next.to_le_bytes());
        self.memory.write_slice(&d, at).unwrap();
    }

    /// Offers the chains at `heads`, sets the available index to `idx` (normally
    /// that many more) and notifies the queue under attack once.
    pub fn offer(&mut self, heads: &[u16], idx: Option<u16>) {
        let mut next = self.avail_idx;
        for &head in heads {
            let slot = self.base + 0x1004 + u64::from(next % QUEUE) * 2;
            self.memory.write_obj(head, GuestAddress(slot)).unwrap();
            next = next.wrapping_add(1);
        }
        self.avail_idx = idx.unwrap_or(next);
        self.memory
            .write_obj(self.avail_idx, GuestAddress(self.base + 0x1002))
            .unwrap();
        self.notify(u64::from(self.attack));
    }

    pub fn notify(&self, queue: u64) {
        self.write(0x3000 + 4 * queue, queue, 2);
    }

    pub fn used_idx(&self) -> u16 {
        self.memory
            .read_obj(GuestAddress(self.base + 0x2002))
            .unwrap()
    }

    /// Waits until the device used `n` chains in all, or asked for a reset.
    pub fn settle(&self, n: u16) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.used_idx() == n || self.status() & NEEDS_RESET != 0 {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    /// Offers the chain at descriptor 0 and waits for it to be used.
    pub fn complete_one(&mut self, what: &str) {
        let used = self.used_idx();
        self.offer(&[0], None);
        assert!(
            self.settle(used.wrapping_add(1)),
            "{what}: no completion (status {:#x}, used {})",
            self.status(),
            self.used_idx()
        );
        assert_eq!(self.used_idx(), used.wrapping_add(1), "{what}: not used");
    }
}
