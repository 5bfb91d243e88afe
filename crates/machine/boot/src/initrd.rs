//! The initial ramdisk: placed as high in low memory as the kernel allows.

use std::fs::File;
use std::path::Path;

use gasang_memory::{GuestMemory, MemoryRange, RangeKind};
use vm_memory::{Bytes, GuestAddress};

use crate::{BootError, LoadedKernel};

/// Where the initrd landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitrdRange {
    /// First byte.
    pub addr: u64,
    /// Length.
    pub size: u64,
}

const PAGE: u64 = 4096;

/// Loads the initrd at `path` into the highest page-aligned spot of RAM below both 4 GiB
/// and the kernel's `initrd_addr_max`, above the kernel.
pub fn load_initrd(
    memory: &GuestMemory,
    path: &Path,
    kernel: &LoadedKernel,
    ranges: &[MemoryRange],
) -> Result<InitrdRange, BootError> {
    let read_err = |source| BootError::InitrdRead {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(read_err)?;
    let size = file.metadata().map_err(read_err)?.len();
    let limit = initrd_limit(kernel, ranges);
    let too_large = || BootError::InitrdTooLarge {
        path: path.to_path_buf(),
        size,
        limit,
    };
    let addr = limit
        .checked_sub(size)
        .map(|a| a & !(PAGE - 1))
        .filter(|&a| a >= kernel.end.next_multiple_of(PAGE))
        .ok_or_else(too_large)?;
    let count = usize::try_from(size).map_err(|_| too_large())?;
    memory
        .read_exact_volatile_from(GuestAddress(addr), &mut file, count)
        .map_err(|source| BootError::Memory {
            what: "initrd",
            source,
        })?;
    Ok(InitrdRange { addr, size })
}

/// One past the highest address the initrd may use: the end of the RAM range holding the
/// kernel, capped by the kernel's `initrd_addr_max`.
fn initrd_limit(kernel: &LoadedKernel, ranges: &[MemoryRange]) -> u64 {
    let ram_end = ranges
        .iter()
        .filter(|r| r.kind == RangeKind::Ram && r.start <= kernel.end)
        .map(|r| r.start + r.len)
        .max()
        .unwrap_or(0);
    match kernel.initrd_addr_max() {
        Some(max) => ram_end.min(max + 1),
        None => ram_end,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::path::PathBuf;

    use gasang_memory::{ram_ranges, MemorySize};

    use super::*;
    use crate::KernelEntry;

    fn kernel(end: u64) -> LoadedKernel {
        LoadedKernel {
            entry: KernelEntry::Linux64(0x100000),
            end,
            setup_header: None,
            path: PathBuf::from("vmlinux"),
        }
    }

    fn file_of(len: usize) -> PathBuf {
        let path = std::env::temp_dir().join(format!("gasang-initrd-{}-{len}", std::process::id()));
        File::create(&path)
            .unwrap()
            .write_all(&vec![0xabu8; len])
            .unwrap();
        path
    }

    #[test]
    fn test_load_initrd_goes_to_top_of_low_memory() {
        let size = MemorySize::new(32 << 20).unwrap();
        let memory = gasang_memory::create_guest_memory(size).unwrap();
        let path = file_of(5000);
        let range = load_initrd(&memory, &path, &kernel(0x200000), &ram_ranges(size)).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            range,
            InitrdRange {
                addr: (32 << 20) - 8192,
                size: 5000
            }
        );
        assert_eq!(
            memory
                .read_obj::<u8>(GuestAddress(range.addr + 4999))
                .unwrap(),
            0xab
        );
    }

    #[test]
    fn test_load_initrd_larger_than_memory_is_too_large() {
        let size = MemorySize::new(16 << 20).unwrap();
        let memory = gasang_memory::create_guest_memory(size).unwrap();
        let path = file_of(15 << 20);
        let err = load_initrd(&memory, &path, &kernel(0x400000), &ram_ranges(size)).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(err, BootError::InitrdTooLarge { .. }), "{err:?}");
        assert!(err.to_string().contains("give the guest more --memory"));
    }
}
