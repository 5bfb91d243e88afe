//! virtio-blk request parsing on arbitrary descriptor chains over arbitrary guest
//! memory: headers split anywhere, wrong directions, buffers outside RAM, missing
//! status bytes. Parsing must never panic.

#![no_main]

use gasang_memory::GuestMemory;
use gasang_virtio::block::request::parse;
use libfuzzer_sys::fuzz_target;
use virtio_queue::desc::split::Descriptor;
use vm_memory::{Bytes, GuestAddress};

fuzz_target!(|data: &[u8]| {
    let memory = GuestMemory::from_ranges(&[(GuestAddress(0), 1 << 16)]).unwrap();
    let (chain, contents) = data.split_at(data.len().min(16 * 14));
    let _ = memory.write_slice(contents, GuestAddress(0));
    let descriptors: Vec<Descriptor> = chain
        .chunks_exact(14)
        .map(|d| {
            let addr = u64::from_le_bytes(d[..8].try_into().unwrap_or([0; 8]));
            let len = u32::from_le_bytes(d[8..12].try_into().unwrap_or([0; 4]));
            let flags = u16::from_le_bytes([d[12], d[13]]) & 2;
            // Addresses mostly inside RAM, sometimes anywhere.
            let addr = if addr >> 63 == 0 {
                addr % (1 << 16)
            } else {
                addr
            };
            Descriptor::new(addr, len % (1 << 17), flags, 0)
        })
        .collect();
    let _ = parse(&descriptors, &memory);
});
