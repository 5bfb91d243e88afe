//! A real stock bzImage (Debian's cloud kernel, from scripts/fetch-assets.sh): the zero
//! page gasang writes for it is checked field by field against the boot protocol.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::path::PathBuf;

use gasang_boot::{BootConfig, BootError, Firmware};
use gasang_memory::layout::{CMDLINE, HIMEM, ZERO_PAGE};
use gasang_memory::{create_guest_memory, ram_ranges, GuestMemory, MemorySize};
use linux_loader::bootparam::boot_params;
use vm_memory::{Bytes, GuestAddress};

fn kernel() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../..");
    let path = root.join("assets/cache/vmlinuz");
    assert!(
        path.exists(),
        "{} is missing: run scripts/fetch-assets.sh",
        path.display()
    );
    path
}

fn initrd(len: usize) -> PathBuf {
    let path = std::env::temp_dir().join(format!("gasang-bz-initrd-{}-{len}", std::process::id()));
    std::fs::write(&path, vec![0xa5u8; len]).unwrap();
    path
}

fn boot(
    cmdline: &str,
    initrd: Option<PathBuf>,
) -> (GuestMemory, Result<gasang_vcpu::BootCpuState, BootError>) {
    let size = MemorySize::new(512 << 20).unwrap();
    let memory = create_guest_memory(size).unwrap();
    let config = BootConfig {
        kernel: kernel(),
        initrd,
        cmdline: cmdline.into(),
    };
    let state = gasang_boot::load(
        &memory,
        &config,
        &ram_ranges(size),
        Firmware { rsdp: 0xe0000 },
    );
    (memory, state)
}

#[test]
fn test_bzimage_zero_page_fields() {
    let initrd_path = initrd(3 << 20);
    let cmdline = "console=ttyS0 root=/dev/vda quiet";
    let (memory, state) = boot(cmdline, Some(initrd_path.clone()));
    std::fs::remove_file(&initrd_path).unwrap();
    let state = state.unwrap();
    let zp: boot_params = memory.read_obj(GuestAddress(ZERO_PAGE)).unwrap();
    let hdr = zp.hdr;
    // The kernel's own setup header, copied in.
    assert_eq!({ hdr.header }, 0x5372_6448, "HdrS");
    assert_eq!({ hdr.boot_flag }, 0xaa55);
    assert!({ hdr.version } >= 0x020c, "64-bit boot protocol");
    assert_eq!({ hdr.xloadflags } & 1, 1, "XLF_KERNEL_64");
    // What the loader fills in.
    assert_eq!(hdr.type_of_loader, 0xff);
    assert_eq!({ hdr.cmd_line_ptr }, CMDLINE as u32);
    assert_eq!({ hdr.cmdline_size } as usize, cmdline.len());
    let mut text = vec![0u8; cmdline.len() + 1];
    memory.read_slice(&mut text, GuestAddress(CMDLINE)).unwrap();
    assert_eq!(&text[..cmdline.len()], cmdline.as_bytes());
    assert_eq!(text[cmdline.len()], 0, "NUL-terminated");
    // The initrd: page aligned, at the top of RAM, below initrd_addr_max.
    let (image, size) = ({ hdr.ramdisk_image } as u64, { hdr.ramdisk_size } as u64);
    assert_eq!(size, 3 << 20);
    assert_eq!(image % 4096, 0);
    assert!(image + size <= 512 << 20 && image + size > (512 << 20) - 8192);
    assert!(image + size - 1 <= u64::from(hdr.initrd_addr_max));
    assert_eq!(memory.read_obj::<u8>(GuestAddress(image)).unwrap(), 0xa5);
    // The memory map and the RSDP.
    assert_eq!(zp.e820_entries, 3);
    let e820: Vec<(u64, u64, u32)> = zp.e820_table[..3]
        .iter()
        .map(|e| ({ e.addr }, { e.size }, { e.r#type }))
        .collect();
    assert_eq!(
        e820,
        [
            (0, 0x9fc00, 1),
            (0x9fc00, 0x60400, 2),
            (0x100000, (511 << 20), 1)
        ]
    );
    assert_eq!({ zp.acpi_rsdp_addr }, 0xe0000);
    // The protected-mode kernel at 1 MiB, entered at its 64-bit entry point.
    assert_eq!(state.rip, HIMEM + 0x200);
    assert_eq!(state.rsi, ZERO_PAGE);
    let setup_sects = if hdr.setup_sects == 0 {
        4
    } else {
        u64::from(hdr.setup_sects)
    };
    let file = std::fs::read(kernel()).unwrap();
    let offset = ((setup_sects + 1) * 512) as usize;
    let mut loaded = vec![0u8; 4096];
    memory.read_slice(&mut loaded, GuestAddress(HIMEM)).unwrap();
    assert_eq!(loaded, file[offset..offset + 4096]);
}

#[test]
fn test_bzimage_cmdline_longer_than_kernel_accepts_is_rejected() {
    let (_, state) = boot(&"x".repeat(5000), None);
    let err = state.unwrap_err();
    assert!(matches!(err, BootError::Cmdline(_)), "{err:?}");
    assert!(
        err.to_string().contains("this kernel accepts at most 2047"),
        "{err}"
    );
}

#[test]
fn test_bzimage_without_initrd_has_no_ramdisk() {
    let (memory, state) = boot("console=ttyS0", None);
    state.unwrap();
    let zp: boot_params = memory.read_obj(GuestAddress(ZERO_PAGE)).unwrap();
    assert_eq!(({ zp.hdr.ramdisk_image }, { zp.hdr.ramdisk_size }), (0, 0));
}
