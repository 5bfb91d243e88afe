//! The virtio-net header of a frame the guest transmits, checked against arbitrary
//! negotiated features before a back end sees it: lengths, offload types and
//! checksum positions anywhere. Checking must never panic, and a frame it passes
//! must have its checksum inside the frame.

#![no_main]

use gasang_virtio::net::header::{NetHeader, HEADER_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (features, frame) = data.split_at(data.len().min(8));
    let mut bits = [0u8; 8];
    bits[..features.len()].copy_from_slice(features);
    let features = u64::from_le_bytes(bits);
    let Ok(header) = NetHeader::read(frame) else {
        return;
    };
    if header.check(frame.len(), features).is_ok() && header.flags & 1 != 0 {
        let end = usize::from(header.csum_start) + usize::from(header.csum_offset) + 2;
        assert!(end <= frame.len() - HEADER_LEN);
    }
});
