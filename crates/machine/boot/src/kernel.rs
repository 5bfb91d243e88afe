//! Kernel images: detect the format, load it with linux-loader, find the entry point.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use gasang_memory::layout::HIMEM;
use gasang_memory::GuestMemory;
use linux_loader::bootparam::setup_header;
use linux_loader::loader::{BzImage, Elf, KernelLoader, KernelLoaderResult, PvhBootCapability};
use vm_memory::GuestAddress;

use crate::BootError;

/// `xloadflags` bit: the bzImage has a 64-bit entry point at load address + 0x200.
const XLF_KERNEL_64: u16 = 1;
/// Offset of the 64-bit entry (`startup_64`) in a bzImage's protected-mode code.
const BZIMAGE_64BIT_ENTRY: u64 = 0x200;

/// How the kernel wants to be entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelEntry {
    /// PVH: 32-bit protected mode, EBX = `hvm_start_info`.
    Pvh(u64),
    /// Linux 64-bit boot protocol: long mode, RSI = zero page.
    Linux64(u64),
}

/// A kernel in guest memory.
#[derive(Debug, Clone)]
pub struct LoadedKernel {
    /// Where to enter it.
    pub entry: KernelEntry,
    /// First free address after it.
    pub end: u64,
    /// The bzImage setup header, to copy into the zero page.
    pub setup_header: Option<setup_header>,
    /// The file it came from, for messages.
    pub path: PathBuf,
}

impl LoadedKernel {
    /// The longest command line the kernel accepts, when it says.
    pub fn cmdline_limit(&self) -> Option<usize> {
        let header = self.setup_header?;
        // Protocol 2.06 added cmdline_size; older kernels take 255 bytes.
        if header.version >= 0x0206 {
            usize::try_from(header.cmdline_size).ok()
        } else {
            Some(255)
        }
    }

    /// The highest address the initrd may occupy, when the kernel says.
    pub fn initrd_addr_max(&self) -> Option<u64> {
        self.setup_header.map(|h| u64::from(h.initrd_addr_max))
    }
}

/// Loads the kernel at `path` into `memory`.
pub fn load_kernel(memory: &GuestMemory, path: &Path) -> Result<LoadedKernel, BootError> {
    let read_err = |source| BootError::KernelRead {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(read_err)?;
    let mut magic = [0u8; 5];
    let is_elf = match file.read_exact(&mut magic) {
        Ok(()) => magic[..4] == *b"\x7fELF",
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => false,
        Err(e) => return Err(read_err(e)),
    };
    if is_elf && magic[4] == object::elf::ELFCLASS32 {
        return crate::elf32::load(memory, &mut file, path);
    }
    let load_err = |source| BootError::KernelLoad {
        path: path.to_path_buf(),
        source,
    };
    let himem = Some(GuestAddress(HIMEM));
    if is_elf {
        let result = Elf::load(memory, None, &mut file, himem).map_err(load_err)?;
        return Ok(from_elf(result, path));
    }
    match BzImage::load(memory, None, &mut file, himem) {
        Ok(result) => from_bzimage(result, path),
        Err(linux_loader::loader::Error::Bzimage(_)) => {
            Err(BootError::NotAKernel(path.to_path_buf()))
        }
        Err(e) => Err(load_err(e)),
    }
}

fn from_elf(result: KernelLoaderResult, path: &Path) -> LoadedKernel {
    let entry = match result.pvh_boot_cap {
        PvhBootCapability::PvhEntryPresent(addr) => KernelEntry::Pvh(addr.0),
        _ => KernelEntry::Linux64(result.kernel_load.0),
    };
    LoadedKernel {
        entry,
        end: result.kernel_end,
        setup_header: None,
        path: path.to_path_buf(),
    }
}

fn from_bzimage(result: KernelLoaderResult, path: &Path) -> Result<LoadedKernel, BootError> {
    let header = result
        .setup_header
        .ok_or_else(|| BootError::NotAKernel(path.to_path_buf()))?;
    if header.version < 0x020c || header.xloadflags & XLF_KERNEL_64 == 0 {
        return Err(BootError::No64BitEntry(path.to_path_buf()));
    }
    Ok(LoadedKernel {
        entry: KernelEntry::Linux64(result.kernel_load.0 + BZIMAGE_64BIT_ENTRY),
        end: result.kernel_end,
        setup_header: Some(header),
        path: path.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn memory() -> GuestMemory {
        GuestMemory::from_ranges(&[(GuestAddress(0), 64 << 20)]).unwrap()
    }

    fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
        let path = std::env::temp_dir().join(format!("gasang-boot-{}-{name}", std::process::id()));
        File::create(&path).unwrap().write_all(bytes).unwrap();
        path
    }

    #[test]
    fn test_load_kernel_missing_file_is_read_error() {
        let err = load_kernel(&memory(), Path::new("/nonexistent/vmlinuz")).unwrap_err();
        assert!(matches!(err, BootError::KernelRead { .. }));
        assert_eq!(err.to_string(), "cannot read kernel '/nonexistent/vmlinuz'");
    }

    #[test]
    fn test_load_kernel_text_file_is_not_a_kernel() {
        let path = temp_file("text", &b"#!/bin/sh\necho hello\n".repeat(100));
        let err = load_kernel(&memory(), &path).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(err, BootError::NotAKernel(_)), "{err:?}");
    }

    #[test]
    fn test_load_kernel_empty_file_is_not_a_kernel() {
        let path = temp_file("empty", b"");
        let err = load_kernel(&memory(), &path).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(err, BootError::NotAKernel(_)), "{err:?}");
    }

    #[test]
    fn test_load_kernel_truncated_elf_is_load_error() {
        let path = temp_file("elf", b"\x7fELF\x02\x01\x01\0\0\0");
        let err = load_kernel(&memory(), &path).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(err, BootError::KernelLoad { .. }), "{err:?}");
    }
}
