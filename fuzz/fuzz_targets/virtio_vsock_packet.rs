//! vsock packet headers from the guest: arbitrary bytes, CIDs and lengths. Parsing
//! must never panic, and a header it accepts names the host, comes from the guest's
//! CID and carries no more payload than follows it.

#![no_main]

use gasang_virtio::vsock::packet::{Header, HEADER_LEN, HOST_CID, MAX_PAYLOAD};
use libfuzzer_sys::fuzz_target;

const GUEST_CID: u64 = 3;

fuzz_target!(|data: &[u8]| {
    let payload = data.len().saturating_sub(HEADER_LEN);
    if let Ok(header) = Header::parse(data, GUEST_CID, payload) {
        assert_eq!((header.src_cid, header.dst_cid), (GUEST_CID, HOST_CID));
        assert!(header.len as usize <= payload.min(MAX_PAYLOAD));
        assert_eq!(
            Header::parse(&header.to_bytes(), GUEST_CID, payload),
            Ok(header)
        );
    }
});
