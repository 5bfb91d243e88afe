//! 32-bit ELF kernels with a Xen PVH entry note, as QEMU boots them (linux-loader reads
//! only ELF64). Parsed by the `object` crate, which checks every header, table and
//! note against the file's bounds; gasang checks that each loadable segment lies in
//! guest RAM at or above 1 MiB, copies it, and zeroes the rest of its memory size.

use std::fs::File;
use std::io::{Read, Seek};
use std::path::Path;

use gasang_memory::layout::HIMEM;
use gasang_memory::GuestMemory;
use object::elf::{FileHeader32, PT_LOAD, PT_NOTE};
use object::read::elf::{FileHeader, ProgramHeader};
use object::LittleEndian;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend as _, GuestMemoryRegion as _};

use crate::kernel::{KernelEntry, LoadedKernel};
use crate::BootError;

/// The Xen note that holds the 32-bit PVH entry point.
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

/// Loads the ELF32 kernel in `file` (from `path`) into `memory`. The parser takes the
/// whole file, so a file larger than all of guest RAM is refused before it is read.
pub fn load(memory: &GuestMemory, file: &mut File, path: &Path) -> Result<LoadedKernel, BootError> {
    let read_err = |source| BootError::KernelRead {
        path: path.to_path_buf(),
        source,
    };
    let size = file.metadata().map_err(read_err)?.len();
    let ram: u64 = memory.iter().map(|region| region.len()).sum();
    if size > ram {
        let path = path.to_path_buf();
        return Err(BootError::Elf32TooLarge { path, size });
    }
    let mut bytes = Vec::new();
    file.rewind().map_err(read_err)?;
    file.read_to_end(&mut bytes).map_err(read_err)?;
    parse_and_load(memory, &bytes, path)
}

/// Loads the ELF32 kernel `bytes` (from `path`) into `memory`.
fn parse_and_load(
    memory: &GuestMemory,
    bytes: &[u8],
    path: &Path,
) -> Result<LoadedKernel, BootError> {
    let parse_err = |source| BootError::Elf32 {
        path: path.to_path_buf(),
        source,
    };
    let header = FileHeader32::<LittleEndian>::parse(bytes).map_err(parse_err)?;
    let endian = header.endian().map_err(parse_err)?;
    let mut entry = None;
    let mut end = 0u64;
    for segment in header.program_headers(endian, bytes).map_err(parse_err)? {
        match segment.p_type(endian) {
            PT_LOAD => {
                let data = segment
                    .data(endian, bytes)
                    .map_err(|()| BootError::Elf32Truncated(path.to_path_buf()))?;
                let addr = u64::from(segment.p_paddr(endian));
                let size = u64::from(segment.p_memsz(endian)).max(data.len() as u64);
                place(memory, addr, data, size, path)?;
                end = end.max(addr + size);
            }
            PT_NOTE => {
                let mut notes = match segment.notes(endian, bytes).map_err(parse_err)? {
                    Some(notes) => notes,
                    None => continue,
                };
                while let Some(note) = notes.next().map_err(parse_err)? {
                    let desc = note.desc();
                    if note.name() == b"Xen"
                        && note.n_type(endian) == XEN_ELFNOTE_PHYS32_ENTRY
                        && desc.len() >= 4
                    {
                        entry = Some(u64::from(u32::from_le_bytes([
                            desc[0], desc[1], desc[2], desc[3],
                        ])));
                    }
                }
            }
            _ => {}
        }
    }
    let entry = entry.ok_or_else(|| BootError::Elf32NoPvh(path.to_path_buf()))?;
    Ok(LoadedKernel {
        entry: KernelEntry::Pvh(entry),
        end,
        setup_header: None,
        path: path.to_path_buf(),
    })
}

/// Copies `data` to guest-physical `addr` and zeroes up to `size` bytes from there.
fn place(
    memory: &GuestMemory,
    addr: u64,
    data: &[u8],
    size: u64,
    path: &Path,
) -> Result<(), BootError> {
    let outside = || BootError::Elf32Segment {
        path: path.to_path_buf(),
        addr,
        size,
    };
    let len = usize::try_from(size).map_err(|_| outside())?;
    if addr < HIMEM || !memory.check_range(GuestAddress(addr), len) {
        return Err(outside());
    }
    memory
        .write_slice(data, GuestAddress(addr))
        .map_err(|_| outside())?;
    // The rest (a kernel's BSS), a chunk at a time.
    let zeroes = [0u8; 4096];
    let mut at = data.len() as u64;
    while at < size {
        let n = (size - at).min(zeroes.len() as u64) as usize;
        memory
            .write_slice(&zeroes[..n], GuestAddress(addr + at))
            .map_err(|_| outside())?;
        at += n as u64;
    }
    Ok(())
}
