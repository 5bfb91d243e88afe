//! The user's strings: `--memory` sizes and `--cmdline` text.

#![no_main]

use gasang_memory::MemorySize;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(size) = text.parse::<MemorySize>() {
        assert!(size.bytes() >= 16 << 20);
        assert_eq!(size.bytes() % 4096, 0);
        let _ = size.to_string();
    }
    let _ = gasang_boot::cmdline::build(text, Some(2047));
});
