//! The machine's PCI side: the host bridge and its configuration accessors, the
//! virtio devices the user asked for, and their BARs on the MMIO bus.

use std::sync::{Arc, Mutex, Weak};

use gasang_acpi::PciHost;
use gasang_bus::{lock, BusDevice, RateLimit};
use gasang_memory::layout::{
    MMIO_HOLE, MMIO_HOLE_END, PCI_ECAM, PCI_ECAM_SIZE, PCI_MMIO32, PCI_MMIO32_END, PCI_MMIO64_SIZE,
};
use gasang_memory::{GuestMemory, MemorySize};
use gasang_pci::{
    BarMapper, BarMapping, PciConfigIo, PciConfigMmio, PciRoot, SharedPciDevice, CONFIG_IO_LEN,
};
use gasang_vcpu::{AccelError, AccelVm};
use gasang_virtio::block::{Block, BlockConfig, DiskError};
use gasang_virtio::console::{ConsolePortInput, VirtioConsole};
use gasang_virtio::net::{Net, NetConfig, NetError};
use gasang_virtio::rng::Rng;
use gasang_virtio::vsock::{Vsock, VsockConfig, VsockError};
use gasang_virtio::{layout, VirtioDevice, VirtioPci, VirtioPciError};
use vm_allocator::{AddressAllocator, AllocPolicy};

use crate::io::MachineIo;

/// The legacy configuration ports.
const CONFIG_IO_PORT: u64 = 0xcf8;
/// PCI interrupts share GSIs 16 to 23 of the I/O APIC.
const FIRST_PCI_GSI: u32 = 16;
const PCI_GSIS: u32 = 8;

