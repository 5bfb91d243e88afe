//! `gasang user-run`'s ELF parser on arbitrary files.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(exe) = gasang_user::elf::parse(data) {
        for seg in &exe.segments {
            assert!(seg.file_size <= seg.mem_size);
            assert!(seg.offset + seg.file_size <= data.len() as u64);
        }
    }
});
