//! Direct kernel boot: load a kernel (bzImage, ELF vmlinux or PVH ELF), its initrd and
//! command line into guest memory, describe memory to it, and say where the bootstrap
//! CPU starts. Shared by every CPU backend.
//!
//! - bzImage and vmlinux boot through the Linux 64-bit boot protocol: a zero page
//!   (`boot_params`) at [`layout::ZERO_PAGE`], entered in long mode with RSI pointing to it.
//! - An ELF (64- or 32-bit) with a Xen PVH note boots through PVH: `hvm_start_info` at
//!   [`layout::PVH_INFO`], entered in 32-bit protected mode with EBX pointing to it.
//!
//! [`layout::ZERO_PAGE`]: gasang_memory::layout::ZERO_PAGE
//! [`layout::PVH_INFO`]: gasang_memory::layout::PVH_INFO

pub mod cmdline;
mod cpu;
pub use cpu::long_mode_state;
mod elf32;
mod initrd;
mod kernel;
mod linux;
mod pvh;

use std::path::PathBuf;

use gasang_memory::{GuestMemory, MemoryRange};
use gasang_vcpu::BootCpuState;

pub use kernel::{KernelEntry, LoadedKernel};

/// What to boot, as the user gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootConfig {
    /// The kernel image.
    pub kernel: PathBuf,
    /// An initial ramdisk, if any.
    pub initrd: Option<PathBuf>,
    /// The kernel command line.
    pub cmdline: String,
}

/// Booting failed; each variant names the file or value at fault.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// The kernel file cannot be opened or read.
    #[error("cannot read kernel '{path}'")]
    KernelRead {
        /// The kernel's path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is neither an ELF nor a bzImage.
    #[error("'{0}' is not a kernel: it is neither an ELF vmlinux nor a bzImage")]
    NotAKernel(PathBuf),
    /// A bzImage too old for the 64-bit boot protocol.
    #[error("'{0}' is a bzImage without a 64-bit entry point (boot protocol 2.12+ is needed)")]
    No64BitEntry(PathBuf),
    /// The kernel is a kernel, but will not load (too big, bad segments, ...).
    #[error("cannot load kernel '{path}'")]
    KernelLoad {
        /// The kernel's path.
        path: PathBuf,
        /// linux-loader's reason.
        #[source]
        source: linux_loader::loader::Error,
    },
    /// An ELF32 kernel that does not parse.
    #[error("cannot load 32-bit ELF kernel '{path}'")]
    Elf32 {
        /// The kernel's path.
        path: PathBuf,
        /// The ELF parser's reason.
        #[source]
        source: object::read::Error,
    },
    /// An ELF32 kernel without the Xen PVH entry note: it has no entry gasang can use.
    #[error("'{0}' is a 32-bit ELF kernel without a Xen PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY); 32-bit kernels boot only through PVH")]
    Elf32NoPvh(PathBuf),
    /// An ELF32 kernel file larger than all of guest RAM.
    #[error("32-bit ELF kernel '{path}' ({size} bytes) is larger than guest RAM")]
    Elf32TooLarge {
        /// The kernel's path.
        path: PathBuf,
        /// The file's size.
        size: u64,
    },
    /// An ELF32 kernel whose segment data lies past the end of the file.
    #[error("32-bit ELF kernel '{0}' is cut short: a segment lies past the end of the file")]
    Elf32Truncated(PathBuf),
    /// An ELF32 segment outside guest RAM above 1 MiB.
    #[error("32-bit ELF kernel '{path}' has a segment at {addr:#x} ({size} bytes) outside guest RAM above 1 MiB")]
    Elf32Segment {
        /// The kernel's path.
        path: PathBuf,
        /// The segment's physical address.
        addr: u64,
        /// Its size in memory.
        size: u64,
    },
    /// The initrd cannot be opened or read.
    #[error("cannot read initrd '{path}'")]
    InitrdRead {
        /// The initrd's path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The initrd does not fit between the kernel and the highest address it may use.
    #[error("initrd '{path}' ({size} bytes) does not fit in guest memory below {limit:#x} after the kernel: give the guest more --memory")]
    InitrdTooLarge {
        /// The initrd's path.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The highest address it may end at.
        limit: u64,
    },
    /// The command line is unusable.
    #[error(transparent)]
    Cmdline(#[from] cmdline::CmdlineError),
    /// The command line could not be written (it does not fit in guest memory).
    #[error("cannot write the kernel command line into guest memory")]
    CmdlineWrite(#[source] linux_loader::loader::Error),
    /// More memory map entries than the boot protocol can carry.
    #[error("the guest memory map has {0} entries, more than the boot protocol can carry")]
    TooManyRanges(usize),
    /// Writing boot structures into guest memory failed.
    #[error("cannot write the {what} into guest memory")]
    Memory {
        /// Which structure.
        what: &'static str,
        /// vm-memory's reason.
        #[source]
        source: vm_memory::GuestMemoryError,
    },
    /// linux-loader's configurator refused the boot parameters.
    #[error("cannot write the {what}")]
    Configure {
        /// Which structure.
        what: &'static str,
        /// linux-loader's reason.
        #[source]
        source: linux_loader::configurator::Error,
    },
}

/// Where the guest's firmware tables are, for the kernel to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Firmware {
    /// Physical address of the ACPI RSDP.
    pub rsdp: u64,
}

/// Loads everything `config` names into `memory` and returns the bootstrap CPU's state.
///
/// `ranges` is the guest's memory map (see [`gasang_memory::ram_ranges`]).
pub fn load(
    memory: &GuestMemory,
    config: &BootConfig,
    ranges: &[MemoryRange],
    firmware: Firmware,
) -> Result<BootCpuState, BootError> {
    let kernel = kernel::load_kernel(memory, &config.kernel)?;
    let cmdline = cmdline::build(&config.cmdline, kernel.cmdline_limit())?;
    cmdline::write(memory, &cmdline)?;
    let initrd = match &config.initrd {
        Some(path) => Some(initrd::load_initrd(memory, path, &kernel, ranges)?),
        None => None,
    };
    let boot = BootInfo {
        cmdline_len: cmdline::byte_len(&cmdline),
        initrd,
        ranges,
        firmware,
    };
    match kernel.entry {
        KernelEntry::Pvh(entry) => {
            pvh::write_start_info(memory, &boot)?;
            cpu::pvh_state(memory, entry)
        }
        KernelEntry::Linux64(entry) => {
            linux::write_zero_page(memory, &kernel, &boot)?;
            cpu::long_mode_state(memory, entry)
        }
    }
}

/// What the kernel is told about itself and the machine.
#[derive(Debug)]
struct BootInfo<'a> {
    cmdline_len: usize,
    initrd: Option<initrd::InitrdRange>,
    ranges: &'a [MemoryRange],
    firmware: Firmware,
}
