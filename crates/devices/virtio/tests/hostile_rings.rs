//! A hostile driver against every virtio device: rings that loop, nest indirect
//! tables, point outside RAM or into the MMIO hole, overflow lengths, run ahead of
//! the ring, notify queues that do not exist, offer a chain the device still holds,
//! and move the BAR mid-I/O. The device threads must neither panic nor hang: a device
//! sets NEEDS_RESET where the ring is broken, works again after a reset, and a second
//! device keeps serving throughout.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod driver;

use std::io::Write;
use std::sync::{Arc, Mutex};

use driver::{Driver, NoMapper, INDIRECT, NEEDS_RESET, NEXT, QUEUE, RAM, WRITE};
use gasang_bus::BusDevice;
use gasang_memory::GuestMemory;
use gasang_pci::{PciConfigMmio, PciRoot};
use gasang_virtio::block::{AioConfig, Block, BlockConfig};
use gasang_virtio::console::VirtioConsole;
use gasang_virtio::net::{Net, NetBackendConfig, NetConfig};
use gasang_virtio::rng::Rng;
use gasang_virtio::vsock::{Vsock, VsockConfig};
use gasang_virtio::VirtioDevice;
use vm_memory::{Bytes, GuestAddress};

/// A bad ring: what it is, and how the driver writes it.
type BadRing = (&'static str, fn(&Driver));

const BAD_RINGS: [BadRing; 8] = [
    ("a chain that loops", |d| {
        d.desc(0, d.base + 0x8000, 8, d.dir | NEXT, 0)
    }),
    ("a chain longer than the queue", |d| {
        for i in 0..QUEUE {
            d.desc(i, d.base + 0x8000, 8, d.dir | NEXT, (i + 1) % QUEUE);
        }
    }),
    ("a buffer outside RAM", |d| {
        d.desc(0, RAM + 0x1000, 64, d.dir, 0)
    }),
    ("a buffer in the MMIO hole", |d| {
        d.desc(0, 0xfee0_0000, 64, d.dir, 0)
    }),
    ("a length that overflows", |d| {
        d.desc(0, d.base + 0x8000, u32::MAX, d.dir, 0)
    }),
    ("a next index beyond the queue", |d| {
        d.desc(0, d.base + 0x8000, 8, d.dir | NEXT, 999)
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

fn ram() -> GuestMemory {
    GuestMemory::from_ranges(&[(GuestAddress(0), RAM as usize)]).unwrap()
}

/// A request the rng serves: 64 bytes of entropy.
fn rng_request(d: &mut Driver) {
    d.desc(0, d.base + 0x8000, 64, WRITE, 0);
    d.complete_one("rng");
}

/// Attacks `victim`'s queue with every bad ring, `good` being a request it must serve
/// after each reset; an rng beside it must serve throughout.
fn attack(memory: &GuestMemory, mut victim: Driver, good: fn(&mut Driver)) -> Driver {
    let mut bystander = Driver::new(memory, 0x40000, Box::new(Rng::default()), 0);
    good(&mut victim);
    for (what, build) in &BAD_RINGS {
        build(&victim);
        let used = victim.used_idx();
        victim.offer(&[0], None);
        assert!(
            victim.settle(used.wrapping_add(1)),
            "{what}: the device hung"
        );
        rng_request(&mut bystander);
        victim.start();
        good(&mut victim);
    }
    // An available index far ahead of the ring: broken, NEEDS_RESET.
    victim.desc(0, victim.base + 0x8000, 64, victim.dir, 0);
    victim.offer(&[0], Some(1000));
    assert!(victim.settle(u16::MAX), "a runaway index hung the device");
    let status = victim.status() & NEEDS_RESET;
    assert_eq!(status, NEEDS_RESET, "a runaway index needs a reset");
    rng_request(&mut bystander);
    victim.start();
    good(&mut victim);
    // Notifications of queues that do not exist are ignored.
    for queue in [5, 7, 1000] {
        victim.notify(queue);
    }
    good(&mut victim);
    move_bar_mid_io(&mut victim, good);
    rng_request(&mut bystander);
    victim
}

/// Moves the BAR while requests are in flight: the rings are in RAM, not in the
/// BAR, so they complete.
fn move_bar_mid_io(victim: &mut Driver, good: fn(&mut Driver)) {
    let mut root = PciRoot::new(Arc::new(NoMapper));
    root.add(victim.device.clone()).unwrap();
    let mut ecam = PciConfigMmio::new(Arc::new(root));
    for round in 0..20u32 {
        let bar = 0xc000_0000u32 + (round % 4) * 0x8000;
        ecam.write(1 << 15 | 0x10, &(bar | 4).to_le_bytes());
        good(victim);
    }
}

#[test]
fn test_hostile_rings_against_the_rng() {
    let memory = ram();
    attack(
        &memory,
        Driver::new(&memory, 0x10000, Box::new(Rng::default()), 0),
        rng_request,
    );
}

/// A read of sector 1 into `base + 0x8000`, its status at `base + 0x9000`.
fn blk_read(d: &mut Driver) {
    let header = [0u32.to_le_bytes(), [0; 4]].concat(); // IN, reserved
    let header = [header, 1u64.to_le_bytes().to_vec()].concat();
    d.memory
        .write_slice(&header, GuestAddress(d.base + 0x7000))
        .unwrap();
    d.memory
        .write_obj(0xffu8, GuestAddress(d.base + 0x9000))
        .unwrap();
    d.desc(0, d.base + 0x7000, 16, NEXT, 1);
    d.desc(1, d.base + 0x8000, 512, WRITE | NEXT, 2);
    d.desc(2, d.base + 0x9000, 1, WRITE, 0);
    d.complete_one("blk read");
    let status: u8 = d.memory.read_obj(GuestAddress(d.base + 0x9000)).unwrap();
    assert_eq!(status, 0, "the read succeeded");
    let mut data = [0u8; 512];
    d.memory
        .read_slice(&mut data, GuestAddress(d.base + 0x8000))
        .unwrap();
    assert!(data.iter().all(|&b| b == 0x5a), "sector 1 was read");
}

#[test]
fn test_hostile_rings_against_virtio_blk_on_both_engines() {
    for aio in [AioConfig::IoUring, AioConfig::Threads] {
        let path = std::env::temp_dir().join(format!("gasang-hostile-{}.img", std::process::id()));
        std::fs::write(&path, [[0u8; 512], [0x5a; 512]].concat()).unwrap();
        let config = BlockConfig {
            path: path.clone(),
            read_only: false,
            serial: None,
            direct: false,
            aio,
        };
        let memory = ram();
        let device = Box::new(Block::new(&config, 1).unwrap());
        let mut victim = attack(&memory, Driver::new(&memory, 0x10000, device, 0), blk_read);
        // The driver offers a chain the device still holds: a broken ring.
        blk_read(&mut victim);
        victim.offer(&[0, 0], None);
        assert!(
            victim.settle(u16::MAX),
            "a chain offered twice hung the device"
        );
        let status = victim.status() & NEEDS_RESET;
        assert_eq!(
            status, NEEDS_RESET,
            "{aio:?}: a chain offered twice needs a reset"
        );
        victim.start();
        blk_read(&mut victim);
        drop(victim);
        std::fs::remove_file(path).unwrap();
    }
}

/// What the console device wrote.
#[derive(Clone, Default)]
struct Output(Arc<Mutex<Vec<u8>>>);

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn test_hostile_rings_against_virtio_console() {
    let output = Output::default();
    let memory = ram();
    let device = Box::new(VirtioConsole::new(Box::new(output.clone())).unwrap());
    let mut victim = Driver::new(&memory, 0x10000, device, 1);
    victim.dir = 0;
    attack(&memory, victim, |d| {
        d.memory
            .write_slice(b"hello\n", GuestAddress(d.base + 0x8000))
            .unwrap();
        d.desc(0, d.base + 0x8000, 6, 0, 0);
        d.complete_one("console output");
    });
    let written = String::from_utf8_lossy(&output.0.lock().unwrap()).into_owned();
    assert!(
        written.contains("hello\n"),
        "the output arrived: {written:?}"
    );
}

#[test]
fn test_hostile_rings_against_virtio_vsock() {
    let socket = std::env::temp_dir().join(format!("gasang-hostile-{}.vsock", std::process::id()));
    let config = VsockConfig {
        cid: 3,
        socket: socket.clone(),
    };
    let memory = ram();
    let device = Box::new(Vsock::new(&config).unwrap());
    let mut victim = Driver::new(&memory, 0x10000, device, 1);
    victim.dir = 0;
    attack(&memory, victim, |d| {
        // A reset for a connection that does not exist, from CID 3 to the host.
        let mut header = [0u8; 44];
        header[..8].copy_from_slice(&3u64.to_le_bytes());
        header[8..16].copy_from_slice(&2u64.to_le_bytes());
        header[16..20].copy_from_slice(&1234u32.to_le_bytes());
        header[20..24].copy_from_slice(&9u32.to_le_bytes());
        header[28..30].copy_from_slice(&1u16.to_le_bytes()); // stream
        header[30..32].copy_from_slice(&3u16.to_le_bytes()); // RST
        d.memory
            .write_slice(&header, GuestAddress(d.base + 0x8000))
            .unwrap();
        d.desc(0, d.base + 0x8000, 44, 0, 0);
        d.complete_one("vsock packet");
    });
    assert!(!socket.exists(), "the device removed its socket");
}

#[test]
fn test_hostile_rings_against_virtio_net_on_a_tap() {
    // A namespace of the test's own: the frames go nowhere else.
    // SAFETY: unshare(CLONE_NEWNET) takes no pointers; it moves only this thread.
    assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
    let made = std::process::Command::new("sh")
        .args(["-c", "ip tuntap add htap0 mode tap && ip link set htap0 up"])
        .status()
        .unwrap();
    assert!(made.success(), "cannot make a tap");
    let config = NetConfig {
        backend: NetBackendConfig::Tap {
            name: "htap0".into(),
        },
        mac: None,
    };
    let memory = ram();
    let device: Box<dyn VirtioDevice> = Box::new(Net::new(&config).unwrap());
    let mut victim = Driver::new(&memory, 0x10000, device, 1);
    victim.dir = 0;
    attack(&memory, victim, |d| {
        // A blank virtio-net header, then a broadcast frame of a private ethertype.
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&[0xff; 6]);
        frame.extend_from_slice(&[0x52, 0x54, 0, 0, 0, 1, 0x88, 0xb5]);
        frame.resize(12 + 60, 0x42);
        d.memory
            .write_slice(&frame, GuestAddress(d.base + 0x8000))
            .unwrap();
        d.desc(0, d.base + 0x8000, frame.len() as u32, 0, 0);
        d.complete_one("net frame");
    });
}
