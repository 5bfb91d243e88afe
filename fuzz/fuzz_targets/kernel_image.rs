//! A user's kernel file: arbitrary bytes given to `gasang run --kernel`. Loading must
//! succeed or return an error, never panic.

#![no_main]

use std::io::Write;

use gasang_boot::{BootConfig, Firmware};
use gasang_memory::{create_guest_memory, ram_ranges, MemorySize};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("gasang-fuzz-kernel-{}", std::process::id()));
    let mut file = std::fs::File::create(&path).expect("temp dir is writable");
    file.write_all(data).expect("temp dir is writable");
    let size = MemorySize::new(32 << 20).expect("a valid size");
    let memory = create_guest_memory(size).expect("32 MiB maps");
    let config = BootConfig {
        kernel: path.clone(),
        initrd: None,
        cmdline: "console=ttyS0".into(),
    };
    let _ = gasang_boot::load(
        &memory,
        &config,
        &ram_ranges(size),
        Firmware { rsdp: 0xe0000 },
    );
    let _ = std::fs::remove_file(&path);
});
