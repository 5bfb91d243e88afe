//! A hostile guest driving a virtio device through PCI: arbitrary configuration-space
//! accesses (ECAM), BAR accesses (common configuration, ISR, device configuration,
//! notifications, the MSI-X table) and ring contents written into guest RAM, in any
//! order. The device may start its thread and walk whatever rings the guest built.
//! Nothing may panic or hang.

#![no_main]

use std::sync::{Arc, Mutex};

use gasang_bus::{lock, BusDevice, MsiMessage, MsiVector, NoIrq};
use gasang_memory::GuestMemory;
use gasang_pci::{BarMapper, BarMapping, PciConfigMmio, PciRoot, SharedPciDevice};
use gasang_virtio::rng::Rng;
use gasang_virtio::VirtioPci;
use libfuzzer_sys::fuzz_target;
use vm_memory::{Bytes, GuestAddress};

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

fuzz_target!(|data: &[u8]| {
    let memory = GuestMemory::from_ranges(&[(GuestAddress(0), 1 << 16)]).unwrap();
    let vectors: Vec<Box<dyn MsiVector>> = vec![Box::new(Sink), Box::new(Sink)];
    let device = VirtioPci::new(
        Box::new(Rng::default()),
        memory.clone(),
        vectors,
        Box::new(NoIrq),
        0xc000_0000,
    )
    .unwrap();
    let device: SharedPciDevice = Arc::new(Mutex::new(device));
    let mut root = PciRoot::new(Arc::new(NoMapper));
    root.add(device.clone()).unwrap();
    let mut ecam = PciConfigMmio::new(Arc::new(root));
    for op in data.chunks(8) {
        let [kind, a, b, c, d, e, f, g] = <[u8; 8]>::try_from(op).unwrap_or([0; 8]);
        let len = [1usize, 2, 4, 8][usize::from(b % 4)];
        let value = [c, d, e, f, g, 0, 0, 0];
        let offset = u64::from(u16::from_le_bytes([a, b]) >> 2);
        match kind % 5 {
            0 => ecam.read(1 << 15 | (offset & 0xfff), &mut [0; 8][..len.min(4)]),
            1 => ecam.write(1 << 15 | (offset & 0xfff), &value[..len.min(4)]),
            2 => lock(&device).read_bar(0, offset & 0x7fff, &mut [0; 8][..len]),
            3 => lock(&device).write_bar(0, offset & 0x7fff, &value[..len]),
            _ => drop(memory.write_slice(&value[..5], GuestAddress(offset * 8 % 0xfff8))),
        }
    }
});