/// A PCI device could not be created.
#[derive(Debug, thiserror::Error)]
pub enum PciError {
    /// A disk image is unusable.
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// A network back end is unusable.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The vsock socket is unusable.
    #[error(transparent)]
    Vsock(#[from] VsockError),
    /// The console device's eventfd could not be made.
    #[error("cannot create the virtio console")]
    Console(#[source] std::io::Error),
    /// The transport could not be built.
    #[error("cannot create a virtio device")]
    Transport(#[from] VirtioPciError),
    /// The backend gave no interrupt vector.
    #[error("cannot create a device's interrupts")]
    Accel(#[from] AccelError),
    /// The BAR window or the bus is full.
    #[error("too many PCI devices")]
    Full,
    /// The accessors could not be placed (a gasang bug).
    #[error("cannot place the PCI configuration accessors")]
    Bus(#[from] gasang_bus::BusError),
}

/// What the user put on PCI.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PciDevicesConfig {
    /// virtio-blk disks, in order: /dev/vda, /dev/vdb, ...
    pub disks: Vec<BlockConfig>,
    /// virtio-net cards, in order: eth0 (or enp0s...), ...
    pub nets: Vec<NetConfig>,
    /// A virtio-rng device.
    pub rng: bool,
    /// The terminal on a virtio-console port (hvc0) instead of the serial port.
    pub virtio_console: bool,
    /// A virtio-vsock device.
    pub vsock: Option<VsockConfig>,
}

impl PciDevicesConfig {
    /// Whether the machine needs a PCI bus at all.
    pub fn any(&self) -> bool {
        !self.disks.is_empty()
            || !self.nets.is_empty()
            || self.rng
            || self.virtio_console
            || self.vsock.is_some()
    }
}

/// The host bridge's windows for a guest with `memory`.
pub fn host(memory: MemorySize) -> PciHost {
    let ram_end = if memory.bytes() > MMIO_HOLE {
        MMIO_HOLE_END + (memory.bytes() - MMIO_HOLE)
    } else {
        MMIO_HOLE_END
    };
    let mmio64 = ram_end.next_multiple_of(1 << 30);
    PciHost {
        ecam: PCI_ECAM,
        mmio32: (PCI_MMIO32, PCI_MMIO32_END),
        mmio64: (mmio64, mmio64 + PCI_MMIO64_SIZE),
        first_gsi: FIRST_PCI_GSI,
        gsis: PCI_GSIS,
    }
}

/// Moves BARs on the MMIO bus, and their notification eventfds in the backend.
struct MmioMapper {
    /// Weak: the buses hold the root, which holds this.
    io: Weak<MachineIo>,
    vm: Arc<dyn AccelVm>,
}

/// One BAR of a device, as the MMIO bus holds it.
struct BarRegion {
    device: SharedPciDevice,
    bar: u8,
}

impl BusDevice for BarRegion {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        lock(&self.device).read_bar(self.bar, offset, data);
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        lock(&self.device).write_bar(self.bar, offset, data);
    }
}

/// The guest places BARs: overlaps are its own doing, logged a few at a time.
static BAR_LOG: RateLimit = RateLimit::new(10, 10);

impl BarMapper for MmioMapper {
    fn map(&self, device: &SharedPciDevice, m: BarMapping) {
        let Some(io) = self.io.upgrade() else {
            return;
        };
        let region = BarRegion {
            device: device.clone(),
            bar: m.index,
        };
        if let Err(e) =
            io.mmio
                .insert_named("pci-bar", Arc::new(Mutex::new(region)), m.address, m.size)
        {
            if BAR_LOG.allow() {
                tracing::warn!(
                    "the guest put BAR {} where it cannot be decoded: {e}",
                    m.index
                );
            }
            return;
        }
        let events = lock(device).ioevents();
        for event in events.iter().filter(|e| e.bar == m.index) {
            if let Err(e) = self
                .vm
                .register_ioevent(m.address + event.offset, &event.fd)
            {
                tracing::warn!("queue notifications will exit to gasang: {e}");
            }
        }
    }

    fn unmap(&self, device: &SharedPciDevice, m: BarMapping) {
        if let Some(io) = self.io.upgrade() {
            io.mmio.remove(m.address);
        }
        let events = lock(device).ioevents();
        for event in events.iter().filter(|e| e.bar == m.index) {
            let _ = self
                .vm
                .unregister_ioevent(m.address + event.offset, &event.fd);
        }
    }
}

/// The virtio devices of a machine, before they are on the bus.
pub struct VirtioDevices {
    /// In slot order.
    pub devices: Vec<Box<dyn VirtioDevice>>,
    /// The console port's input, when the terminal is on virtio-console.
    pub console_input: Option<Arc<ConsolePortInput>>,
}

/// The virtio devices `config` asks for; a virtio console writes to `console_out`.
pub fn create_devices(
    config: &PciDevicesConfig,
    queues: u16,
    console_out: impl FnOnce() -> Box<dyn std::io::Write + Send>,
) -> Result<VirtioDevices, PciError> {
    let mut devices: Vec<Box<dyn VirtioDevice>> = Vec::new();
    for disk in &config.disks {
        devices.push(Box::new(Block::new(disk, queues)?));
    }
    for net in &config.nets {
        devices.push(Box::new(Net::new(net)?));
    }
    if config.rng {
        devices.push(Box::new(Rng::default()));
    }
    if let Some(vsock) = &config.vsock {
        devices.push(Box::new(Vsock::new(vsock)?));
    }
    let mut console_input = None;
    if config.virtio_console {
        let console = VirtioConsole::new(console_out()).map_err(PciError::Console)?;
        console_input = Some(console.input());
        devices.push(Box::new(console));
    }
    Ok(VirtioDevices {
        devices,
        console_input,
    })
}

/// Builds the PCI bus with `devices`, as the ACPI tables describe `host`, and places
/// its accessors.
pub fn attach(
    io: &Arc<MachineIo>,
    vm: &Arc<dyn AccelVm>,
    memory: &GuestMemory,
    host: &PciHost,
    devices: Vec<Box<dyn VirtioDevice>>,
) -> Result<Arc<PciRoot>, PciError> {
    let mapper = Arc::new(MmioMapper {
        io: Arc::downgrade(io),
        vm: vm.clone(),
    });
    let mut root = PciRoot::new(mapper);
    let mut bars = AddressAllocator::new(host.mmio32.0, host.mmio32.1 - host.mmio32.0)
        .map_err(|_| PciError::Full)?;
    for (k, device) in devices.into_iter().enumerate() {
        let slot = k as u32 + 1;
        let vectors = (0..=device.queue_sizes().len())
            .map(|_| vm.msi_vector())
            .collect::<Result<Vec<_>, _>>()?;
        // The line the DSDT's _PRT names for the slot's INTA.
        let intx = vm.irq_line(host.gsi(slot, 0));
        let bar = bars
            .allocate(layout::BAR_SIZE, layout::BAR_SIZE, AllocPolicy::FirstMatch)
            .map_err(|_| PciError::Full)?;
        let transport = VirtioPci::new(device, memory.clone(), vectors, intx, bar.start())?;
        let added = root
            .add(Arc::new(Mutex::new(transport)))
            .map_err(|_| PciError::Full)?;
        debug_assert_eq!(u32::from(added), slot, "slots fill in order");
    }
    let root = Arc::new(root);
    io.pio.insert_named(
        "pci-config",
        Arc::new(Mutex::new(PciConfigIo::new(root.clone()))),
        CONFIG_IO_PORT,
        CONFIG_IO_LEN,
    )?;
    io.mmio.insert_named(
        "pci-ecam",
        Arc::new(Mutex::new(PciConfigMmio::new(root.clone()))),
        host.ecam,
        PCI_ECAM_SIZE,
    )?;
    Ok(root)
}
